"""The diffusers extension's models: TTF encoder = timm's ViT, the 13-channel UNet and the three folder layouts
it loads (its own, the original TextSSR code's, plain SD). Tiny models, CPU, seconds."""
import inspect
import json
import os

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

from diffusers_textssr import TextSSRUNet2DConditionModel, TTFEncoder, unet_layout
from tiny_models import TINY_UNET_ARCH, save_tiny_sd21

TTF_KEYS = {k: v for k, v in TINY_UNET_ARCH.items() if k.startswith("ttf_")}
PLAIN_ARCH = {k: v for k, v in TINY_UNET_ARCH.items() if not k.startswith("ttf_")}


def unet_inputs(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 13, 8, 8, generator=g), torch.tensor([999, 10][:batch]),
            torch.rand(batch, 25, 64, 64, generator=g))


def make_unet(seed=0):
    torch.manual_seed(seed)
    return TextSSRUNet2DConditionModel(**TINY_UNET_ARCH).eval()


def write_original_folder(model: TextSSRUNet2DConditionModel, path, fmt="safetensors"):
    """What the original code's save_pretrained wrote: a plain UNet2DConditionModel config (in_channels 4) and
    weights holding a 13-channel conv_in and ttf_net.* keys."""
    UNet2DConditionModel(**dict(PLAIN_ARCH, in_channels=4)).save_pretrained(path)
    for name in os.listdir(path):
        if name.startswith("diffusion_pytorch_model"):
            os.remove(os.path.join(path, name))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "safetensors":
        save_file(state, os.path.join(path, "diffusion_pytorch_model.safetensors"))
    else:
        torch.save(state, os.path.join(path, "diffusion_pytorch_model.bin"))
    return path


@pytest.fixture(scope="module")
def sd_folder(tmp_path_factory):
    return save_tiny_sd21(str(tmp_path_factory.mktemp("sd21")))


# ------------------------------------------------------------------------------------------------ TTF encoder


def test_ttf_encoder_equals_timm_vit_on_the_same_weights():
    torch.manual_seed(0)
    ours = TTFEncoder(embed_dim=64, depth=2, num_heads=2).eval()
    timm_vit = VisionTransformer(img_size=64, patch_size=8, in_chans=25, embed_dim=64, depth=2, num_heads=2,
                                 mlp_ratio=4.0, qkv_bias=True, class_token=True, num_classes=0, global_pool="").eval()
    timm_vit.load_state_dict(ours.state_dict())
    x = torch.rand(3, 25, 64, 64)
    with torch.no_grad():
        tokens = ours(x)
        assert tokens.shape == (3, 65, 64)
        assert torch.equal(tokens, timm_vit.forward_features(x))


def test_ttf_encoder_parameter_names_are_the_originals():
    names = set(TTFEncoder(embed_dim=64, depth=2, num_heads=2).state_dict())
    expected = {"patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed", "norm.weight",
                "norm.bias"}
    for n in range(2):
        for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            expected |= {f"blocks.{n}.{part}.weight", f"blocks.{n}.{part}.bias"}
    assert names == expected


def test_ttf_encoder_default_geometry_is_the_papers():
    enc = TTFEncoder()
    assert enc.patch_embed.proj.weight.shape == (1024, 25, 8, 8)
    assert enc.pos_embed.shape == (1, 65, 1024) and enc.num_tokens == 65
    assert len(enc.blocks) == 6 and enc.blocks[0].attn.num_heads == 8


# ------------------------------------------------------------------------------------------------ UNet


def test_unet_defaults_are_sd21_with_13_channels():
    params = inspect.signature(TextSSRUNet2DConditionModel.__init__).parameters
    assert params["in_channels"].default == 13 and params["cross_attention_dim"].default == 1024
    assert tuple(params["attention_head_dim"].default) == (5, 10, 20, 20)
    assert tuple(params["block_out_channels"].default) == (320, 640, 1280, 1280)
    assert params["use_linear_projection"].default is True and params["upcast_attention"].default is True
    assert {k: params[k].default for k in TTF_KEYS} == dict(ttf_img_size=64, ttf_patch_size=8, ttf_in_chans=25,
                                                            ttf_embed_dim=1024, ttf_depth=6, ttf_num_heads=8)


def upstream_reference(model: TextSSRUNet2DConditionModel):
    """The original's computation rebuilt from upstream parts only: a plain UNet2DConditionModel and timm's
    VisionTransformer holding ``model``'s weights (nothing of TextSSR's classes runs in it)."""
    state = model.state_dict()
    plain = UNet2DConditionModel(**dict(PLAIN_ARCH, in_channels=13)).eval()
    plain.load_state_dict({k: v for k, v in state.items() if not k.startswith("ttf_net.")})
    vit = VisionTransformer(img_size=64, patch_size=8, in_chans=25, embed_dim=64, depth=2, num_heads=2,
                            qkv_bias=True, num_classes=0, global_pool="").eval()
    vit.load_state_dict({k[len("ttf_net."):]: v for k, v in state.items() if k.startswith("ttf_net.")})
    return lambda sample, t, ttf: plain(sample, t, vit.forward_features(ttf)).sample


def test_unet_runs_ttf_net_on_the_raw_ttf_stack():
    unet = make_unet()
    sample, t, ttf = unet_inputs()
    with torch.no_grad():
        ours = unet(sample, t, ttf).sample
        reference = upstream_reference(unet)(sample, t, ttf)
    assert ours.shape == (2, 4, 8, 8)
    assert torch.equal(ours, reference)


