"""The torch runtime: open_clip models, used for indexing (CPU or CUDA) and for exporting.

torch and open_clip are imported inside functions, so importing this module costs nothing.
"""

from __future__ import annotations

import json
import os
import struct
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from clipseek.errors import DeviceError, ModelError, WeightsUnavailableError
from clipseek.models.base import PreprocessConfig, TextEncoding
from clipseek.models.catalogue import ModelSpec
from clipseek.models.hardware import resolve_device, resolve_precision, set_torch_threads
from clipseek.models.weights import (
    _check_local_dir,
    _download_weights,
    _offline_message,
    _pretrained_cfg,
    _short,
    cached_weights,
)

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image


class ClipModel:
    """A loaded CLIP model that turns images and texts into unit vectors (float32).

    Weights live in the chosen precision (bf16/fp16 weights, not autocast over fp32
    weights): on a CPU with AMX that is what makes bf16 fast, and autocast alone gains
    nothing there while costing a cast of every weight on every call.
    """

    backend = "torch"

    def __init__(
        self,
        spec: ModelSpec,
        model: Any,
        tokenizer: Any,
        preprocess: PreprocessConfig,
        device: str,
        precision: str,
    ) -> None:
        import torch

        self.spec = spec
        self.device = device
        self.precision = precision
        self.preprocess_cfg = preprocess
        self._model = model
        self._tokenizer = tokenizer
        self._lock = threading.Lock()  # one forward pass at a time; torch already uses every core
        self._dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[
            precision
        ]
        self._transform: Any = None
        self._pil_stage: Any = None
        self._norm: tuple[Any, Any] | None = None
        #: Where the weights are now: a CUDA model is built in host memory and moved to
        #: the card by its first image batch, so runs with nothing to embed and text
        #: queries never pay for CUDA initialisation (docs/PERFORMANCE.md).
        self._weights_device = _module_device(model)
        self._pinned: Any = None  # reusable page-locked uint8 staging buffer (CUDA only)
        self._device_norm: tuple[Any, Any] | None = None
        self.dim = int(self._probe_dim())
        self.context_length = int(getattr(tokenizer, "context_length", 77) or 77)

    # -- preprocessing

    @property
    def image_size(self) -> tuple[int, int]:
        return self.preprocess_cfg.size

    def _build_transform(self) -> Any:
        if self._transform is None:
            from open_clip.transform import image_transform

            cfg = self.preprocess_cfg
            transform = image_transform(
                cfg.size,
                is_train=False,
                mean=cfg.mean,
                std=cfg.std,
                resize_mode=cfg.resize_mode,
                interpolation=cfg.interpolation,
                fill_color=cfg.fill_color,
            )
            self._pil_stage, self._norm = _split_transform(transform)
            self._transform = transform
        return self._transform

    def transform(self, image: Image.Image) -> torch.Tensor:
        """The model's own eval transform, applied to an RGB PIL image."""
        return self._build_transform()(image)

    def prepare(self, image: Image.Image) -> Any:
        """The per-image part of :meth:`transform`, safe and cheap on a decoder thread.

        Resizing and cropping stay in Pillow (which releases the GIL); the result is a
        uint8 HxWx3 array, and :meth:`batch_tensor` turns a batch of them into the
        model input in one vectorised step. Calling torch from many decoder threads
        would make each one start its own pool of OpenMP threads on a machine whose
        cores are already busy with inference.
        """
        # Lazy: a text query does not import the image preprocessing.
        from clipseek.models.preprocess import pil_supported, prepare_image

        if pil_supported(self.preprocess_cfg):
            return prepare_image(image, self.preprocess_cfg)
        self._build_transform()
        if self._pil_stage is None:
            return self._transform(image)
        import numpy as np

        out = self._pil_stage(image)
        if out.mode != "RGB":
            out = out.convert("RGB")
        return np.asarray(out, dtype=np.uint8)

    def batch_tensor(self, items: Sequence[Any]) -> torch.Tensor:
        """Stack what :meth:`prepare` returned into an N×3×H×W float tensor, normalised
        exactly as the model's transform does (same operations, same order)."""
        import numpy as np
        import torch

        if not items:
            raise ValueError("an empty batch")
        if isinstance(items[0], torch.Tensor):
            return torch.stack(list(items))
        if self._norm is None:
            cfg = self.preprocess_cfg
            self._norm = (
                torch.as_tensor(cfg.mean, dtype=torch.float32).view(1, -1, 1, 1),
                torch.as_tensor(cfg.std, dtype=torch.float32).view(1, -1, 1, 1),
            )
        mean, std = self._norm
        batch = torch.from_numpy(np.stack(items)).permute(0, 3, 1, 2).contiguous()
        return batch.to(torch.float32).div(255).sub_(mean).div_(std)

    # -- encoding

    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        """Embed a preprocessed batch (N×3×H×W); returns N×dim L2-normalised float32."""
        import torch

        with self._lock, torch.inference_mode():
            self._to_device()
            features = self._model.encode_image(batch.to(self.device, dtype=self._dtype))
        return _normalised(features)

    @property
    def on_device(self) -> bool:
        """Whether the weights have reached :attr:`device` (a CUDA model moves lazily)."""
        return self._weights_device == self.device

    def _to_device(self) -> None:
        """Move the weights to the device the first time images need it (lock held)."""
        if self._weights_device != self.device:
            self._model.to(self.device)
            self._weights_device = self.device

    def _encode_uint8_on_device(self, items: Sequence[Any]) -> np.ndarray:
        """A CUDA batch: uint8 images go to the card through a pinned buffer and are
        normalised there (fp32 arithmetic, then the model's dtype), so the host only
        copies bytes: a quarter of the float32 traffic and no host-side arithmetic."""
        import numpy as np
        import torch

        n = len(items)
        height, width, _ = items[0].shape
        with self._lock, torch.inference_mode():
            self._to_device()
            shape = (n, height, width, 3)
            if (
                self._pinned is None
                or self._pinned.shape[0] < n
                or (tuple(self._pinned.shape[1:]) != shape[1:])
            ):
                self._pinned = torch.empty(shape, dtype=torch.uint8).pin_memory()
            host = self._pinned[:n]
            # The previous batch's copy has finished: its results were read back (synced).
            np.stack(items, out=host.numpy())
            batch = host.to(self.device, non_blocking=True)
            if self._device_norm is None:
                cfg = self.preprocess_cfg
                self._device_norm = (
                    torch.tensor(cfg.mean, dtype=torch.float32, device=self.device).view(
                        1, -1, 1, 1
                    ),
                    torch.tensor(cfg.std, dtype=torch.float32, device=self.device).view(
                        1, -1, 1, 1
                    ),
                )
            mean, std = self._device_norm
            x = batch.permute(0, 3, 1, 2).to(torch.float32).div_(255).sub_(mean).div_(std)
            features = self._model.encode_image(x.to(self._dtype).contiguous())
        return _normalised(features)

    @property
    def threads(self) -> int:
        import torch

        return int(torch.get_num_threads())

    def set_threads(self, threads: int) -> None:
        set_torch_threads(threads)

    def encode_prepared(self, items: Sequence[Any]) -> np.ndarray:
        """The :class:`~clipseek.models.base.Embedder` call the indexer makes per batch.

        On CUDA, uint8 arrays of one shape take :meth:`_encode_uint8_on_device`; on a
        CPU (and for anything else) the host-side normalisation stays exactly as before.
        """
        if self.device.startswith("cuda") and items and _uint8_images(items):
            return self._encode_uint8_on_device(items)
        return self.encode_images(self.batch_tensor(items))

    def encode_image(self, image: Image.Image) -> np.ndarray:
        return self.encode_prepared([self.prepare(image)])[0]

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, list[bool]]:
        tokens = self._tokenizer(list(texts))
        truncated = [self.token_count(text) > self.context_length for text in texts]
        return tokens, truncated

    def token_count(self, text: str) -> int:
        """Tokens the text needs, start and end markers included (CLIP keeps 77)."""
        encoder = getattr(self._tokenizer, "encode", None)
        if encoder is None:  # HF tokenizers: count after tokenizing without truncation
            inner = getattr(self._tokenizer, "tokenizer", None)
            if inner is None:
                return 0
            return len(inner(text)["input_ids"])
        return len(encoder(text)) + 2

    def encode_texts(self, texts: Sequence[str]) -> TextEncoding:
        import torch

        tokens, truncated = self.tokenize(texts)
        with self._lock, torch.inference_mode():
            # A model whose weights are still in host memory (a CUDA model before its first
            # image batch) encodes text where the weights are: one short query on the CPU
            # costs far less than initialising CUDA and moving the model.
            device = self._weights_device
            features = _encode_text_trimmed(self._model, tokens.to(device))
            if features is None:
                features = self._model.encode_text(tokens.to(device))
        return TextEncoding(_normalised(features), truncated)

    def _probe_dim(self) -> int:
        proj = getattr(self._model, "text_projection", None)
        if proj is not None and hasattr(proj, "shape"):
            return int(proj.shape[-1])
        return int(self.encode_texts(["a"]).vectors.shape[1])


