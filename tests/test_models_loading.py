"""textssr.models: finding model folders (training output → latest checkpoint), building from arch dicts,
loading VAE/UNet/scheduler, the tiny SD 2.1 folder — and one-line ConfigErrors for every wrong path."""
import json
import os
import shutil

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

from diffusers_textssr import TextSSRUNet2DConditionModel
from textssr.config import ConfigError
from textssr.models import SCHEDULERS, SD21_SCHEDULER_CONFIG, load_scheduler, load_unet, load_vae, resolve_model_dir
from tiny_models import TINY_UNET_ARCH, TINY_VAE_ARCH, save_tiny_sd21


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return save_tiny_sd21(str(tmp_path_factory.mktemp("sd21")))


def one_line(err) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def fake_model_dir(path):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"_class_name": "UNet2DConditionModel"}, f)


# ------------------------------------------------------------------------------------------------ resolve_model_dir


def test_resolve_prefers_the_subfolder(tmp_path):
    fake_model_dir(tmp_path / "unet")
    assert resolve_model_dir(str(tmp_path), "unet") == os.path.join(str(tmp_path), "unet")


def test_resolve_takes_the_latest_complete_checkpoint_by_numeric_step(tmp_path):
    for name in ("checkpoint-5", "checkpoint-10", "checkpoint-9", "checkpoint-20.tmp"):
        fake_model_dir(tmp_path / name / "unet")
    os.makedirs(tmp_path / "checkpoint-30" / "unet")  # interrupted: no config.json
    with pytest.warns(UserWarning, match="checkpoint-30 holds no unet/config.json; using checkpoint-10"):
        found = resolve_model_dir(str(tmp_path), "unet")
    assert found == os.path.join(str(tmp_path), "checkpoint-10", "unet")


def test_resolve_accepts_the_model_folder_itself(tmp_path):
    fake_model_dir(tmp_path)
    assert resolve_model_dir(str(tmp_path), "unet") == str(tmp_path)


def test_resolve_fails_in_one_line_naming_the_path(tmp_path):
    fake_model_dir(tmp_path / "checkpoint-3" / "vae")  # a VAE run asked for a UNet
    with pytest.raises(ConfigError) as err:
        resolve_model_dir(str(tmp_path), "unet")
    assert str(tmp_path) in one_line(err) and "checkpoint-<step>/unet" in str(err.value)
    with pytest.raises(ConfigError, match="no such folder"):
        resolve_model_dir(str(tmp_path / "missing"), "unet")


# ------------------------------------------------------------------------------------------------ build / load


def test_none_builds_from_the_arch_dicts():
    vae = load_vae(None, TINY_VAE_ARCH)
    unet = load_unet(None, TINY_UNET_ARCH)
    assert isinstance(vae, AutoencoderKL) and len(vae.config.block_out_channels) == 4
    assert isinstance(unet, TextSSRUNet2DConditionModel) and unet.config.in_channels == 13
    assert unet.config.sample_size * 8 == 64 and unet.config.cross_attention_dim == unet.config.ttf_embed_dim


def test_none_without_arch_or_with_a_bad_arch_is_a_config_error():
    with pytest.raises(ConfigError, match="no vae_arch"):
        load_vae(None)
    with pytest.raises(ConfigError, match="unet_arch: cannot build"):
        load_unet(None, dict(TINY_UNET_ARCH, cross_attention_dim=32))


def test_tiny_sd21_folder_has_sd21_layout_and_is_seeded(sd_folder, tmp_path):
    assert sorted(os.listdir(sd_folder)) == ["scheduler", "unet", "vae"]
    unet_config = json.load(open(os.path.join(sd_folder, "unet", "config.json")))
    assert unet_config["_class_name"] == "UNet2DConditionModel" and unet_config["in_channels"] == 4
    assert not any(k.startswith("ttf_") for k in unet_config)
    again = save_tiny_sd21(str(tmp_path))
    a = UNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet").state_dict()
    b = UNet2DConditionModel.from_pretrained(again, subfolder="unet").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_load_from_the_sd21_root_folder(sd_folder):
    vae = load_vae(sd_folder)
    unet = load_unet(sd_folder, TINY_UNET_ARCH)
    assert vae.config.latent_channels == 4
    assert unet.config.in_channels == 13 and unet.config.ttf_depth == TINY_UNET_ARCH["ttf_depth"]
    assert not unet.conv_in.weight[:, 4:].any()  # conv_in_init="sd" is the default
    assert load_unet(sd_folder, TINY_UNET_ARCH, conv_in_init="random").conv_in.weight[:, 4:].any()


