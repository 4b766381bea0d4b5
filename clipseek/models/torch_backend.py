"""The torch runtime: open_clip models, used for indexing (CPU or CUDA) and for exporting.

torch and open_clip are imported inside functions, so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clipseek.errors import DeviceError, ModelError, WeightsUnavailableError
from clipseek.models.base import PreprocessConfig, TextEncoding
from clipseek.models.catalogue import ModelSpec
from clipseek.models.hardware import (
    keep_triton_out,
    resolve_device,
    resolve_precision,
    set_torch_threads,
)
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
        text_build: _TextBuild | None = None,
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
        self.context_length = int(getattr(tokenizer, "context_length", 77) or 77)
        #: How to build the text tower an image-only model left out (load_model's
        #: ``text="lazy"``); None once it is there.
        self._text_build = text_build
        self.dim = int(self._probe_dim())

    @property
    def text_loaded(self) -> bool:
        """Whether the text tower holds its weights (an indexer's model builds it on
        first use)."""
        return self._text_build is None

    def load_text_tower(self) -> None:
        """Build and fill the text tower if it was left out; what needs the torch module
        whole (an export) calls this first. Safe from several threads."""
        if self._text_build is None:
            return
        with self._lock:
            if self._text_build is not None:  # another thread may have built it meanwhile
                _load_text_tower(self._model, self._text_build)
                self._text_build = None

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
        own = getattr(self._tokenizer, "token_count", None)
        if own is not None:
            return int(own(text))
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
        self.load_text_tower()  # outside inference mode: these become the model's weights
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
        if self._text_build is not None:
            # Image-only: the image tower says, or the size both towers were built to.
            out = getattr(self._model.visual, "output_dim", None)
            return int(out) if isinstance(out, int) and out > 0 else int(self._text_build.args[0])
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
    try:  # a tower not built yet (on the meta device) is nowhere
        param = next(p for p in model.parameters() if not p.is_meta)
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


def load_model(
    spec: ModelSpec, device: str = "auto", precision: str = "auto", *, text: str = "eager"
) -> ClipModel:
    """Build the model and its tokenizer, reading weights from disk only when they are cached.

    Passing the cached checkpoint path straight to open_clip keeps a cached model from
    making any network request: huggingface_hub would otherwise ask the Hub whether a
    newer revision exists on every start, which hangs on machines without a network.

    ``text="lazy"`` (the indexer's choice on a CPU) builds the text tower without memory
    and fills it only when something first needs it (a query after indexing, an export):
    indexing never does, and the tower is a third of ViT-B/32. Where the weights are not
    one .safetensors file holding exactly the model (other layouts go through open_clip's
    own loader), the whole model is loaded as before.
    """
    keep_triton_out()
    import open_clip  # noqa: F401  (here: a missing package is not a model error)

    resolved_device = resolve_device(device)
    resolved_precision = resolve_precision(precision, resolved_device)
    oc_precision = _OPEN_CLIP_PRECISION[resolved_precision]
    # A CUDA model is built and filled in host memory and moves to the card with its first
    # image batch (ClipModel._to_device): CUDA initialisation is paid only when images are
    # embedded, and the weights load while the indexer scans and decodes.
    build_device = "cpu" if resolved_device.startswith("cuda") else resolved_device
    lazy = text == "lazy" and resolved_device == "cpu"
    try:
        built = _build_image_only(spec, oc_precision) if lazy else None
        if built is not None:
            model, checkpoint, text_build = built
        else:
            text_build = None
            model, checkpoint = _build_whole(spec, oc_precision, build_device)
        tokenizer = _tokenizer_for(spec, checkpoint)
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
    return ClipModel(
        spec, model, tokenizer, preprocess, resolved_device, resolved_precision, text_build
    )


def _build_whole(spec: ModelSpec, oc_precision: str, build_device: str) -> tuple[Any, str | None]:
    """The whole model with its weights, and the checkpoint they came from."""
    import open_clip

    if spec.kind == "pretrained":
        cfg = _pretrained_cfg(spec)
        checkpoint = cached_weights(spec) or _download_weights(spec, cfg)
        # Every weight is overwritten from the checkpoint (strictly), so the model is
        # built without drawing random initial values, already in its precision, and
        # filled one tensor at a time: peak memory is the model, not model + file.
        with _skip_random_init(), _quiet_logging():
            model = open_clip.create_model(
                spec.arch,
                pretrained=None,
                precision=oc_precision,
                force_quick_gelu=bool(cfg.get("quick_gelu", False)),
                force_preprocess_cfg=_preprocess_overrides(cfg),
                device=build_device,
            )
        if not _stream_safetensors(model, checkpoint):
            open_clip.load_checkpoint(model, checkpoint, strict=True)
        return model, checkpoint
    if spec.kind == "local-dir":
        _check_local_dir(spec)
    elif cached_weights(spec) is None and os.environ.get("HF_HUB_OFFLINE"):
        raise WeightsUnavailableError(_offline_message(spec, "HF_HUB_OFFLINE is set"))
    model = open_clip.create_model(spec.arch, precision=oc_precision, device=build_device)
    return model, cached_weights(spec)


def _preprocess_overrides(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}


def _safetensors_of(spec: ModelSpec) -> str | None:
    """The model's weights as one .safetensors file on this machine, if they are that."""
    if spec.kind == "local-dir":
        _check_local_dir(spec)
        folder = Path(spec.arch.removeprefix("local-dir:"))
        found = sorted(folder.glob("*.safetensors"))
        path = str(found[0]) if len(found) == 1 else None
    else:
        path = cached_weights(spec)
    return path if path is not None and str(path).endswith(".safetensors") else None


class _TextBuild:
    """How to build the text tower that was left out of an image-only model, later."""

    def __init__(self, build: Any, args: tuple[Any, ...], dtype: Any, checkpoint: str) -> None:
        self.build = build  # open_clip's own builder
        self.args = args
        self.dtype = dtype
        self.checkpoint = checkpoint
        self.placeholder: Any = None  # the tower built on the meta device


@contextmanager
def _text_tower_on_meta(dtype: Any, checkpoint: str) -> Iterator[list[_TextBuild]]:
    """While open_clip builds a CLIP, build its text tower on the meta device (shapes and
    no memory) and remember how to build it for real. Towers from Hugging Face
    transformers are built as usual (their config would be needed again later)."""
    import copy

    import open_clip.model as oc_model
    import torch

    real = oc_model._build_text_tower
    seen: list[_TextBuild] = []

    def build(
        embed_dim: Any, text_cfg: Any, quick_gelu: bool = False, cast_dtype: Any = None
    ) -> Any:
        hf = (
            text_cfg.get("hf_model_name")
            if isinstance(text_cfg, dict)
            else getattr(text_cfg, "hf_model_name", None)
        )
        if hf:
            return real(embed_dim, text_cfg, quick_gelu, cast_dtype)
        plan = _TextBuild(
            real, (embed_dim, copy.deepcopy(text_cfg), quick_gelu, cast_dtype), dtype, checkpoint
        )
        with torch.device("meta"):
            plan.placeholder = real(embed_dim, text_cfg, quick_gelu, cast_dtype)
        seen.append(plan)
        return plan.placeholder

    oc_model._build_text_tower = build
    try:
        yield seen
    finally:
        oc_model._build_text_tower = real


def _build_image_only(spec: ModelSpec, oc_precision: str) -> tuple[Any, str, _TextBuild] | None:
    """The model with its image tower loaded and its text tower on the meta device, or
    None where that cannot be done cleanly (then the whole model is loaded)."""
    import open_clip
    import torch

    checkpoint = _safetensors_of(spec)
    if checkpoint is None:
        return None
    dtype = {"pure_bf16": torch.bfloat16, "pure_fp16": torch.float16}.get(oc_precision)
    kwargs: dict[str, Any] = {}
    if spec.kind == "pretrained":
        cfg = _pretrained_cfg(spec)
        kwargs = {
            "pretrained": None,
            "force_quick_gelu": bool(cfg.get("quick_gelu", False)),
            "force_preprocess_cfg": _preprocess_overrides(cfg),
        }
    else:
        kwargs = {"load_weights": False}
    # device=None: open_clip then only casts (meta tensors cannot move to the CPU); the
    # image tower is built on the CPU already.
    with (
        _skip_random_init(),
        _quiet_logging(),
        _text_tower_on_meta(dtype, checkpoint) as seen,
    ):
        model = open_clip.create_model(spec.arch, precision=oc_precision, device=None, **kwargs)
    if len(seen) != 1 or not _stream_safetensors(model, checkpoint, skip_meta=True):
        return None  # another design, or another file layout: the whole model instead
    return model, checkpoint, seen[0]


def _load_text_tower(model: Any, plan: _TextBuild) -> None:
    """Build the text tower for real, put it where the placeholder was, fill it from the
    checkpoint. Raises ModelError if the model still holds meta tensors afterwards."""
    meta_keys = {k for k, v in model.state_dict().items() if v.is_meta}
    with _skip_random_init():
        tower = plan.build(*plan.args)
    if plan.dtype is not None:
        tower.to(dtype=plan.dtype)
    tower.eval()
    placeholder = plan.placeholder
    if getattr(model, "text", None) is placeholder:
        model.text = tower  # CustomTextCLIP keeps the tower whole
    else:
        # CLIP copies the tower's parts onto itself under the same names (a buffer is a
        # new tensor once cast, hence matched as a meta tensor of a name the tower has).
        for table in ("_modules", "_parameters", "_buffers"):
            entries = getattr(model, table)
            for name, value in list(entries.items()):
                part = getattr(placeholder, name, None)
                if value is None or part is None:
                    continue
                if value is part or (table == "_buffers" and value.is_meta):
                    entries[name] = getattr(tower, name)
    left = [k for k, v in list(model.named_parameters()) + list(model.named_buffers()) if v.is_meta]
    if left or not _stream_safetensors(model, plan.checkpoint, keys=meta_keys):
        raise ModelError(
            f"Could not load the text tower of {plan.checkpoint}: "
            + (f"{left[0]} was not rebuilt" if left else "the weights file changed")
        )


#: Shared libraries of the CUDA build of torch (and of NVIDIA's wheels) that a model on
#: the CPU never runs, by the start of their file names.
_GPU_LIBRARIES = (
    "libcublas",
    "libcudnn",
    "libcufft",
    "libcurand",
    "libcusolver",
    "libcusparse",
    "libnccl",
    "libnvjitlink",
    "libnvrtc",
    "libnvshmem",
    "libnvtoolsext",
    "libcudart",
    "libcupti",
    "libtorch_cuda",
    "libc10_cuda",
)

_MADV_DONTNEED = 4


def release_idle_memory() -> None:
    """After a CPU model is loaded for indexing: give back what the process holds but will
    not touch again. Best effort, Linux only, never raises.

    The CUDA build of torch maps its GPU libraries at import whatever the device, and their
    start-up touches about 140 MB of them; a run on the CPU never executes them. Their
    read-only private mappings that hold no page of this process's own (``Anonymous: 0``
    in smaps: nothing relocated or written there) are unmapped page by page
    (``MADV_DONTNEED``): the pages stay in the page cache, and anything that touches them
    again reads them from there, as at first use. ``MADV_PAGEOUT`` would not do: it skips
    pages another process maps too (any other torch process), and evicts the rest from the
    cache, to be read from disk by the next start. Trimming malloc's free lists saved
    nothing measurable (docs/PERFORMANCE.md, "Memory of a torch bf16 run").
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
        madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        for begin, end in _idle_gpu_library_ranges():
            madvise(begin, end - begin, _MADV_DONTNEED)
    except (OSError, ValueError, AttributeError):
        pass


def _idle_gpu_library_ranges() -> list[tuple[int, int]]:
    """Address ranges of GPU libraries' mappings that are read-only, private, and hold
    only pages of the file (no page of this process's own), from /proc/self/smaps."""
    ranges: list[tuple[int, int]] = []
    candidate: tuple[int, int] | None = None
    with open("/proc/self/smaps", encoding="utf-8", errors="replace") as fh:
        for line in fh:
            head = line.split(maxsplit=5)
            if len(head) >= 5 and "-" in head[0] and not head[0].endswith(":"):
                candidate = None  # a new mapping
                perms = head[1]
                name = os.path.basename(head[5].strip()).lower() if len(head) == 6 else ""
                if name.startswith(_GPU_LIBRARIES) and "w" not in perms and perms[3:4] == "p":
                    begin, end = (int(x, 16) for x in head[0].split("-"))
                    candidate = (begin, end)
            elif candidate is not None and line.startswith("Anonymous:"):
                if int(line.split()[1]) == 0:
                    ranges.append(candidate)
                candidate = None
    return ranges


class _TorchTokens:
    """A :class:`~clipseek.models.tokenizer.HubTokenizer` as open_clip's tokenizers are
    called (a tensor of ids), so the torch runtime and the fast path share one tokenizer.

    Read from its file when first needed: an index run never tokenises, and SigLIP 2's
    256,000-token file costs about a second and 200 MB to read (docs/MODELS.md)."""

    def __init__(self, build: Callable[[], Any], context_length: int, name: str) -> None:
        self._build = build
        self._hub: Any = None
        self._lock = threading.Lock()
        self._name = name
        self.context_length = context_length

    @property
    def hub(self) -> Any:
        with self._lock:
            if self._hub is None:
                try:
                    self._hub = self._build()
                except Exception as exc:  # a damaged file: one sentence, not a traceback
                    raise ModelError(
                        f"Could not read the tokenizer of {self._name}: {_short(exc)}"
                    ) from exc
            return self._hub

    def __call__(self, texts: Sequence[str]) -> Any:
        import torch

        ids, _ = self.hub(list(texts))
        return torch.from_numpy(ids)

    def token_count(self, text: str) -> int:
        return int(self.hub.token_count(text))


def _text_cfg(spec: ModelSpec, weights: str | None) -> dict[str, Any]:
    """The model's text_cfg, from open_clip's table or the model's own config file."""
    if spec.kind == "pretrained":
        from open_clip import get_model_config

        return dict((get_model_config(spec.arch) or {}).get("text_cfg") or {})
    folder = (
        Path(spec.arch.removeprefix("local-dir:"))
        if spec.kind == "local-dir"
        else (Path(weights).parent if weights else None)
    )
    try:
        config = json.loads((folder / "open_clip_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return {}
    return dict(config.get("model_cfg", {}).get("text_cfg") or {})


def _tokenizer_folder(
    spec: ModelSpec, weights: str | None, text_cfg: dict[str, Any]
) -> Path | None:
    """Where the model's tokenizer.json is: its own folder, or the snapshot of the hub repo
    the weights came from (fetched beside them on first use when the network allows)."""
    from clipseek.models.tokenizer import HUB_TOKENIZER_CONFIG, HUB_TOKENIZER_FILE

    if spec.kind == "local-dir":
        folder = Path(spec.arch.removeprefix("local-dir:"))
        return folder if (folder / HUB_TOKENIZER_FILE).is_file() else None
    if weights and (Path(weights).parent / HUB_TOKENIZER_FILE).is_file():
        return Path(weights).parent
    repo = str(text_cfg.get("hf_tokenizer_name") or "")
    if "/" not in repo:
        return None
    try:
        from huggingface_hub import hf_hub_download

        found = Path(hf_hub_download(repo, HUB_TOKENIZER_FILE))
        with contextlib.suppress(Exception):
            hf_hub_download(repo, HUB_TOKENIZER_CONFIG)
        with contextlib.suppress(Exception):
            hf_hub_download(repo, "special_tokens_map.json")
    except Exception:  # offline, or a repo without tokenizer.json (then open_clip's own)
        return None
    return found.parent


def _tokenizer_for(spec: ModelSpec, weights: str | None) -> Any:
    """open_clip's tokenizer for CLIP's BPE; for models that name a Hugging Face tokenizer
    (SigLIP, SigLIP 2), clipseek's own over the model's tokenizer.json, which needs neither
    transformers nor, on the fast path, torch. Without a tokenizer.json, open_clip's
    (which needs the transformers package)."""
    import open_clip

    text_cfg = _text_cfg(spec, weights)
    if not text_cfg.get("hf_tokenizer_name") or text_cfg.get("tokenizer_mode"):
        return open_clip.get_tokenizer(spec.arch)
    folder = _tokenizer_folder(spec, weights, text_cfg)
    if folder is None:
        try:
            return open_clip.get_tokenizer(spec.arch)
        except ImportError as exc:
            raise ModelError(
                f"{spec.name} tokenises with a Hugging Face tokenizer that was not found "
                "beside its weights; install the transformers package (pip install "
                "transformers) or connect once so clipseek can fetch its tokenizer.json."
            ) from exc
    from clipseek.models.tokenizer import HubTokenizer

    kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
    context_length = int(text_cfg.get("context_length", 64))
    return _TorchTokens(
        lambda: HubTokenizer.from_folder(
            folder,
            context_length,
            clean=str(kwargs.get("clean", "whitespace")),
            strip_sep_token=bool(kwargs.get("strip_sep_token", False)),
        ),
        context_length,
        spec.name,
    )


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


def _stream_safetensors(
    model: Any, path: str, *, skip_meta: bool = False, keys: set[str] | None = None
) -> bool:
    """Copy a .safetensors checkpoint into ``model`` tensor by tensor (converting dtype).

    ``skip_meta`` leaves the tensors on the meta device (a tower not built yet) out;
    ``keys`` copies only those.

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
        wanted = {
            k
            for k, v in state.items()
            if (keys is None or k in keys) and not (skip_meta and v.is_meta)
        }
        if any(state[k].is_meta for k in wanted):
            return False  # nowhere to copy to
        with torch.no_grad():
            for key, meta in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
                if key not in wanted:
                    continue
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
