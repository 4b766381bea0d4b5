"""The model's eval preprocessing in Pillow and numpy alone, with no torch or torchvision.

open_clip's eval transform is torchvision's ``Resize`` (shortest side, or both sides for
``squash``) and ``CenterCrop`` on a PIL image, then ``ToTensor`` and ``Normalize``. On a
PIL image torchvision's resize *is* Pillow's ``Image.resize`` and its crop offsets are
rounded halves, so the same steps here give the very same pixels (a test holds them to
byte equality). That lets decoder processes and the ONNX runtime prepare images without
importing torch. Other configurations (``longest``, non-square ``shortest``) fail
:func:`pil_supported` and keep the torch transform.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from clipseek.models.base import PreprocessConfig

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

_RESAMPLE = {"bicubic": 3, "bilinear": 2, "nearest": 0, "lanczos": 1, "box": 4, "hamming": 5}


def pil_supported(cfg: PreprocessConfig) -> bool:
    """Whether :func:`prepare_image` reproduces open_clip's transform for ``cfg`` exactly."""
    square = cfg.size[0] == cfg.size[1]
    return cfg.interpolation in _RESAMPLE and (
        cfg.resize_mode == "squash" or (cfg.resize_mode == "shortest" and square)
    )


def prepare_image(image: Image.Image, cfg: PreprocessConfig) -> np.ndarray:
    """Resize and crop an RGB image for the model: uint8, H×W×3."""
    import numpy as np

    height, width = cfg.size
    resample = _RESAMPLE[cfg.interpolation]
    if cfg.resize_mode == "squash":
        out = image.resize((width, height), resample)
    else:
        w, h = image.size
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = height, int(height * long / short)
        size = (new_short, new_long) if w <= h else (new_long, new_short)
        out = image.resize(size, resample) if size != (w, h) else image
        ow, oh = out.size
        top = round((oh - height) / 2.0)
        left = round((ow - width) / 2.0)
        if top < 0 or left < 0:
            return _padded_crop(out, cfg, top, left)
        out = out.crop((left, top, left + width, top + height))
    if out.mode != "RGB":
        out = out.convert("RGB")
    return np.asarray(out, dtype=np.uint8)


def _padded_crop(image: Image.Image, cfg: PreprocessConfig, top: int, left: int) -> np.ndarray:
    """torchvision's CenterCrop pads with zeros when the image is smaller than the crop."""
    import numpy as np
    from PIL import Image as PILImage

    height, width = cfg.size
    ow, oh = image.size
    pad_left, pad_top = max(0, (width - ow) // 2), max(0, (height - oh) // 2)
    canvas = PILImage.new("RGB", (max(ow, width), max(oh, height)), (0, 0, 0))
    canvas.paste(image.convert("RGB"), (pad_left, pad_top))
    cw, ch = canvas.size
    t, lft = round((ch - height) / 2.0), round((cw - width) / 2.0)
    return np.asarray(canvas.crop((lft, t, lft + width, t + height)), dtype=np.uint8)


def normalise_batch(items: list[np.ndarray] | np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """N×H×W×3 uint8 → N×3×H×W float32, as ToTensor + Normalize compute it."""
    import numpy as np

    batch = np.ascontiguousarray(np.stack(items) if isinstance(items, list) else items)
    mean = np.asarray(cfg.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(cfg.std, dtype=np.float32).reshape(1, 3, 1, 1)
    out = batch.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255)
    out -= mean
    out /= std
    return out
