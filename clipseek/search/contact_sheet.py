"""Saving a search: a contact sheet of the hits and the JSON beside it.

The sheet lets a person see a result set at a glance, or share it, without the
terminal; thumbnails go in rank order, each labelled with its score and name.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from clipseek.errors import ClipseekError, ImageReadError
from clipseek.photos.imaging import open_image
from clipseek.photos.pathtext import display_path, dumps
from clipseek.search.query import SearchResponse

THUMB = 256
LABEL_H = 40
PAD = 12
COLUMNS = 5


@dataclass(frozen=True)
class SavedSearch:
    sheet: Path
    json: Path


#: Names that say "a picture file", not "a folder": a sheet is a PNG, so only .png is one.
_PICTURE_SUFFIXES = {".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".avif"}


def save_results(response: SearchResponse, folder: str | os.PathLike[str]) -> SavedSearch:
    """Write ``<stamp>-results.png`` and ``<stamp>-results.json`` into ``folder``; or,
    when ``folder`` names a ``.png`` file (and is not an existing folder), the sheet there
    and its JSON beside it (``sheet.png``, ``sheet.json``)."""
    out = Path(folder).expanduser()
    suffix = out.suffix.lower()
    as_file = suffix == ".png" and not out.is_dir()
    if suffix in _PICTURE_SUFFIXES and not out.is_dir():
        raise ClipseekError(
            f"The contact sheet is a PNG: name it {out.with_suffix('.png').name} (.png), "
            "or give a folder to save it in."
        )
    folder_path = out.parent if as_file else out
    try:
        folder_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ClipseekError(f"Cannot create {folder_path}: {exc.strerror or exc}.") from None
    if as_file:
        sheet_path = out
    else:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        sheet_path = _unique(out / f"{stamp}-results.png")
    json_path = sheet_path.with_suffix(".json")
    sheet = contact_sheet(response)
    try:
        sheet.save(sheet_path, "PNG", optimize=True)
        json_path.write_text(dumps(response.to_json(), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ClipseekError(
            f"Cannot write the results into {folder_path}: {exc.strerror or exc}."
        ) from None
    return SavedSearch(sheet_path, json_path)


def _unique(path: Path) -> Path:
    n = 1
    candidate = path
    while candidate.exists() or candidate.with_suffix(".json").exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


def contact_sheet(response: SearchResponse):  # -> PIL.Image.Image
    from PIL import Image, ImageDraw

    count = max(1, len(response.results))
    cols = min(COLUMNS, count)
    rows = math.ceil(count / cols)
    title_h = 36
    width = PAD + cols * (THUMB + PAD)
    height = title_h + PAD + rows * (THUMB + LABEL_H + PAD)
    sheet = Image.new("RGB", (width, height), (24, 26, 31))
    draw = ImageDraw.Draw(sheet)
    font, covers_all = label_font(14)
    title_font, _ = label_font(18)
    shown = _label_text if covers_all else _ascii_label
    draw.text(
        (PAD, 10),
        shown(f"{response.query}  ·  {response.model}"),
        fill=(235, 235, 235),
        font=title_font,
    )
    if not response.results:
        draw.text((PAD, title_h + PAD), "no results", fill=(180, 180, 180), font=font)
    for i, result in enumerate(response.results):
        x = PAD + (i % cols) * (THUMB + PAD)
        y = title_h + PAD + (i // cols) * (THUMB + LABEL_H + PAD)
        draw.rectangle([x, y, x + THUMB - 1, y + THUMB - 1], fill=(40, 43, 50))
        try:
            thumb = open_image(result.path, max_megapixels=None, min_size=(THUMB, THUMB))
            thumb.thumbnail((THUMB, THUMB))
            sheet.paste(thumb, (x + (THUMB - thumb.width) // 2, y + (THUMB - thumb.height) // 2))
        except ImageReadError as exc:
            draw.text((x + 8, y + THUMB // 2), exc.reason[:32], fill=(220, 120, 120), font=font)
        name = shown(display_path(os.path.basename(result.path)))
        name = name if len(name) <= 30 else name[:29] + "…"
        draw.text(
            (x, y + THUMB + 4),
            f"#{result.rank}  {result.score:.3f}",
            fill=(130, 200, 255),
            font=font,
        )
        draw.text((x, y + THUMB + 21), name, fill=(220, 220, 220), font=font)
    return sheet


#: Fonts that cover accented Latin, Greek and Cyrillic names, by platform; the first
#: one found is used. Pillow's built-in font draws anything beyond ASCII as boxes.
FONT_CANDIDATES = (
    "DejaVuSans.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
    "/Library/Fonts/Arial Unicode.ttf",
    "/System/Library/Fonts/Helvetica.ttc",
    "C:/Windows/Fonts/segoeui.ttf",
    "C:/Windows/Fonts/arial.ttf",
)


def label_font(size: int):  # -> tuple[ImageFont, bool]
    """A TrueType font for labels, and whether it covers more than ASCII; without one,
    Pillow's default font, and labels are written with visible escapes instead."""
    from PIL import ImageFont

    for candidate in FONT_CANDIDATES:
        try:
            return ImageFont.truetype(candidate, size), True
        except OSError:
            continue
    return ImageFont.load_default(size=size), False


def _label_text(text: str) -> str:
    return text


def _ascii_label(text: str) -> str:
    """``café`` as ``caf\\u00e9``: a name the font cannot draw is spelled out, not boxed."""
    return text.encode("ascii", "backslashreplace").decode("ascii")
