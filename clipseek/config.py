"""Settings: one place that decides what every front end runs with.

Precedence is flags > environment > config file > built-in defaults, so that a
user can keep their usual choices in a file, override them per shell session,
and still change one run from the command line.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from clipseek.errors import ConfigError

APP_NAME = "clipseek"
#: Chosen by the rule in docs/MODELS.md: the best published English retrieval among models
#: that index at 0.65x OpenAI's ViT-B/32 speed or better on a 2-core CPU, answer a cold
#: query within 1 s and 450 MB, and carry a licence that allows any use; it also
#: understands many languages. Indexes built with an earlier default keep their model
#: (see models.catalogue.PREVIOUS_DEFAULTS).
DEFAULT_MODEL = "ViT-B-32-SigLIP2-256:webli"
DEFAULT_BATCH_SIZE = 32
DEFAULT_TOP_K = 5
DEFAULT_MAX_MEGAPIXELS = 200.0
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")  # int8: ONNX on a CPU, explicit only
#: How the app lays out results: a ranked list, or a grid of thumbnails.
VIEWS = ("list", "grid")

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
    "CLIPSEEK_VIEW": "view",
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
    view: str = "list"
    keys: Mapping[str, str] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)
    #: Settings given an unusable value by the environment or the config file, and why;
    #: the default stands in until a command that uses one calls :meth:`require`.
    problems: Mapping[str, str] = field(default_factory=dict)

    def require(self, *names: str) -> None:
        """Raise the :class:`ConfigError` of the first of ``names`` that had a bad value.

        A bad ``CLIPSEEK_BATCH_SIZE`` must stop ``clipseek index``, which uses it, but not
        ``clipseek query``, which does not.
        """
        for name in names:
            if name in self.problems:
                raise ConfigError(self.problems[name])

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
        sources = {**self.sources, **dict.fromkeys(given, "flag")}
        merged = _validated({**_as_dict(self), **given}, sources)
        problems = {k: v for k, v in self.problems.items() if k not in given}
        return replace(self, **merged, sources=sources, problems=problems)


_FIELD_NAMES = {f.name for f in fields(Settings)} - {"sources", "problems"}
#: Settings that only some commands use: a bad value from the environment or the config
#: file is reported by those commands (see :meth:`Settings.require`), not by every one.
DEFERRED = frozenset({"batch_size"})
_INTEGER = re.compile(r"^\s*[+-]?\d+\s*$")


def _as_dict(settings: Settings) -> dict[str, Any]:
    return {name: getattr(settings, name) for name in _FIELD_NAMES}


def _shown(key: str, value: Any, source: str | None) -> str:
    """How the user wrote a value, so the message points at the right place."""
    if source is not None and source.startswith("$"):
        return f"{source[1:]}={value}"
    if source is not None and source.startswith("config file "):
        return f"{key} = {value!r} in the {source}"
    if source == "flag":
        return f"--{key.replace('_', '-')} {value}"
    return f"{key} = {value!r}"


def _text(key: str, value: Any, source: str | None) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{_shown(key, value, source)}: {key} must be text (in quotes).")
    return value


def _batch_size(value: Any, source: str | None) -> int:
    problem = f"{_shown('batch_size', value, source)}: the batch size must be a whole number "
    problem += "from 1 to 4096."
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(problem)
    if isinstance(value, str):
        if not _INTEGER.match(value):
            raise ConfigError(problem)
        value = int(value)
    if not 1 <= value <= 4096:
        raise ConfigError(problem)
    return value


#: The most threads a command line may ask for (model threads, decoder threads): far above
#: any machine's cores, far below what makes ONNX Runtime or torch fail or crash.
MAX_THREADS = 1024


def thread_count(value: int | None, flag: str) -> int | None:
    """A thread count given as ``flag`` (None: not given), or the :class:`ConfigError`
    that says which numbers it takes."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_THREADS:
        raise ConfigError(
            f"{flag} {value}: the number of threads must be a whole number from 1 to {MAX_THREADS}."
        )
    return value


def _chroma_url(value: Any, source: str | None) -> str | None:
    """A Chroma server's address: an http(s) URL with a host, never anything else (a
    ``file:`` URL used to become an index folder named ``file:`` in the current folder)."""
    from urllib.parse import urlsplit

    text = _text("chroma_url", value, source).strip()
    if not text:
        return None
    problem = (
        f"{_shown('chroma_url', value, source)}: the Chroma server's address must be an "
        "http:// or https:// URL, e.g. http://localhost:8000."
    )
    try:
        url = urlsplit(text)
        url.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigError(problem) from None
    if url.scheme.lower() not in ("http", "https") or not url.hostname:
        raise ConfigError(problem)
    return text


