"""Reading photos the way a person sees them, and explaining the ones we cannot read.

Cameras store rotation in EXIF, PNGs carry alpha, GIFs have frames, scanners
write CMYK and 16-bit files: each is normalised here to one upright RGB image,
so the model embeds what the user would see in a viewer.
"""

from __future__ import annotations

import errno
import os
import struct
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

from clipseek.errors import ImageReadError

if TYPE_CHECKING:
    from PIL import Image

#: HEIC/HEIF photos (iPhones, many Android phones) need the optional pillow-heif.
HEIF_EXTENSIONS: frozenset[str] = frozenset({".heic", ".heif", ".hif"})

#: Extensions indexed by default, compared case-insensitively. HEIC files are always
#: scanned, so that without pillow-heif each one is reported rather than silently ignored.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", *HEIF_EXTENSIONS}
)

#: The reason given for a HEIC file when pillow-heif is missing (word for word in the docs).
HEIC_MISSING = "HEIC support not installed: pip install clipseek[heif]"
_HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1")

#: Decoders that can produce a smaller image directly (JPEG DCT scaling).
_DRAFT_FORMATS = frozenset({"JPEG"})

_pil_ready = False
_heif_ready: bool | None = None


def _prepare_pil() -> None:
    """clipseek enforces its own megapixel limit before decoding; Pillow's global one would
    raise on the panoramas the user asked for, and warn on every large photo."""
    global _pil_ready
    if _pil_ready:
        return
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    # A camera's damaged EXIF block is common and harmless (the pixels are fine); Pillow's
    # warnings about it ("Corrupt EXIF data", "Tag data larger than file"...) would reach
    # the user's terminal as noise that names no file. Pillow's own warnings are all such.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
    heif_supported()
    _pil_ready = True


def prepare_pillow() -> None:
    """Set Pillow up as clipseek reads images (own pixel limit, quiet warnings)."""
    _prepare_pil()


def heif_supported() -> bool:
    """Whether HEIC/HEIF files can be read: pillow-heif is installed (and now registered)."""
    global _heif_ready
    if _heif_ready is None:
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            _heif_ready = False
        else:
            register_heif_opener()
            _heif_ready = True
    return _heif_ready


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


@dataclass(frozen=True, slots=True)
class ImageInfo:
    width: int
    height: int
    #: Header metadata for the index (:meth:`clipseek.photos.metadata.PhotoMeta.metadata`).
    meta: Mapping[str, Any] = field(default_factory=dict)


def open_image(
    path: str,
    *,
    max_megapixels: float | None = None,
    min_size: tuple[int, int] | None = None,
    meta_mtime_ns: int | None = None,
) -> Image.Image:
    """Open ``path`` as an upright RGB image, fully decoded.

    ``min_size`` allows a reduced decode (JPEG DCT scaling) as long as the result
    still covers that size, which is all a 224-pixel model input needs from a
    12-megapixel photo. The original dimensions stay in ``image.info["clipseek_size"]``.
    With ``meta_mtime_ns`` (the file's mtime, the date when EXIF has none) the photo's
    metadata is read from the same open file into ``image.info["clipseek_meta"]``: opening
    it a second time for that would decode a PNG twice, since Pillow reads every chunk of
    a PNG to find its EXIF.
    Raises :class:`ImageReadError` with a one-line reason for anything unreadable.
    """
    try:
        if os.path.getsize(path) == 0:
            raise ImageReadError(path, "empty file (0 bytes)")
    except OSError as exc:
        raise ImageReadError(path, describe_os_error(exc)) from None
    return _decode(path, path, max_megapixels, min_size, meta_mtime_ns=meta_mtime_ns)