def _split_transform(transform: Any) -> tuple[Any, tuple[Any, Any] | None]:
    """Split an eval transform into its Pillow stages and its final ToTensor + Normalize.

    Returns ``(None, None)`` when the transform has another shape, and then
    :meth:`ClipModel.prepare` simply applies the whole transform per image.
    """
    import torch

    steps = list(getattr(transform, "transforms", []))
    names = [type(step).__name__ for step in steps]
    if len(steps) < 2 or names[-2] not in ("MaybeToTensor", "ToTensor") or names[-1] != "Normalize":
        return None, None
    pil_steps = steps[:-2]
    normalize = steps[-1]
    if getattr(normalize, "inplace", False):
        return None, None
    mean = torch.as_tensor(normalize.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.as_tensor(normalize.std, dtype=torch.float32).view(1, -1, 1, 1)

    def pil_stage(image: Any) -> Any:
        for step in pil_steps:
            image = step(image)
        return image

    return pil_stage, (mean, std)


def _encode_text_trimmed(model: Any, tokens: torch.Tensor) -> torch.Tensor | None:
    """``model.encode_text`` run on the tokens up to the longest end-of-text marker.

    CLIP's text tower is causal and reads its output at the end-of-text token, so the
    padding after it (most of the 77 positions for a short query) cannot change the
    result; skipping it makes a short query several times cheaper. Returns None for
    towers of another design, which then run in full.
    """
    import torch

    if type(model).__name__ != "CLIP" or getattr(model, "text_pool_type", None) != "argmax":
        return None
    mask = getattr(model, "attn_mask", None)
    pos = getattr(model, "positional_embedding", None)
    needed = ("transformer", "token_embedding", "ln_final", "text_projection")
    if mask is None or pos is None or not all(hasattr(model, name) for name in needed):
        return None
    eot = tokens.argmax(dim=-1)
    length = int(eot.max()) + 1
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype)
    x = x + pos[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=mask[:length, :length])
    x = model.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), eot]
    proj = model.text_projection
    if proj is None:
        return x
    return proj(x) if isinstance(proj, torch.nn.Linear) else x @ proj