def _megapixels(value: Any, source: str | None) -> float:
    problem = (
        f"{_shown('max_megapixels', value, source)}: the megapixel limit must be a positive "
        "number, e.g. 200."
    )
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(problem)
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(problem) from None
    if not math.isfinite(number) or number <= 0:  # nan would switch the bomb guard off
        raise ConfigError(problem)
    return number


def _validated(values: dict[str, Any], sources: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Check every value; raises the first problem as a :class:`ConfigError`."""
    out, problems = _checked(values, sources or {})
    for message in problems.values():
        raise ConfigError(message)
    return out


def _checked(
    values: dict[str, Any], sources: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Checked values, and the problems of :data:`DEFERRED` settings (their defaults stand
    in). Values from flags are never deferred: the user has just typed them."""
    out = dict(values)
    problems: dict[str, str] = {}
    src = sources.get
    for key in ("model", "device", "precision", "preview"):
        out[key] = _text(key, out[key], src(key))
    db = out["db"]
    if not isinstance(db, str | os.PathLike) or not str(db).strip():
        raise ConfigError(f"{_shown('db', db, src('db'))}: db must be a folder path (in quotes).")
    out["db"] = Path(str(db)).expanduser()
    if out.get("chroma_url") is not None:
        out["chroma_url"] = _chroma_url(out["chroma_url"], src("chroma_url"))
    try:
        out["batch_size"] = _batch_size(out["batch_size"], src("batch_size"))
    except ConfigError as exc:
        if src("batch_size") in (None, "flag"):
            raise
        problems["batch_size"] = str(exc)
        out["batch_size"] = DEFAULT_BATCH_SIZE
    out["max_megapixels"] = _megapixels(out["max_megapixels"], src("max_megapixels"))
    out["device"] = out["device"].lower()
    if out["device"] not in DEVICES:
        raise ConfigError(f"Unknown device {out['device']!r}; use one of: {', '.join(DEVICES)}.")
    out["precision"] = out["precision"].lower()
    if out["precision"] not in PRECISIONS:
        raise ConfigError(
            f"Unknown precision {out['precision']!r}; use one of: {', '.join(PRECISIONS)}."
        )
    out["view"] = str(out["view"]).strip().lower()
    if out["view"] not in VIEWS:
        raise ConfigError(f"Unknown view {out['view']!r}; use one of: {', '.join(VIEWS)}.")
    if not str(out["model"]).strip():
        raise ConfigError("The model name is empty.")
    return out, problems


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"The config file {path} is not UTF-8 text; save it as UTF-8 (TOML requires it)."
        ) from None
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

    checked, problems = _checked(values, sources)
    return Settings(**checked, sources=sources, problems=problems)


def remember_setting(key: str, value: str) -> Path:
    """Write ``key = "value"`` into the config file (the app remembers a choice made
    there, such as the gallery view), keeping every other line as it is.

    An existing top-level ``key = ...`` line is replaced; otherwise the line goes
    before the first table, where TOML keeps top-level keys. Raises
    :class:`ConfigError` if the file cannot be written.
    """
    if key not in _FIELD_NAMES or key == "keys":
        raise ConfigError(f"{key!r} is not a setting that can be remembered.")
    path = config_file_path()
    try:
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    except FileNotFoundError:
        lines = []
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"The config file {path} cannot be read: {exc}") from None
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    entry = f'{key} = "{escaped}"\n'
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    first_table = next((i for i, line in enumerate(lines) if line.lstrip().startswith("[")), None)
    top = lines if first_table is None else lines[:first_table]
    for i, line in enumerate(top):
        if pattern.match(line):
            lines[i] = entry
            break
    else:
        at = len(lines) if first_table is None else first_table
        if at and not lines[at - 1].endswith("\n"):
            lines[at - 1] += "\n"
        lines.insert(at, entry)
    try:
        tomllib.loads("".join(lines))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Cannot save {key} in {path}: it is not valid TOML ({exc}).") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(lines), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(
            f"Cannot save {key} = {value!r} in {path}: {exc.strerror or exc}."
        ) from None
    return path
