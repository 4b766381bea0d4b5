from __future__ import annotations

from pathlib import Path

import pytest

from clipseek.config import DEFAULT_MODEL, config_file_path, default_db_path, load_settings
from clipseek.errors import ConfigError


def write_config(home: Path, text: str) -> Path:
    path = config_file_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_live_in_platformdirs_folders(isolated_env: Path) -> None:
    settings = load_settings()
    assert settings.model == DEFAULT_MODEL
    assert settings.db == default_db_path()
    assert str(settings.db).startswith(str(isolated_env))
    assert settings.batch_size == 32
    assert not settings.model_explicit


def test_flags_beat_env_beat_file(isolated_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_config(
        isolated_env, 'model = "RN50"\ndevice = "cpu"\nbatch_size = 8\ndb = "~/from-file"\n'
    )
    from_file = load_settings()
    assert (from_file.model, from_file.device, from_file.batch_size) == ("RN50", "cpu", 8)
    assert from_file.db == isolated_env / "from-file"
    assert from_file.model_explicit
    assert "config file" in from_file.sources["model"]

    monkeypatch.setenv("CLIPSEEK_MODEL", "ViT-B/16")
    monkeypatch.setenv("CLIPSEEK_DB", str(isolated_env / "from-env"))
    from_env = load_settings()
    assert from_env.model == "ViT-B/16"
    assert from_env.db == isolated_env / "from-env"
    assert from_env.device == "cpu"  # still from the file
    assert from_env.sources["model"] == "$CLIPSEEK_MODEL"

    from_flag = load_settings({"model": "ViT-L/14", "db": None})
    assert from_flag.model == "ViT-L/14"
    assert from_flag.db == isolated_env / "from-env"  # None means "flag not given"
    assert from_flag.sources["model"] == "flag"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"device": "tpu"}, "Unknown device 'tpu'"),
        ({"precision": "int4"}, "Unknown precision 'int4'"),
        ({"batch_size": 0}, "the batch size must be a whole number from 1 to 4096"),
        ({"batch_size": "many"}, "--batch-size many: the batch size must be a whole number"),
        ({"max_megapixels": -1}, "positive"),
        ({"model": "  "}, "model name is empty"),
    ],
)
def test_bad_values_are_clear_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(overrides)


def test_broken_or_unknown_config_file(isolated_env: Path) -> None:
    path = write_config(isolated_env, "model = [unclosed\n")
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        load_settings()
    assert str(path) in str(err.value)
    write_config(isolated_env, 'modle = "RN50"\n')
    with pytest.raises(ConfigError, match=r"unknown setting.*modle"):
        load_settings()


def test_with_overrides_keeps_sources() -> None:
    base = load_settings()
    changed = base.with_overrides(model="RN50", device=None)
    assert changed.model == "RN50" and changed.model_explicit
    assert changed.device == base.device
    assert base.with_overrides() is base
