"""One checked settings object per script (textssr.config.settings): the shipped configs are exactly their fields,
and every key given a value of the wrong type or out of range is one line `error: ...` naming it, exit status 2,
before anything heavy starts."""
import dataclasses
import os
from pathlib import Path

import pytest

from textssr.config import ConfigError, load_config
from textssr.config.run_config import read_run_config
from textssr.config.settings import field_checks, names
from textssr.generation.settings import SamplingSettings
from textssr.infer.settings import InferSettings
from textssr.str.settings import StrSettings
from textssr.synth.settings import SynthSettings
from textssr.train.settings import CDMSettings, TrainSettings

REPO = Path(__file__).resolve().parents[1]
SHIPPED = {"train_vae_cfg.py": TrainSettings, "train_diff_step1_cfg.py": CDMSettings,
           "train_diff_step2_cfg.py": CDMSettings, "infer_cfg.py": InferSettings, "synth_cfg.py": SynthSettings,
           "sampling_cfg.py": SamplingSettings, "str/train_str_cfg.py": StrSettings}
TINY = {"tiny/train_vae_cfg.py": TrainSettings, "tiny/train_diff_step1_cfg.py": CDMSettings,
        "tiny/train_diff_step2_cfg.py": CDMSettings, "tiny/infer_cfg.py": InferSettings,
        "tiny/synth_cfg.py": SynthSettings, "tiny/sampling_cfg.py": SamplingSettings,
        "str/tiny/train_str_cfg.py": StrSettings}
SCRIPTS = {"train_vae.py": (TrainSettings, "configs/tiny/train_vae_cfg.py"),
           "train_diff.py": (CDMSettings, "configs/tiny/train_diff_step1_cfg.py"),
           "infer.py": (InferSettings, "configs/tiny/infer_cfg.py"),
           "synthesize.py": (SynthSettings, "configs/tiny/synth_cfg.py"),
           "train_str.py": (StrSettings, "configs/str/tiny/train_str_cfg.py")}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_each_shipped_config_holds_exactly_its_settings_fields(name):
    keys = {k for k in load_config(str(REPO / "configs" / name)).keys() if not k.startswith("_")}
    assert keys == set(names(SHIPPED[name]))
    SHIPPED[name].load(str(REPO / "configs" / name))  # and its values pass every check


@pytest.mark.parametrize("name", sorted(TINY))
def test_each_tiny_config_is_valid_settings(name):
    settings = TINY[name].load(str(REPO / "configs" / name))
    assert dataclasses.is_dataclass(settings)


def test_settings_are_frozen_cast_and_recorded_as_data(tmp_path):
    settings = InferSettings.load(str(REPO / "configs/tiny/infer_cfg.py"), {"num_inference_steps": 3.0,
                                                                           "output_dir": str(tmp_path)})
    assert settings.num_inference_steps == 3 and type(settings.num_inference_steps) is int  # cast once, kept
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.seed = 1
    settings.write(str(tmp_path))
    assert read_run_config(str(tmp_path)) == settings.to_dict()
    assert InferSettings.from_config(read_run_config(str(tmp_path))) == settings


def test_a_key_the_config_leaves_out_takes_the_shipped_value(tmp_path):
    user = tmp_path / "user_cfg.py"
    user.write_text('bench = "b.json"\noutput_dir = "o"\npretrained_vae = "v"\npretrained_unet = "u"\n')
    settings = InferSettings.load(str(user))
    assert settings.num_inference_steps == load_config(str(REPO / "configs/infer_cfg.py")).num_inference_steps
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        InferSettings.from_config(dict(batch_sise=3))


def test_the_resume_rule_comes_from_the_fields():
    assert "batch_size" not in InferSettings.resume_keys() and "batch_size" in SynthSettings.resume_keys()
    free = {"output_dir", "ddp_timeout", "allow_far_resolution", "strict"}
    assert not free & set(SynthSettings.resume_keys()) and not free & set(InferSettings.resume_keys())
    assert {"seed", "scheduler", "num_inference_steps", "screening"} <= set(SynthSettings.resume_keys())


def option(value) -> str:
    return f"'{value}'" if isinstance(value, str) and value and not value.isidentifier() else str(value)


def cases():
    for script, (cls, config) in SCRIPTS.items():
        for key, check in field_checks(cls).items():
            for i, bad in enumerate(check.bad):  # every bad value a check names: e.g. a Boolean given 2
                yield pytest.param(script, config, key, bad, id=f"{script}:{key}:{i}")


@pytest.fixture
def nothing_heavy(monkeypatch):
    """Fail the test if a script gets past its settings: no process group, no dataset, no model."""
    from textssr.runtime import distributed

    def refuse(*args, **kwargs):
        raise AssertionError("the script started work before refusing its settings")
    monkeypatch.setattr(distributed, "process_state", refuse)


@pytest.mark.parametrize("script, config, key, bad", list(cases()))
def test_every_key_with_a_bad_value_is_one_line_and_exit_2(script, config, key, bad, capsys, nothing_heavy,
                                                           monkeypatch):
    import importlib
    monkeypatch.chdir(REPO)
    main = importlib.import_module(os.path.splitext(script)[0]).main
    with pytest.raises(SystemExit) as exit_:
        main(["--config", config, "--cfg-options", f"{key}={option(bad)}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and key in err[0]