def test_load_unet_from_a_training_output_folder(sd_folder, tmp_path):
    trained = load_unet(None, TINY_UNET_ARCH)
    trained.save_pretrained(tmp_path / "checkpoint-2" / "unet")
    loaded = load_unet(str(tmp_path))
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in trained.state_dict().items())


def test_wrong_model_kind_is_a_config_error(sd_folder):
    with pytest.raises(ConfigError, match="holds a AutoencoderKL, expected TextSSRUNet2DConditionModel") as err:
        load_unet(os.path.join(sd_folder, "vae"))
    one_line(err)
    with pytest.raises(ConfigError, match="holds a UNet2DConditionModel, expected AutoencoderKL"):
        load_vae(os.path.join(sd_folder, "unet"))


def test_geometry_contradicting_the_weights_is_a_config_error(tmp_path):
    load_unet(None, TINY_UNET_ARCH).save_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="ttf_depth=2") as err:
        load_unet(str(tmp_path), dict(TINY_UNET_ARCH, ttf_depth=3))
    one_line(err)


def test_broken_weights_are_a_config_error(sd_folder, tmp_path):
    shutil.copytree(os.path.join(sd_folder, "vae"), tmp_path / "vae")
    (tmp_path / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="pretrained_vae: cannot load") as err:
        load_vae(str(tmp_path))
    one_line(err)


# ------------------------------------------------------------------------------------------------ schedulers


def test_sd21_scheduler_config_is_sd21s():
    assert SD21_SCHEDULER_CONFIG["beta_schedule"] == "scaled_linear"
    assert (SD21_SCHEDULER_CONFIG["beta_start"], SD21_SCHEDULER_CONFIG["beta_end"]) == (0.00085, 0.012)
    assert SD21_SCHEDULER_CONFIG["num_train_timesteps"] == 1000
    assert SD21_SCHEDULER_CONFIG["prediction_type"] == "v_prediction"
    scheduler = load_scheduler()
    assert isinstance(scheduler, DDPMScheduler) and scheduler.config.prediction_type == "v_prediction"


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_name_loads_with_the_sd21_schedule(sd_folder, name):
    scheduler = load_scheduler(sd_folder, name)
    assert isinstance(scheduler, SCHEDULERS[name])
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.beta_end == 0.012 and scheduler.config.num_train_timesteps == 1000


def test_scheduler_class_names_and_prediction_override(sd_folder):
    scheduler = load_scheduler(os.path.join(sd_folder, "scheduler"), "DDPMScheduler", prediction_type="epsilon")
    assert isinstance(scheduler, DDPMScheduler) and scheduler.config.prediction_type == "epsilon"


def test_scheduler_timestep_spacing_override(sd_folder):
    """SD 2.1's "leading" spacing starts 20 steps at t=951 (and 1 step at t=1!); "trailing" starts at t=999."""
    leading = load_scheduler(os.path.join(sd_folder, "scheduler"), "ddim")
    trailing = load_scheduler(os.path.join(sd_folder, "scheduler"), "ddim", timestep_spacing="trailing")
    leading.set_timesteps(1)
    trailing.set_timesteps(1)
    assert leading.config.timestep_spacing == "leading" and int(leading.timesteps[0]) == 1
    assert trailing.config.timestep_spacing == "trailing" and int(trailing.timesteps[0]) == 999


def test_scheduler_mistakes_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="choose one of") as err:
        load_scheduler(None, "heun")
    one_line(err)
    with pytest.raises(ConfigError, match="holds no scheduler_config.json"):
        load_scheduler(str(tmp_path), "ddpm")
