"""Settings: one place that decides what every face runs with.

Precedence is flags > environment > config file > built-in defaults, so that a
user can keep their usual choices in a file, override them per shell session,
and still change one run from the command line.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from clipseek.errors import ConfigError

APP_NAME = "clipseek"
DEFAULT_MODEL = "ViT-B/32"
DEFAULT_BATCH_SIZE = 32
DEFAULT_TOP_K = 5
DEFAULT_MAX_MEGAPIXELS = 200.0
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

#: Environment variables and the setting each one feeds.
ENV_VARS: dict[str, str] = {
    "CLIPSEEK_DB": "db",
    "CLIPSEEK_MODEL": "model",
    "CLIPSEEK_DEVICE": "device",
    "CLIPSEEK_BATCH_SIZE": "batch_size",
    "CLIPSEEK_PRECISION": "precision",
    "CLIPSEEK_CHROMA_URL": "chroma_url",
    "CLIPSEEK_MAX_MEGAPIXELS": "max_megapixels",
    "CLIPSEEK_PREVIEW": "preview",
}


def config_dir() -> Path:
    from platformdirs import user_config_path

    return user_config_path(APP_NAME, appauthor=False)


def data_dir() -> Path:
    from platformdirs import user_data_path

    return user_data_path(APP_NAME, appauthor=False)


def cache_dir() -> Path:
    from platformdirs import user_cache_path

    return user_cache_path(APP_NAME, appauthor=False)


def config_file_path() -> Path:
    """The TOML file read for defaults; ``CLIPSEEK_CONFIG`` points elsewhere (tests, dotfiles)."""
    override = os.environ.get("CLIPSEEK_CONFIG")
    if override:
        return Path(override).expanduser()
    return config_dir() / "config.toml"


def default_db_path() -> Path:
    return data_dir() / "index"


@dataclass(frozen=True)
class Settings:
    """Resolved settings; ``sources`` records where each non-default value came from."""

    db: Path = field(default_factory=default_db_path)
    model: str = DEFAULT_MODEL
    device: str = "auto"
    batch_size: int = DEFAULT_BATCH_SIZE
    precision: str = "auto"
    chroma_url: str | None = None
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
    preview: str = "auto"
    keys: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def model_explicit(self) -> bool:
        """True when the user chose a model; otherwise clipseek may adopt the index's model."""
        return "model" in self.sources

    @property
    def explicit_batch_size(self) -> int | None:
        """The batch size the user set (flag, environment, config file), else None: the
        indexer then chooses by device (large on a GPU, 32 on a CPU). Settings built in code
        with another value than the default count as set."""
        if "batch_size" in self.sources or self.batch_size != DEFAULT_BATCH_SIZE:
            return self.batch_size
        return None

    @property
    def store_location(self) -> str:
        return self.chroma_url or str(self.db)

    def with_overrides(self, **overrides: Any) -> Settings:
        """Apply command-line values (None means "not given") on top of these settings."""
        given = {k: v for k, v in overrides.items() if v is not None}
        if not given:
            return self
        merged = _validated({**_as_dict(self), **given})
        sources = {**self.sources, **dict.fromkeys(given, "flag")}
        return replace(self, **merged, sources=sources)


_FIELD_NAMES = {f.name for f in fields(Settings)} - {"sources"}


def _as_dict(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in _FIELD_NAMES}


def _validated(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    try:
        out["db"] = Path(str(out["db"])).expanduser()
        out["batch_size"] = int(out["batch_size"])
        out["max_megapixels"] = float(out["max_megapixels"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Invalid setting value: {exc}") from None
    if out["batch_size"] < 1 or out["batch_size"] > 4096:
        raise ConfigError(f"Batch size must be between 1 and 4096, not {out['batch_size']}.")
    if out["max_megapixels"] <= 0:
        raise ConfigError("The megapixel limit must be a positive number.")
    out["device"] = str(out["device"]).lower()
    if out["device"] not in DEVICES:
        raise ConfigError(f"Unknown device {out['device']!r}; use one of: {', '.join(DEVICES)}.")
    out["precision"] = str(out["precision"]).lower()
    if out["precision"] not in PRECISIONS:
        raise ConfigError(
            f"Unknown precision {out['precision']!r}; use one of: {', '.join(PRECISIONS)}."
        )
    if not str(out["model"]).strip():
        raise ConfigError("The model name is empty.")
    if out.get("chroma_url") == "":
        out["chroma_url"] = None
    return out


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"The config file {path} cannot be read: {exc.strerror}") from None
    unknown = set(data) - _FIELD_NAMES
    if unknown:
        raise ConfigError(
            f"The config file {path} has unknown setting(s): {', '.join(sorted(unknown))}. "
            f"Known settings: {', '.join(sorted(_FIELD_NAMES))}."
        )
    if "keys" in data and not isinstance(data["keys"], dict):
        raise ConfigError(f'In {path}, [keys] must be a table of action = "key" entries.')
    return data


def load_settings(
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build settings from the config file, the environment and ``overrides`` (flags)."""
    env = os.environ if environ is None else environ
    values = _as_dict(Settings())
    sources: dict[str, str] = {}

    path = config_file_path()
    for key, value in _read_config_file(path).items():
        values[key] = value
        sources[key] = f"config file {path}"

    for var, key in ENV_VARS.items():
        if env.get(var):
            values[key] = env[var]
            sources[key] = f"${var}"

    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
            sources[key] = "flag"

    return Settings(**_validated(values), sources=sources)