def _module_device(model: Any) -> str:
    try:
        param = next(iter(model.parameters()))
    except (StopIteration, AttributeError, TypeError):
        return "cpu"
    return "cpu" if param.device.type == "cpu" else str(param.device.type)


def _uint8_images(items: Sequence[Any]) -> bool:
    first = items[0]
    shape = getattr(first, "shape", None)
    if getattr(first, "dtype", None) is None or shape is None or len(shape) != 3:
        return False
    return str(first.dtype) == "uint8" and all(
        getattr(i, "shape", None) == shape and str(getattr(i, "dtype", "")) == "uint8"
        for i in items
    )


def _normalised(features: torch.Tensor) -> np.ndarray:
    import torch

    features = features.float()
    features = torch.nn.functional.normalize(features, dim=-1)
    return features.cpu().numpy().astype("float32", copy=False)


#: How open_clip should hold the weights for each precision: "pure" casts every weight
#: before the checkpoint is copied in, so the fp32 copy of a model never exists.
_OPEN_CLIP_PRECISION = {"fp32": "fp32", "bf16": "pure_bf16", "fp16": "pure_fp16"}


def load_model(spec: ModelSpec, device: str = "auto", precision: str = "auto") -> ClipModel:
    """Build the model and its tokenizer, reading weights from disk only when they are cached.

    Passing the cached checkpoint path straight to open_clip keeps a cached model from
    making any network request: huggingface_hub would otherwise ask the Hub whether a
    newer revision exists on every start, which hangs on machines without a network.
    """
    import open_clip

    resolved_device = resolve_device(device)
    resolved_precision = resolve_precision(precision, resolved_device)
    oc_precision = _OPEN_CLIP_PRECISION[resolved_precision]
    # A CUDA model is built and filled in host memory and moves to the card with its first
    # image batch (ClipModel._to_device): CUDA initialisation is paid only when images are
    # embedded, and the weights load while the indexer scans and decodes.
    build_device = "cpu" if resolved_device.startswith("cuda") else resolved_device
    try:
        if spec.kind == "pretrained":
            cfg = _pretrained_cfg(spec)
            checkpoint = cached_weights(spec) or _download_weights(spec, cfg)
            preprocess_overrides = {
                k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg
            }
            # Every weight is overwritten from the checkpoint (strictly), so the model is
            # built without drawing random initial values, already in its precision, and
            # filled one tensor at a time: peak memory is the model, not model + file.
            with _skip_random_init(), _quiet_logging():
                model = open_clip.create_model(
                    spec.arch,
                    pretrained=None,
                    precision=oc_precision,
                    force_quick_gelu=bool(cfg.get("quick_gelu", False)),
                    force_preprocess_cfg=preprocess_overrides,
                    device=build_device,
                )
            if not _stream_safetensors(model, checkpoint):
                open_clip.load_checkpoint(model, checkpoint, strict=True)
            tokenizer = open_clip.get_tokenizer(spec.arch)
        else:
            if spec.kind == "local-dir":
                _check_local_dir(spec)
            elif cached_weights(spec) is None and os.environ.get("HF_HUB_OFFLINE"):
                raise WeightsUnavailableError(_offline_message(spec, "HF_HUB_OFFLINE is set"))
            model = open_clip.create_model(spec.arch, precision=oc_precision, device=build_device)
            tokenizer = open_clip.get_tokenizer(spec.arch)
    except (ModelError, DeviceError):
        raise
    except Exception as exc:
        if spec.kind == "hf-hub" and cached_weights(spec) is None:
            raise WeightsUnavailableError(_offline_message(spec, _short(exc))) from exc
        raise ModelError(f"Could not load the model {spec.name}: {_short(exc)}") from exc

    model.eval()
    pp = getattr(model.visual, "preprocess_cfg", None) or {}
    size = pp.get("size", 224)
    preprocess = PreprocessConfig(
        size=(size, size) if isinstance(size, int) else (int(size[0]), int(size[1])),
        mean=tuple(pp.get("mean", (0.48145466, 0.4578275, 0.40821073))),  # type: ignore[arg-type]
        std=tuple(pp.get("std", (0.26862954, 0.26130258, 0.27577711))),  # type: ignore[arg-type]
        interpolation=str(pp.get("interpolation", "bicubic")),
        resize_mode=str(pp.get("resize_mode", "shortest")),
        fill_color=int(pp.get("fill_color", 0)),
    )
    return ClipModel(spec, model, tokenizer, preprocess, resolved_device, resolved_precision)


