"""textssr.config: mmengine configs with _base_ inheritance, --cfg-options, one-line errors."""
import pytest

from textssr.config import ConfigError, load_config, parse_config, require_keys, require_path


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_base_inheritance_and_cfg_options(tmp_path):
    _write(tmp_path / "base.py", "resolution = 256\nlearning_rate = 1e-4\nlmdb_path = 'a'\n")
    child = _write(tmp_path / "child.py", "_base_ = ['./base.py']\nresolution = 64\n")
    cfg = load_config(child, {"learning_rate": 5e-5})
    assert cfg.resolution == 64
    assert cfg.learning_rate == 5e-5
    assert cfg.lmdb_path == "a"


def test_parse_config_reads_dictaction_values(tmp_path):
    path = _write(tmp_path / "c.py", "max_train_steps = 10\nnested = dict(a=1)\n")
    cfg = parse_config(["--config", path, "--cfg-options", "max_train_steps=3", "nested.a=7"])
    assert cfg.max_train_steps == 3
    assert cfg.nested.a == 7


def test_missing_config_file_is_one_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(str(tmp_path / "nope.py"))
    assert "nope.py" in str(err.value) and "\n" not in str(err.value)


def test_require_keys_names_all_missing(tmp_path):
    cfg = load_config(_write(tmp_path / "c.py", "a = 1\n"))
    with pytest.raises(ConfigError, match="b, c"):
        require_keys(cfg, ["a", "b", "c"])


def test_require_path_names_key_and_fix(tmp_path):
    assert require_path(str(tmp_path), "output_dir") == str(tmp_path)
    with pytest.raises(ConfigError, match=r"lmdb_path: path not found: .*missing — build it"):
        require_path(str(tmp_path / "missing"), "lmdb_path", "build it")


def test_dict_values_on_the_command_line(tmp_path):
    """mmengine's DictAction recursed until RecursionError on any key=dict(...); a dict now replaces the value."""
    path = _write(tmp_path / "c.py", "screening = dict(match='ned', min_ned=0.5, case_sensitive=True)\nwords = None\n")
    cfg = parse_config(["--config", path, "--cfg-options", "screening=dict(match='exact',min_ned=2)",
                        "words={'a': dict(b=-1, c=[1, (2, 3)], d=None, e=word)}"])
    assert cfg.screening == {"match": "exact", "min_ned": 2}
    assert cfg.words == {"a": {"b": -1, "c": [1, (2, 3)], "d": None, "e": "word"}}
    cfg = parse_config(["--config", path, "--cfg-options", "screening.min_ned=0.7", "words=a,b"])
    assert cfg.screening == {"match": "ned", "min_ned": 0.7, "case_sensitive": True} and cfg.words == ["a", "b"]


@pytest.mark.parametrize("option, message", [
    ("screening=dict(a=open('x'))", "open('x') is not a literal"),
    ("screening=dict(a=", "cannot read it as a dict"),
    ("screening=f(1,2)", "cannot read the value"),
    ("screening=[1,2", "cannot read the value"),
    ("screening", "expected KEY=VALUE"),
])
def test_unreadable_option_values_are_one_line(tmp_path, option, message):
    path = _write(tmp_path / "c.py", "screening = None\n")
    with pytest.raises(ConfigError) as err:
        parse_config(["--config", path, "--cfg-options", option])
    assert message in str(err.value) and "\n" not in str(err.value)
