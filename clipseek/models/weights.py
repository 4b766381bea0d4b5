"""Finding a model's weights on this machine, and fetching them when allowed.

A cached model never touches the network: its checkpoint path is handed to open_clip
directly. Where there are no weights and no network, the user gets one sentence with
the fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from clipseek.errors import ModelError, WeightsUnavailableError
from clipseek.models.catalogue import ModelSpec


def _pretrained_cfg(spec: ModelSpec) -> dict[str, Any]:
    from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

    cfg = get_pretrained_cfg(spec.arch, spec.pretrained or "")
    if cfg:
        return dict(cfg)
    if spec.pretrained and os.path.isfile(os.path.expanduser(spec.pretrained)):
        return {"file": os.path.expanduser(spec.pretrained)}
    tags = list_pretrained_tags_by_model(spec.arch)
    if tags:
        raise ModelError(
            f"open_clip has no '{spec.pretrained}' weights for {spec.arch}; "
            f"known tags: {', '.join(tags)}."
        )
    raise ModelError(
        f"Unknown model {spec.name!r}: open_clip has no architecture {spec.arch!r}. "
        "Run `clipseek models` for the names clipseek knows."
    )


def hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _hf_candidates(hub_ref: str) -> tuple[str, list[str]]:
    """The repo and file names open_clip would try for an ``org/repo/[file]`` reference."""
    rest = hub_ref.rstrip("/").split("/")
    repo = "/".join(rest[:2])
    filename = "/".join(rest[2:]) if len(rest) > 2 else "open_clip_pytorch_model.bin"
    stem = filename.rsplit(".", 1)[0]
    names = [f"{stem}.safetensors", filename]
    if filename == "open_clip_pytorch_model.bin":
        names.insert(0, "open_clip_model.safetensors")
    return repo, list(dict.fromkeys(names))


def cached_weights(spec: ModelSpec) -> str | None:
    """The local path of the spec's weights if they are already on this machine."""
    if spec.kind == "local-dir":
        folder = Path(spec.arch.removeprefix("local-dir:"))
        return str(folder) if (folder / "open_clip_config.json").is_file() else None
    if spec.kind == "hf-hub":
        from huggingface_hub import try_to_load_from_cache

        repo = spec.arch.removeprefix("hf-hub:")
        config = try_to_load_from_cache(repo, "open_clip_config.json")
        if not isinstance(config, str):
            return None
        for name in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str):
                return found
        return None
    cfg = _pretrained_cfg(spec)
    if "file" in cfg:
        return cfg["file"]
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo, names = _hf_candidates(cfg["hf_hub"])
        for name in names:
            found = try_to_load_from_cache(repo, name)
            if isinstance(found, str):
                return found
    if cfg.get("url"):
        legacy = Path("~/.cache/clip").expanduser() / os.path.basename(cfg["url"])
        if legacy.is_file():
            return str(legacy)
    return None


def weights_available(spec: ModelSpec) -> bool:
    """Whether the model can load with no network; never raises for unknown names."""
    try:
        return cached_weights(spec) is not None
    except ModelError:
        return False


def _offline_message(spec: ModelSpec, detail: str = "") -> str:
    where = hf_cache_dir()
    why = f"{detail}; " if detail else ""
    return (
        f"The weights for {spec.name} are not on this machine and could not be downloaded "
        f"({why}clipseek looked in {where}): connect to the internet once so clipseek can "
        "fetch them, or point it at a folder holding an open_clip model with --model "
        "local-dir:PATH."
    )


def _download_weights(spec: ModelSpec, cfg: dict[str, Any]) -> str:
    from open_clip.pretrained import download_pretrained

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        raise WeightsUnavailableError(_offline_message(spec, "HF_HUB_OFFLINE is set"))
    try:
        path = download_pretrained(cfg)
    except Exception as exc:  # network errors come in many types; all mean the same here
        raise WeightsUnavailableError(_offline_message(spec, _short(exc))) from exc
    if not path:
        raise WeightsUnavailableError(_offline_message(spec))
    return path


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _check_local_dir(spec: ModelSpec) -> None:
    folder = Path(spec.arch.removeprefix("local-dir:"))
    if not folder.is_dir():
        raise ModelError(f"The model folder {folder} does not exist (from --model {spec.name}).")
    if not (folder / "open_clip_config.json").is_file():
        raise ModelError(
            f"The model folder {folder} has no open_clip_config.json; a local-dir: model needs "
            "that file and a weights file (.safetensors, .bin or .pth) beside it."
        )
