"""Export once, run forever: a model's two towers as ONNX files in the user's cache.

A process that has the model in torch anyway (an index run, or a query that found no
export) writes ``text.onnx``, ``image.onnx``, the tokenizer's vocabulary and a
``manifest.json`` into ``<cache>/onnx/<model>-<digest of the weights>/``. Everything a
later process needs is in that folder, so queries, the app and the server load it with
onnxruntime alone and never import torch or open_clip (seconds on a small machine).

The folder is written under a temporary name and renamed into place only when complete:
a half-written export (a crash, a full disk) is never seen under the final name, and
temporary folders left behind are swept by the next export. The manifest records the
weights file's path, size and mtime; :func:`find_export` checks them with one ``stat``
so a replaced checkpoint is noticed without hashing it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipseek.config import cache_dir
from clipseek.errors import ClipseekError
from clipseek.models.base import PreprocessConfig
from clipseek.models.catalogue import ModelSpec
from clipseek.models.token_slices import SLICES_FILE, write_slices
from clipseek.models.tokenizer import default_bpe_path, supported
from clipseek.models.torch_backend import _encode_text_trimmed, load_model
from clipseek.models.weights import _short, cached_weights

if TYPE_CHECKING:
    from clipseek.models.torch_backend import ClipModel

#: Bumped whenever the files or the manifest change meaning; older exports are ignored.
FORMAT = 1
MANIFEST = "manifest.json"
TEXT_FILE = "text.onnx"
IMAGE_FILE = "image.onnx"
IMAGE_INT8_FILE = "image.int8.onnx"
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
#: Hub-tokenizer families (SigLIP): the tokenizer, and the token table kept out of the text
#: graph as a plain array that queries memory-map (a query reads its own tokens' rows only;
#: SigLIP 2's table is 256,000 × 768 floats, 787 MB).
HUB_TOKENIZER_FILE = "tokenizer.json"
TOKEN_TABLE_FILE = "token_embedding.npy"
OPSET = 17


class ExportError(ClipseekError):
    """The model could not be exported; the torch path keeps working."""


@dataclass(frozen=True)
class Export:
    """A complete export on disk, as its manifest describes it."""

    folder: Path
    manifest: dict[str, Any]

    @property
    def key(self) -> str:
        return str(self.manifest["key"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def context_length(self) -> int:
        return int(self.manifest["context_length"])

    @property
    def preprocess(self) -> PreprocessConfig:
        pp = self.manifest["preprocess"]
        return PreprocessConfig(
            size=(int(pp["size"][0]), int(pp["size"][1])),
            mean=tuple(pp["mean"]),  # type: ignore[arg-type]
            std=tuple(pp["std"]),  # type: ignore[arg-type]
            interpolation=str(pp["interpolation"]),
            resize_mode=str(pp["resize_mode"]),
            fill_color=int(pp.get("fill_color", 0)),
        )

    def path(self, name: str) -> Path:
        return self.folder / name

    def disk_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())


def exports_root() -> Path:

    return cache_dir() / "onnx"


def _weights_file(path: str) -> Path:
    """The checkpoint file itself (a ``local-dir:`` model names its folder)."""
    p = Path(path)
    if p.is_dir():
        for name in (
            "open_clip_model.safetensors",
            "open_clip_pytorch_model.bin",
            "open_clip_model.bin",
        ):
            if (p / name).is_file():
                return p / name
        found = sorted(q for q in p.iterdir() if q.suffix in {".safetensors", ".bin", ".pth"})
        if found:
            return found[0]
        raise ExportError(f"The model folder {p} holds no weights file to export.")
    return p


def _stat_record(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _fresh(manifest: dict[str, Any], spec: ModelSpec) -> bool:
    if manifest.get("format") != FORMAT or manifest.get("key") != spec.key:
        return False
    weights = manifest.get("weights") or {}
    try:
        st = os.stat(weights["path"])
    except (OSError, KeyError, TypeError):
        return False
    if st.st_size != weights.get("size") or st.st_mtime_ns != weights.get("mtime_ns"):
        return False
    folder_ok = manifest.get("config_path")
    if folder_ok:  # local-dir: a changed config makes another model from the same weights
        try:
            if os.stat(folder_ok).st_mtime_ns != manifest.get("config_mtime_ns"):
                return False
        except OSError:
            return False
    return True


def find_export(spec: ModelSpec) -> Export | None:
    """The newest complete, up-to-date export of ``spec``, or None; never imports torch."""
    root = exports_root()
    try:
        candidates = list(root.glob(f"{spec.collection_slug}-*/{MANIFEST}"))
    except OSError:
        return None
    best: tuple[float, Export] | None = None
    for manifest_path in candidates:
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(manifest, dict) or not _fresh(manifest, spec):
            continue
        folder = manifest_path.parent
        if not all((folder / name).is_file() for name in manifest.get("files", {})):
            continue
        created = float(manifest.get("created", 0))
        if best is None or created > best[0]:
            best = (created, Export(folder, manifest))
    return best[1] if best else None


# --------------------------------------------------------------------------- exporting


def _text_module(model: Any) -> tuple[Any, bool]:
    """A module turning token ids into (unnormalised) text features, and whether it
    accepts a sequence cut after the last end marker (CLIP's causal tower does: the
    ONNX path then runs only as many positions as the longest query needs)."""
    import torch

    class Trimmed(torch.nn.Module):
        def __init__(self, clip: Any) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            out = _encode_text_trimmed_dynamic(self.clip, tokens)
            return out

    class Full(torch.nn.Module):
        def __init__(self, clip: Any) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.clip.encode_text(tokens)

    probe = torch.zeros((1, 4), dtype=torch.long)
    probe[0, 3] = 1
    if _encode_text_trimmed(model, probe) is not None:
        return Trimmed(model), True
    return Full(model), False


def _encode_text_trimmed_dynamic(model: Any, tokens: Any) -> Any:
    """:func:`~clipseek.models.torch_backend._encode_text_trimmed` for tokens already cut
    to their length (the runtime cuts them), written so tracing keeps the length dynamic."""
    import torch

    length = tokens.shape[1]
    eot = tokens.argmax(dim=-1)
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0]), eot]
    proj = model.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj


def _text_from_embeddings(model: Any) -> Any | None:
    """A module turning token *embeddings* (N×L×width, looked up by the runtime from the
    memory-mapped table) into text features, for open_clip's ``TextTransformer`` towers
    read at a fixed position (SigLIP's "last"); None for other designs."""
    import torch
    from open_clip.transformer import TextTransformer

    text = getattr(model, "text", None)
    if (
        not isinstance(text, TextTransformer)
        or getattr(text, "cls_emb", None) is not None
        or getattr(text, "use_pad_mask", False)
        or getattr(text, "pool_type", None) not in ("last", "first")
        or getattr(text, "output_tokens", False)
    ):
        return None

    class FromEmbeddings(torch.nn.Module):
        def __init__(self, tower: Any) -> None:
            super().__init__()
            self.tower = tower

        def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
            t = self.tower
            length = embeddings.shape[1]
            cast = t.transformer.get_cast_dtype()
            x = embeddings.to(cast) + t.positional_embedding[:length].to(cast)
            mask = t.attn_mask
            if mask is not None:
                mask = mask[:length, :length]
            x = t.ln_final(t.transformer(x, attn_mask=mask))
            pooled = x[:, -1] if t.pool_type == "last" else x[:, 0]
            proj = t.text_projection
            if proj is None:
                return pooled
            return proj(pooled) if isinstance(proj, torch.nn.Linear) else pooled @ proj

    return FromEmbeddings(text)


def _scale_and_bias(model: Any) -> dict[str, float]:
    """The model's learned logit scale (and SigLIP's bias): what its cosines mean."""
    out: dict[str, float] = {}
    scale = getattr(model, "logit_scale", None)
    if scale is not None:
        out["logit_scale"] = float(scale.detach().float().exp())
    bias = getattr(model, "logit_bias", None)
    if bias is not None:
        out["logit_bias"] = float(bias.detach().float())
    return out


def _image_module(model: Any) -> Any:
    import torch

    class Image(torch.nn.Module):
        def __init__(self, clip: Any) -> None:
            super().__init__()
            self.clip = clip

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.clip.encode_image(pixels)

    return Image(model)


def _traceable_attention(mha: Any) -> Any:
    """A stand-in for ``torch.nn.MultiheadAttention`` (batch first, self-attention, same
    weights) whose trace keeps the batch and sequence sizes dynamic: the legacy exporter
    bakes the traced sizes into torch's own attention's reshapes, and the export then
    fails on any other batch size or query length."""
    import torch
    import torch.nn.functional as F

    heads = int(mha.num_heads)
    head_dim = int(mha.embed_dim) // heads

    class Attention(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = mha

        def forward(
            self, q: Any, k: Any, v: Any, need_weights: bool = False, attn_mask: Any = None
        ) -> tuple[Any, None]:
            inner = self.inner
            qkv = F.linear(q, inner.in_proj_weight, inner.in_proj_bias)
            qkv = qkv.unflatten(-1, (3, heads, head_dim)).permute(2, 0, 3, 1, 4)
            query, key, value = qkv[0], qkv[1], qkv[2]  # N×heads×L×head_dim
            scores = (query * (head_dim**-0.5)) @ key.transpose(-2, -1)
            if attn_mask is not None:
                scores = scores + attn_mask
            out = scores.softmax(dim=-1) @ value
            out = out.transpose(1, 2).flatten(2)
            return inner.out_proj(out), None

    return Attention()


@contextmanager
def _attention_swapped(model: Any) -> Iterator[None]:
    """Swap every self-attention of ``model`` for :func:`_traceable_attention` while it is
    exported, restoring the originals after (the torch model stays usable)."""
    import torch

    swapped: list[tuple[Any, Any]] = []
    try:
        for module in model.modules():
            mha = getattr(module, "attn", None)
            if (
                isinstance(mha, torch.nn.MultiheadAttention)
                and mha.batch_first
                and mha._qkv_same_embed_dim
                and mha.in_proj_bias is not None
                and mha.bias_k is None
                and not hasattr(module, "ln_1_kv")
            ):
                module.attn = _traceable_attention(mha)
                swapped.append((module, mha))
        yield
    finally:
        for module, mha in swapped:
            module.attn = mha


def _onnx_export(module: Any, example: Any, path: Path, name_in: str, axes: dict) -> None:
    import warnings

    import torch

    with (
        warnings.catch_warnings(),
        torch.inference_mode(False),
        torch.no_grad(),
        _attention_swapped(module),
    ):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[name_in],
            output_names=["features"],
            dynamic_axes={name_in: axes, "features": {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def _weights_beside(path: Path) -> str:
    """Move an ONNX file's weights into ``<name>.data`` beside it; returns that name.

    ONNX Runtime maps such a file rather than copying every weight out of the model, so a
    session builds in a fraction of the time and memory, with the same outputs
    (docs/PERFORMANCE.md, "The fast path"). Both layouts load, so exports made before this
    keep working."""
    import onnx

    data = f"{path.name}.data"
    model = onnx.load(str(path))
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data,
        size_threshold=1024,
    )
    return data


def _cpu_fp32(model: ClipModel) -> ClipModel:
    """The model as fp32 on the CPU: the export is fp32 whatever the index run used."""
    if model.device == "cpu" and model.precision == "fp32":
        model.load_text_tower()  # an indexer's model left it out until now
        return model

    return load_model(model.spec, device="cpu", precision="fp32")


def export_model(model: ClipModel, *, quantize: bool = False) -> Export:
    """Write the ONNX export of ``model`` (a torch :class:`ClipModel`) and return it.

    Raises :class:`ExportError` with one sentence when it cannot (no ``onnx`` package,
    a tower of an unsupported design, a full disk); nothing half-written is left in use.
    """
    from clipseek.models.tokenizer import hub_tokenizer_of

    spec = model.spec
    hub = hub_tokenizer_of(model._tokenizer)
    why = supported(model._tokenizer) if hub is None else None
    if why is not None:
        raise ExportError(f"{spec.name} has no fast path: {why}.")
    if hub is not None and _text_from_embeddings(model._model) is None:
        raise ExportError(f"{spec.name} has no fast path: its text tower is of another design.")
    try:
        import onnx  # noqa: F401  (torch.onnx.export needs it)
    except ImportError as exc:
        raise ExportError(
            "Exporting the fast path needs the onnx package: pip install onnx."
        ) from exc
    weights_path = cached_weights(spec)
    if weights_path is None:
        raise ExportError(f"The weights of {spec.name} were not found to export.")
    weights = _weights_file(weights_path)
    record = _stat_record(weights)
    digest = _digest(weights)
    source = _cpu_fp32(model)

    root = exports_root()
    root.mkdir(parents=True, exist_ok=True)
    _sweep(root)
    final = root / f"{spec.collection_slug}-{digest[:16]}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    started = time.perf_counter()
    try:
        import torch

        torch_model = source._model
        ctx = source.context_length
        if hub is None:
            text_module, dynamic = _text_module(torch_model)
            tokens = torch.zeros((2, ctx if not dynamic else 8), dtype=torch.long)
            tokens[:, 0] = 49406
            tokens[:, 1:4] = 320
            tokens[:, 4] = 49407
            seq_axis = {0: "batch", 1: "length"} if dynamic else {0: "batch"}
            _onnx_export(text_module, tokens, tmp / TEXT_FILE, "tokens", seq_axis)
            tokenizer_record: dict[str, Any] = {
                "kind": "clip-bpe",
                "file": VOCAB_FILE,
                "clean": "lower",
            }
        else:
            import numpy as np

            dynamic = False
            table = torch_model.text.token_embedding.weight.detach().float().cpu().numpy()
            np.save(tmp / TOKEN_TABLE_FILE, np.ascontiguousarray(table, dtype=np.float32))
            example = torch.zeros((2, ctx, table.shape[1]), dtype=torch.float32)
            _onnx_export(
                _text_from_embeddings(torch_model),
                example,
                tmp / TEXT_FILE,
                "embeddings",
                {0: "batch"},
            )
            (tmp / HUB_TOKENIZER_FILE).write_text(hub.to_str(), encoding="utf-8")
            tokenizer_record = {"kind": "hub", "file": HUB_TOKENIZER_FILE, **hub.settings()}
            # Not in the manifest's files: a cache of tokenizer.json that checks itself.
            keep = [str(tokenizer_record.get(k) or "") for k in ("pad_token", "sep_token")]
            write_slices(tmp / HUB_TOKENIZER_FILE, tmp / SLICES_FILE, keep=keep)
        h, w = source.preprocess_cfg.size
        pixels = torch.zeros((2, 3, h, w), dtype=torch.float32)
        _onnx_export(_image_module(torch_model), pixels, tmp / IMAGE_FILE, "pixels", {0: "batch"})
        files = [TEXT_FILE, IMAGE_FILE]
        files += [VOCAB_FILE] if hub is None else [HUB_TOKENIZER_FILE, TOKEN_TABLE_FILE]
        files += [_weights_beside(tmp / TEXT_FILE), _weights_beside(tmp / IMAGE_FILE)]
        if quantize:
            quantize_image(tmp / IMAGE_FILE, tmp / IMAGE_INT8_FILE)
            files.append(IMAGE_INT8_FILE)
        if hub is None:
            shutil.copyfile(default_bpe_path(), tmp / VOCAB_FILE)
        manifest: dict[str, Any] = {
            "format": FORMAT,
            "key": spec.key,
            "name": spec.name,
            "kind": spec.kind,
            "dim": source.dim,
            "context_length": ctx,
            "text_dynamic_length": dynamic,
            "preprocess": {
                **asdict(source.preprocess_cfg),
                "size": list(source.preprocess_cfg.size),
            },
            "tokenizer": tokenizer_record,
            "text_input": "tokens" if hub is None else "embeddings",
            **_scale_and_bias(torch_model),
            "weights": {**record, "sha256": digest},
            "files": {name: (tmp / name).stat().st_size for name in files},
            "opset": OPSET,
            "torch": torch.__version__,
            "created": time.time(),
            "export_seconds": round(time.perf_counter() - started, 2),
        }
        if spec.kind == "local-dir":
            config = Path(spec.arch.removeprefix("local-dir:")) / "open_clip_config.json"
            manifest["config_path"] = str(config)
            manifest["config_mtime_ns"] = config.stat().st_mtime_ns
        data = json.dumps(manifest, indent=2).encode("utf-8")
        with open(tmp / MANIFEST, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if final.exists():  # an older export of the same weights (stale config, format)
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if find_export(spec) is None:  # not a concurrent export that won the race
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except ExportError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True)

        raise ExportError(f"Could not export {spec.name} to ONNX: {_short(exc)}") from exc
    found = find_export(spec)
    if found is None:
        raise ExportError(f"The export of {spec.name} was written but cannot be read back.")
    return found


def quantize_image(src: Path, dst: Path) -> None:
    """Dynamic int8 quantisation of the image tower's matmuls (explicit only)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # its advice to pre-process is about static quantisation
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    finally:
        logging.disable(previous)


def ensure_int8(export: Export) -> Path:
    """The int8 image tower next to ``export``, written atomically on first use."""
    target = export.path(IMAGE_INT8_FILE)
    if target.is_file():
        return target
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=export.folder)
    os.close(fd)
    try:
        quantize_image(export.path(IMAGE_FILE), Path(tmp))
        os.replace(tmp, target)
    except Exception as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ExportError(f"Could not quantise the image tower to int8: {exc}") from exc
    return target


def _sweep(root: Path, older_than: float = 3600.0) -> None:
    """Remove temporary folders of exports that died (over an hour old)."""
    now = time.time()
    for tmp in root.glob(".tmp-*"):
        try:
            if now - tmp.stat().st_mtime > older_than:
                shutil.rmtree(tmp, ignore_errors=True)
        except OSError:
            continue


def export_status(spec: ModelSpec) -> tuple[bool, int]:
    """Whether ``spec``'s fast path is ready, and its size on disk in bytes."""
    found = find_export(spec)
    return (True, found.disk_bytes()) if found is not None else (False, 0)
