"""Start-up validation of the training configs: one line naming the path or key and the fix, exit status 2,
before any dataset or model is built."""
import subprocess
import sys
from pathlib import Path

import pytest

from textssr.config import ConfigError, load_config
from textssr.train.checkpoint import latest_checkpoint, list_checkpoints, prune, resolve_resume

REPO = Path(__file__).resolve().parents[1]


def _script(name):
    """The thin entry point ``<repo>/<name>.py`` as a module."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_vae, train_diff = _script("train_vae"), _script("train_diff")


@pytest.fixture(scope="module")
def lmdb_dir(tmp_path_factory):
    """A folder holding one (empty) LMDB environment: enough for the path checks."""
    import lmdb
    path = tmp_path_factory.mktemp("lmdb") / "env"
    lmdb.open(str(path), map_size=1 << 20).close()
    return path


def error_line(main, capsys, *options, config="configs/tiny/train_vae_cfg.py"):
    with pytest.raises(SystemExit) as exc:
        main(["--config", str(REPO / config), "--cfg-options", *options])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_missing_lmdb_names_path_and_builder(capsys, tmp_path):
    err = error_line(train_vae.main, capsys, f"lmdb_path={tmp_path / 'nope'}", f"output_dir={tmp_path / 'out'}")
    assert str(tmp_path / "nope") in err and "python -m textssr.data.build_lmdb" in err
    assert not (tmp_path / "out").exists()  # nothing was started


def test_folder_without_lmdb_is_refused(capsys, tmp_path):
    err = error_line(train_vae.main, capsys, f"lmdb_path={tmp_path}")
    assert "data.mdb" in err and str(tmp_path) in err


def test_missing_sd21_folder_says_how_to_get_it(capsys, lmdb_dir, tmp_path):
    err = error_line(train_vae.main, capsys, f"lmdb_path={lmdb_dir}",
                     f"pretrained_model_name_or_path={tmp_path / 'sd21'}", config="configs/train_vae_cfg.py")
    assert str(tmp_path / "sd21" / "vae") in err and "stable-diffusion-2-1" in err


def test_missing_vae_stage_output_names_the_vae_command(capsys, lmdb_dir, tmp_path):
    err = error_line(train_diff.main, capsys, f"lmdb_path={lmdb_dir}", f"pretrained_vae={tmp_path / 'vae_ft'}",
                     config="configs/tiny/train_diff_step1_cfg.py")
    assert "pretrained_vae" in err and str(tmp_path / "vae_ft") in err and "train_vae.py" in err


def test_no_source_and_no_arch(capsys, lmdb_dir):
    err = error_line(train_vae.main, capsys, f"lmdb_path={lmdb_dir}", "vae_arch=None")
    assert "vae_arch" in err


@pytest.mark.parametrize("option, key", [("prediction_type=x0", "prediction_type"),
                                         ("mixed_precision=fp8", "mixed_precision"),
                                         ("lr_scheduler=exotic", "lr_scheduler"),
                                         ("train_batch_size=0", "train_batch_size"),
                                         ("snr_gamma=-1", "snr_gamma"),
                                         ("conv_in_init=zeros", "conv_in_init"),
                                         ("vae_latents=mean", "vae_latents"),
                                         ("vae_dtype=fp16", "vae_dtype"),
                                         ("scaling_factor=-0.5", "scaling_factor"),
                                         ("scaling_factor=automatic", "scaling_factor"),
                                         ("image_log_scheduler=heun", "image_log_scheduler"),
                                         ("image_log_timestep_spacing=middle", "image_log_timestep_spacing"),
                                         ("timestep_bias_strategy=late", "timestep_bias_strategy"),
                                         ("timestep_bias_strategy=later timestep_bias_multiplier=0",
                                          "timestep_bias_multiplier"),
                                         ("timestep_bias_strategy=later timestep_bias_portion=1.5",
                                          "timestep_bias_portion"),
                                         ("timestep_bias_strategy=range timestep_bias_begin=900 "
                                          "timestep_bias_end=100", "timestep_bias_begin")])
def test_bad_values(capsys, lmdb_dir, option, key):
    err = error_line(train_diff.main, capsys, f"lmdb_path={lmdb_dir}", *option.split(),
                     config="configs/tiny/train_diff_step1_cfg.py")
    assert err.startswith(f"error: {key}")


def test_resolution_must_fit_the_vaes_own_downsampling_factor(capsys, lmdb_dir):
    """The factor comes from the VAE's config (2 ** (levels - 1)): 2 for the tiny 2-level VAE, 8 for 4 levels."""
    err = error_line(train_vae.main, capsys, f"lmdb_path={lmdb_dir}", "resolution=63")
    assert err.startswith("error: resolution=63") and "multiple of 2" in err
    four = "[DownEncoderBlock2D,DownEncoderBlock2D,DownEncoderBlock2D,DownEncoderBlock2D]"
    err = error_line(train_vae.main, capsys, f"lmdb_path={lmdb_dir}", "resolution=60",
                     "vae_arch.block_out_channels=[16,16,16,16]", f"vae_arch.down_block_types={four}",
                     f"vae_arch.up_block_types={four.replace('Down', 'Up').replace('Encoder', 'Decoder')}")
    assert err.startswith("error: resolution=60") and "multiple of 8" in err