def test_training_step_reaches_the_ttf_encoder_with_gradient_checkpointing():
    unet = make_unet().train()
    unet.enable_gradient_checkpointing()
    sample, t, ttf = unet_inputs()
    unet(sample, t, ttf).sample.pow(2).mean().backward()
    assert unet.ttf_net.patch_embed.proj.weight.grad.abs().sum() > 0
    assert unet.conv_in.weight.grad[:, 4:].abs().sum() > 0


def test_unet_rejects_a_wrong_ttf_stack_in_one_line():
    unet = make_unet()
    sample, t, _ = unet_inputs()
    with pytest.raises(ValueError, match=r"TTF stack \(B, 25, 64, 64\)") as err:
        unet(sample, t, torch.rand(2, 25, 32, 32))
    assert "\n" not in str(err.value)


def test_cross_attention_dim_must_equal_ttf_embed_dim():
    with pytest.raises(ValueError, match="cross_attention_dim=32 must equal ttf_embed_dim=64"):
        TextSSRUNet2DConditionModel(**dict(TINY_UNET_ARCH, cross_attention_dim=32))


def test_own_folder_round_trips_bit_identically(tmp_path):
    unet = make_unet()
    unet.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_class_name"] == "TextSSRUNet2DConditionModel"
    assert config["in_channels"] == 13 and config["ttf_embed_dim"] == 64 and config["ttf_depth"] == 2
    assert unet_layout(str(tmp_path)) == "textssr"
    loaded = TextSSRUNet2DConditionModel.from_pretrained(tmp_path).eval()
    before, after = unet.state_dict(), loaded.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    with torch.no_grad():
        assert torch.equal(unet(*unet_inputs()).sample, loaded(*unet_inputs()).sample)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_original_folder_loads_and_matches_the_originals_computation(tmp_path, fmt):
    source = make_unet(seed=1)
    folder = write_original_folder(source, str(tmp_path), fmt)
    assert json.loads((tmp_path / "config.json").read_text())["in_channels"] == 4
    assert unet_layout(folder) == "original"
    loaded = TextSSRUNet2DConditionModel.from_pretrained(folder, **TTF_KEYS).eval()
    assert loaded.config.in_channels == 13 and loaded.conv_in.weight.shape[1] == 13

    # The original's computation, rebuilt from upstream parts: a plain UNet + timm's ViT on the same weights.
    sample, t, ttf = unet_inputs()
    with torch.no_grad():
        assert torch.equal(loaded(sample, t, ttf).sample, upstream_reference(source)(sample, t, ttf))


def test_original_folder_with_wrong_geometry_names_the_overrides(tmp_path):
    folder = write_original_folder(make_unet(), str(tmp_path))
    with pytest.raises(ValueError, match="ttf_embed_dim=64, ttf_depth=2") as err:
        TextSSRUNet2DConditionModel.from_pretrained(folder, ttf_num_heads=2)  # defaults: 1024 wide, 6 deep
    assert "\n" not in str(err.value)


def test_sd_folder_init_copies_sd_weights_into_channels_0_to_3(sd_folder):
    sd = UNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet")
    assert unet_layout(os.path.join(sd_folder, "unet")) == "sd"
    ours = TextSSRUNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet", **TTF_KEYS)
    weight = ours.conv_in.weight
    assert weight.shape[1] == 13
    assert torch.equal(weight[:, :4], sd.conv_in.weight) and not weight[:, 4:].any()
    assert torch.equal(ours.conv_in.bias, sd.conv_in.bias)
    sd_state, own = sd.state_dict(), ours.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sd_state.items() if not k.startswith("conv_in."))
    assert {k for k in own if k not in sd_state} == {k for k in own if k.startswith("ttf_net.")}


def test_sd_init_random_mode_reinitialises_conv_in(sd_folder):
    sd = UNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet")
    zero = TextSSRUNet2DConditionModel.from_sd_unet(sd, **TTF_KEYS)
    rand = TextSSRUNet2DConditionModel.from_sd_unet(sd, conv_in_init="random", **TTF_KEYS)
    assert rand.conv_in.weight[:, 4:].abs().sum() > 0
    assert not torch.equal(rand.conv_in.weight[:, :4], sd.conv_in.weight)
    assert torch.equal(rand.down_blocks[0].resnets[0].conv1.weight, zero.down_blocks[0].resnets[0].conv1.weight)
    with pytest.raises(ValueError, match="conv_in_init"):
        TextSSRUNet2DConditionModel.from_sd_unet(sd, conv_in_init="zeros")


def test_sd_init_is_seeded_and_leaves_the_global_rng_alone(sd_folder):
    state = torch.random.get_rng_state()
    a = TextSSRUNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet", conv_in_init="random", **TTF_KEYS)
    b = TextSSRUNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet", conv_in_init="random", **TTF_KEYS)
    c = TextSSRUNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet", conv_in_init="random", init_seed=1,
                                                    **TTF_KEYS)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.ttf_net.pos_embed, b.ttf_net.pos_embed) and torch.equal(a.conv_in.weight, b.conv_in.weight)
    assert not torch.equal(a.ttf_net.pos_embed, c.ttf_net.pos_embed)


def test_sd_init_ttf_width_defaults_to_sd_cross_attention_dim(sd_folder):
    ours = TextSSRUNet2DConditionModel.from_pretrained(sd_folder, subfolder="unet", ttf_depth=1)
    assert ours.config.ttf_embed_dim == ours.config.cross_attention_dim == 64
    assert len(ours.ttf_net.blocks) == 1


def test_a_vae_folder_is_not_a_unet(sd_folder):
    with pytest.raises(ValueError, match="holds a AutoencoderKL, not a UNet2DConditionModel"):
        TextSSRUNet2DConditionModel.from_pretrained(sd_folder, subfolder="vae")