def open_image_bytes(
    data: bytes,
    *,
    label: str = "the uploaded image",
    max_megapixels: float | None = None,
    min_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode an image held in memory (an upload) exactly as :func:`open_image` reads a file,
    so a photo searched by upload embeds the same as the same photo on disk. ``label`` names
    it in error messages."""
    import io

    if not data:
        raise ImageReadError(label, "empty file (0 bytes)")
    return _decode(io.BytesIO(data), label, max_megapixels, min_size, head=bytes(data[:512]))


def open_image_file(
    file: BinaryIO,
    label: str,
    *,
    max_megapixels: float | None = None,
    min_size: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode an already open file exactly as :func:`open_image` reads a path; the server
    reads from the descriptor it checked, never from the path again."""
    head = file.read(512)
    file.seek(0)
    if not head:
        raise ImageReadError(label, "empty file (0 bytes)")
    return _decode(file, label, max_megapixels, min_size, head=head)


def _decode(
    source: str | BinaryIO,
    label: str,
    max_megapixels: float | None,
    min_size: tuple[int, int] | None,
    head: bytes | None = None,
    meta_mtime_ns: int | None = None,
) -> Image.Image:
    _prepare_pil()
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(source) as im:
            width, height = im.size
            if max_megapixels is not None and width * height > max_megapixels * 1_000_000:
                raise ImageReadError(
                    label,
                    f"image is {width}×{height} ({width * height / 1e6:.0f} MP), above the "
                    f"{max_megapixels:g} MP limit; raise it with --max-megapixels",
                )
            # Animated GIF/WebP/PNG open on their first frame, which is what gets indexed.
            if min_size is not None and im.format in _DRAFT_FORMATS:
                _draft(im, min_size)
            im.load()
            try:
                image = ImageOps.exif_transpose(im) or im
            except Exception:  # broken EXIF: the pixels are still good, show them as stored
                image = im
            rgb = to_rgb(image)
            rgb.info["clipseek_size"] = (width, height) if _exif_keeps_axes(im) else (height, width)
            if meta_mtime_ns is not None:
                # Lazy: --help and the quick index path import this module but no metadata reader.
                from clipseek.photos.metadata import meta_from_image

                rgb.info["clipseek_meta"] = meta_from_image(im, meta_mtime_ns, (width, height))
            return rgb
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        reason = _unidentified_reason(source) if head is None else _reason_from_head(head)
        raise ImageReadError(label, reason) from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(label, f"refused as a decompression bomb ({exc})") from None
    except OSError as exc:
        raise ImageReadError(label, describe_os_error(exc)) from None
    except (ValueError, SyntaxError, IndexError, struct.error, EOFError) as exc:
        raise ImageReadError(label, f"corrupt image data ({_one_line(exc)})") from None
    except MemoryError:
        raise ImageReadError(label, "image too large to decode in memory") from None
    except Exception as exc:  # decoders raise many types (zlib.error, RuntimeError...)
        raise ImageReadError(label, f"corrupt image data ({_one_line(exc)})") from None


def _exif_keeps_axes(im: Image.Image) -> bool:
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:
        return True
    return orientation not in (5, 6, 7, 8)


def _draft(im: Image.Image, min_size: tuple[int, int]) -> None:
    """Ask the JPEG decoder for the smallest DCT scale whose output still covers ``min_size``
    on the short side; Pillow picks a scale of 1/2, 1/4 or 1/8 that is at least as large."""
    width, height = im.size
    need = max(min_size)
    short = min(width, height)
    if short < 2 * need:
        return
    scale = need / short
    im.draft("RGB", (max(1, int(width * scale + 0.999)), max(1, int(height * scale + 0.999))))


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB as a viewer would show it: transparency over white,
    16-bit scaled (not clipped) to 8 bits, CMYK through its colour profile, palettes converted."""
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("CMYK", "LAB"):
        converted = _colour_managed(image)
        if converted is not None:
            return converted
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        import numpy as np

        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "F":
        import numpy as np

        arr = np.asarray(image, dtype=np.float64)
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, "L").convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    elif mode in ("L", "RGB") and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _colour_managed(image: Image.Image) -> Image.Image | None:
    """CMYK and Lab pixels mean little without a profile: a naive conversion of Lab is
    plain wrong, and of CMYK often far off. Use the embedded (or a standard) profile."""
    try:
        import io

        from PIL import ImageCms

        srgb = ImageCms.createProfile("sRGB")
        if image.mode == "LAB":
            source = ImageCms.createProfile("LAB")
        elif image.info.get("icc_profile"):
            source = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        else:
            return None  # Pillow's own CMYK conversion handles profile-less files
        return ImageCms.profileToProfile(image, source, srgb, outputMode="RGB")
    except Exception:  # a broken profile, or Pillow built without littlecms
        return None


def _unidentified_reason(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        return describe_os_error(exc)
    return _reason_from_head(head, os.path.splitext(path)[1].lower())


def _reason_from_head(head: bytes, extension: str = "") -> str:
    """Why Pillow could not identify a file, guessed from its first bytes (and extension)."""
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html")):
        return "an HTML page saved with an image extension"
    if text.startswith(b"<?xml") or text.startswith(b"<svg"):
        return "an XML/SVG file, not a bitmap image"
    is_heif = head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS
    if is_heif or extension in HEIF_EXTENSIONS:
        return HEIC_MISSING if not heif_supported() else "not a readable HEIC/HEIF image"
    if head[4:12] == b"ftypavif":
        return "an AVIF image, which this Pillow build cannot read"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "a text file, not an image"
    return "not a recognised image format"


def describe_os_error(exc: OSError) -> str:
    """A one-line, human reason for an I/O failure while reading an image."""
    message = str(exc)
    if "truncated" in message.lower():
        return "image file is truncated"
    if isinstance(exc, FileNotFoundError):
        return "file disappeared before it could be read"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if exc.errno == errno.EIO:
        return "input/output error while reading (failing disk or network share?)"
    if exc.errno is None:  # Pillow's decoders report bad data as a bare OSError
        return f"corrupt image data ({_one_line(exc)})"
    if exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return _one_line(exc) or "cannot be read"


#: Reasons that depend on this machine or this run rather than on the file's bytes: a
#: file skipped for one of these is tried again on the next run even if it is unchanged
#: (the user may have installed pillow-heif, raised --max-megapixels or fixed permissions).
_RETRY_MARKERS = (
    HEIC_MISSING,
    "--max-megapixels",
    "permission denied",
    "input/output error",
    "disappeared",
    "too large to decode in memory",
)


def worth_retrying(reason: str) -> bool:
    """Whether a file that failed for ``reason`` should be decoded again though unchanged."""
    return any(marker in reason for marker in _RETRY_MARKERS)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 160 else text[:157] + "..."


def load_for_model(
    path: str,
    transform: Callable[[Image.Image], object],
    size: tuple[int, int],
    max_megapixels: float | None,
    mtime_ns: int | None = None,
) -> tuple[object, ImageInfo]:
    """Read and preprocess one file for the model; the pipeline's per-file unit of work.

    With ``mtime_ns`` the returned :class:`ImageInfo` also carries the photo's metadata
    (:class:`clipseek.photos.metadata.PhotoMeta`), read while the file is open anyway."""
    image = open_image(path, max_megapixels=max_megapixels, min_size=size, meta_mtime_ns=mtime_ns)
    width, height = image.info.get("clipseek_size", image.size)
    photo = image.info.get("clipseek_meta")
    try:
        tensor = transform(image)
    except Exception as exc:  # a transform failure is a property of this file, not a crash
        raise ImageReadError(path, f"could not be preprocessed ({_one_line(exc)})") from None
    return tensor, ImageInfo(int(width), int(height), photo.metadata() if photo else {})