def test_resume_path_must_be_a_checkpoint(capsys, lmdb_dir, tmp_path):
    err = error_line(train_vae.main, capsys, f"lmdb_path={lmdb_dir}", f"resume_from_checkpoint={tmp_path}")
    assert "resume_from_checkpoint" in err and str(tmp_path) in err


def test_8bit_adam_without_bitsandbytes(capsys, lmdb_dir):
    import importlib.util
    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed")
    err = error_line(train_vae.main, capsys, f"lmdb_path={lmdb_dir}", "use_8bit_adam=True", "adam_fused=False")
    assert "pip install bitsandbytes" in err


def test_script_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "train_diff.py"), "--config",
                           str(REPO / "configs/tiny/train_diff_step2_cfg.py"), "--cfg-options",
                           f"lmdb_path={tmp_path / 'missing'}"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: lmdb_path") and "Traceback" not in proc.stderr


def test_configs_keep_the_originals_values():
    vae = load_config(str(REPO / "configs/train_vae_cfg.py"))
    step1 = load_config(str(REPO / "configs/train_diff_step1_cfg.py"))
    step2 = load_config(str(REPO / "configs/train_diff_step2_cfg.py"))
    for cfg in (vae, step1, step2):
        assert (cfg.seed, cfg.resolution, cfg.ttf_size, cfg.max_len) == (3407, 256, 64, 25)
        assert (cfg.learning_rate, cfg.lr_scheduler, cfg.max_grad_norm, cfg.gradient_accumulation_steps) == \
            (1e-4, "constant", 1.0, 8)
        assert (cfg.adam_beta1, cfg.adam_beta2, cfg.adam_weight_decay, cfg.adam_epsilon) == (0.9, 0.999, 0.01, 1e-8)
        assert cfg.resume_from_checkpoint == "latest"
        assert cfg.pretrained_model_name_or_path == "model/stable-diffusion-v2-1"
    assert (vae.train_batch_size, vae.checkpointing_steps, vae.output_dir) == (8, 50000, "model/vae_ft")
    assert (step1.train_batch_size, step1.checkpointing_steps, step1.output_dir) == (4, 10000, "model/step1")
    assert (step2.checkpointing_steps, step2.output_dir) == (5000, "model/step2")
    assert step2.pretrained_unet.startswith("model/step1/") and step2.lmdb_path.endswith("step2_lmdb")
    assert step1.prediction_type is None and step1.snr_gamma is None  # the original's plain v-prediction MSE
    assert step1.vae_latents == step2.vae_latents == "sample"  # latents drawn from the VAE posterior
    assert vae.scaling_factor is None  # SD 2.1's 0.18215 stays in the saved vae/config.json


def test_tiny_configs_chain_the_stages():
    vae = load_config(str(REPO / "configs/tiny/train_vae_cfg.py"))
    step1 = load_config(str(REPO / "configs/tiny/train_diff_step1_cfg.py"))
    step2 = load_config(str(REPO / "configs/tiny/train_diff_step2_cfg.py"))
    assert step1.pretrained_vae == vae.output_dir == "model/tiny/vae_ft"
    assert step2.pretrained_unet == step1.output_dir == "model/tiny/step1"
    assert step2.output_dir == "model/tiny/step2"
    assert all(p.startswith("data/tiny/AnyWord-lmdb/") for p in vae.lmdb_path + [step1.lmdb_path, step2.lmdb_path])


def test_latest_ignores_partial_saves(tmp_path):
    for step in (5, 10, 20):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-30").mkdir()  # no trainer_state.json: never finished
    (tmp_path / ".tmp-checkpoint-40").mkdir()
    assert latest_checkpoint(str(tmp_path)).endswith("checkpoint-20")
    assert resolve_resume("latest", str(tmp_path)).endswith("checkpoint-20")
    assert resolve_resume("checkpoint-5", str(tmp_path)).endswith("checkpoint-5")
    assert resolve_resume(None, str(tmp_path)) is None
    with pytest.raises(ConfigError):
        resolve_resume("checkpoint-30", str(tmp_path))
    prune(str(tmp_path), 2)
    assert [s for s, _ in list_checkpoints(str(tmp_path))] == [10, 20]