#: safetensors dtype names and their torch equivalents.
_SAFETENSORS_DTYPES = {
    "F64": "float64",
    "F32": "float32",
    "F16": "float16",
    "BF16": "bfloat16",
    "I64": "int64",
    "I32": "int32",
    "I16": "int16",
    "I8": "int8",
    "U8": "uint8",
    "BOOL": "bool",
}


def _stream_safetensors(model: Any, path: str) -> bool:
    """Copy a .safetensors checkpoint into ``model`` tensor by tensor (converting dtype).

    The file is read with plain reads, one tensor at a time, rather than memory-mapped:
    a mapping would add the whole file to the process's resident memory while loading.
    Returns False, having changed nothing, unless the file holds exactly the model's
    tensors with the same shapes; open_clip's own loader then handles other layouts
    (OpenAI's original state dicts, resized position embeddings and so on).
    """
    if not str(path).endswith(".safetensors"):
        return False
    import torch

    state = model.state_dict()
    with open(path, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
        header.pop("__metadata__", None)
        if set(header) != set(state):
            return False
        for key, meta in header.items():
            dtype = _SAFETENSORS_DTYPES.get(meta.get("dtype", ""))
            if dtype is None or tuple(meta["shape"]) != tuple(state[key].shape):
                return False
        base = 8 + size
        with torch.no_grad():
            for key, meta in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
                begin, end = meta["data_offsets"]
                fh.seek(base + begin)
                raw = bytearray(end - begin)
                if fh.readinto(raw) != len(raw):
                    raise ModelError(f"The weights file {path} is truncated; delete it and retry.")
                dtype = getattr(torch, _SAFETENSORS_DTYPES[meta["dtype"]])
                if raw:
                    tensor = torch.frombuffer(raw, dtype=dtype).reshape(meta["shape"])
                    state[key].copy_(tensor)
    return True


@contextmanager
def _quiet_logging() -> Iterator[None]:
    """open_clip warns through the root logger that a model built without weights is
    random; here the weights follow at once, so the warning would only alarm the user."""
    import logging

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


@contextmanager
def _skip_random_init() -> Iterator[None]:
    """Make torch.nn.init's fillers no-ops while a model whose weights will all be
    loaded from a checkpoint is built (random init of ViT-B/32 costs about a second)."""
    import torch

    names = [
        "uniform_",
        "normal_",
        "trunc_normal_",
        "constant_",
        "ones_",
        "zeros_",
        "xavier_uniform_",
        "xavier_normal_",
        "kaiming_uniform_",
        "kaiming_normal_",
        "orthogonal_",
    ]
    saved = {name: getattr(torch.nn.init, name) for name in names if hasattr(torch.nn.init, name)}

    def keep(tensor: Any, *args: Any, **kwargs: Any) -> Any:
        return tensor

    try:
        for name in saved:
            setattr(torch.nn.init, name, keep)
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)
