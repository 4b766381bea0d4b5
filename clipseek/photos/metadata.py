"""When and with what a photo was taken, read from its header (by the indexer, from the image
it decodes anyway).

Photo libraries are searched by meaning and by time together ("the beach, last summer"),
so the index keeps, beside each vector: the date taken (EXIF DateTimeOriginal with its
offset when the camera wrote one, else the file's modification time, and which of the
two it is), the camera, the upright size, and GPS coordinates when present.

Dates are kept twice. ``taken_local`` is the wall-clock time where the picture was taken,
counted in seconds as if it were UTC: "June 2024" in a filter means June on the clock of
the camera, wherever it was. ``taken_utc`` is the real instant where it is known (an
EXIF offset, or the file's mtime), else the wall clock again.
"""

from __future__ import annotations

import calendar
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

#: EXIF tags (Pillow's numbers): IFD0, the Exif sub-IFD, and the GPS sub-IFD.
_MAKE, _MODEL, _ORIENTATION = 0x010F, 0x0110, 0x0112
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATE_ORIGINAL, _OFFSET_ORIGINAL = 0x9003, 0x9011
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4

_EXIF_DATE = re.compile(r"^\s*(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET = re.compile(r"^\s*([+-])(\d{2}):?(\d{2})\s*$")


@dataclass(frozen=True, slots=True)
class PhotoMeta:
    taken_local: int
    taken_utc: int
    #: "exif" when the camera recorded the date, "mtime" when it is the file's time.
    taken_source: Literal["exif", "mtime"]
    #: The date as a person reads it: ISO 8601, with the offset when one is known.
    taken_text: str
    camera: str
    width: int
    height: int
    gps: tuple[float, float] | None = None
    #: Why some of the metadata could not be read (the rest is still good), or "".
    problem: str = ""

    def metadata(self) -> dict[str, Any]:
        """The fields as stored in the index (Chroma takes str, int, float and bool)."""
        meta: dict[str, Any] = {
            "taken_local": self.taken_local,
            "taken_utc": self.taken_utc,
            "taken_source": self.taken_source,
            "taken": self.taken_text,
            "camera": self.camera,
            "camera_lc": self.camera.lower(),
            "has_gps": self.gps is not None,
        }
        if self.gps is not None:
            meta["gps_lat"], meta["gps_lon"] = self.gps
        if self.problem:
            meta["meta_problem"] = self.problem
        return meta


#: Metadata keys :class:`PhotoMeta` writes; an entry without ``taken_local`` predates them.
META_KEYS = ("taken_local", "taken_utc", "taken_source", "taken", "camera", "camera_lc", "has_gps")
#: ...and those it writes only when there is something to say.
_OPTIONAL_KEYS = ("gps_lat", "gps_lon", "meta_problem")


def carried_metadata(stored: Mapping[str, Any], mtime_ns: int) -> dict[str, Any] | None:
    """The metadata of a file whose bytes are those of an indexed entry (a renamed or copied
    photo), taken from that entry's ``stored`` fields: the same bytes hold the same EXIF,
    and reading it again would decode a PNG in full. Only a date that came from the
    modification time follows the new file's. None where the entry predates metadata."""
    if META_KEYS[0] not in stored:
        return None
    meta = {key: stored[key] for key in (*META_KEYS, *_OPTIONAL_KEYS) if key in stored}
    if stored.get("taken_source") == "mtime":
        meta["taken_local"], meta["taken_utc"], meta["taken"] = _mtime_date(mtime_ns)
    return meta


def read_photo_meta(path: str, mtime_ns: int | None = None) -> PhotoMeta:
    """The photo's metadata from its header; a problem there is noted, never raised.

    Opening with Pillow reads the header only, except for a PNG, whose EXIF chunk may
    follow the pixels: Pillow decodes those to reach it. The indexer therefore takes the
    metadata from the image it decodes anyway (:func:`clipseek.photos.imaging.load_for_model`);
    this is for files it does not decode. A file that cannot be opened at all still gets
    its mtime as the date, with the reason noted.
    """
    from PIL import Image

    if mtime_ns is None:
        try:
            mtime_ns = os.stat(path).st_mtime_ns
        except OSError:
            mtime_ns = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's "Corrupt EXIF data" is ours to report
            Image.MAX_IMAGE_PIXELS = None  # the header only; clipseek has its own limit
            with Image.open(path) as im:
                return meta_from_image(im, mtime_ns)
    except Exception as exc:  # any decoder error is this file's, not the run's
        return _from_mtime(mtime_ns, 0, 0, "", None, f"header unreadable: {_one_line(exc)}")


def meta_from_image(im: Any, mtime_ns: int, size: tuple[int, int] | None = None) -> PhotoMeta:
    """The metadata of an opened (not necessarily decoded) PIL image; ``size`` is the
    file's own where ``im`` was decoded at a reduced scale."""
    width, height = size or im.size
    problem = ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exif = im.getexif()
            orientation = int(exif.get(_ORIENTATION, 1) or 1)
            camera = _camera(exif.get(_MAKE), exif.get(_MODEL))
            sub = exif.get_ifd(_EXIF_IFD) if _EXIF_IFD in exif else {}
            gps = _gps(exif.get_ifd(_GPS_IFD)) if _GPS_IFD in exif else None
            date = sub.get(_DATE_ORIGINAL) or exif.get(_DATE_ORIGINAL)
            offset = sub.get(_OFFSET_ORIGINAL) or exif.get(_OFFSET_ORIGINAL)
    except Exception as exc:  # corrupt EXIF: keep what the image itself says
        return _from_mtime(mtime_ns, width, height, "", None, f"EXIF unreadable: {_one_line(exc)}")
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    if date:
        parsed = _parse_exif_date(date, offset)
        if parsed is not None:
            local, utc, text = parsed
            return PhotoMeta(local, utc, "exif", text, camera, width, height, gps)
        problem = f"EXIF date {_clean(date)!r} unreadable"
    return _from_mtime(mtime_ns, width, height, camera, gps, problem)


def _from_mtime(
    mtime_ns: int,
    width: int,
    height: int,
    camera: str,
    gps: tuple[float, float] | None,
    problem: str,
) -> PhotoMeta:
    local, utc, text = _mtime_date(mtime_ns)
    return PhotoMeta(local, utc, "mtime", text, camera, width, height, gps, problem)


#: The seconds a calendar date can show (years 1 to 9999, a day inside either end so that
#: any time zone still fits): some file systems (tmpfs, btrfs, XFS) keep mtimes beyond them.
_FIRST_SECOND = int(datetime(1, 1, 2, tzinfo=UTC).timestamp())
_LAST_SECOND = int(datetime(9999, 12, 30, tzinfo=UTC).timestamp())


def _mtime_date(mtime_ns: int) -> tuple[int, int, str]:
    """(local, utc, text) of a modification time, on this machine's clock; a time beyond
    what a date can show is taken as the nearest one that can."""
    utc = min(max(int(mtime_ns // 1_000_000_000), _FIRST_SECOND), _LAST_SECOND)
    moment = datetime.fromtimestamp(utc, UTC).astimezone()  # this machine's zone
    offset = moment.utcoffset() or timedelta(0)
    return utc + int(offset.total_seconds()), utc, moment.isoformat(timespec="seconds")


def _parse_exif_date(value: Any, offset: Any) -> tuple[int, int, str] | None:
    match = _EXIF_DATE.match(_clean(value))
    if not match:
        return None
    try:
        wall = datetime(*(int(g) for g in match.groups()), tzinfo=UTC)
    except ValueError:  # "0000:00:00 00:00:00" and other placeholders
        return None
    local = calendar.timegm(wall.timetuple())
    off = _OFFSET.match(_clean(offset)) if offset else None
    if off is None:
        return local, local, wall.replace(tzinfo=None).isoformat(timespec="seconds")
    sign = -1 if off.group(1) == "-" else 1
    delta = timedelta(hours=int(off.group(2)), minutes=int(off.group(3))) * sign
    aware = wall.replace(tzinfo=timezone(delta))
    return local, int(aware.timestamp()), aware.isoformat(timespec="seconds")


def _camera(make: Any, model: Any) -> str:
    """ "Google Pixel 7" from Make "Google" and Model "Pixel 7"; no doubled maker names."""
    make_s, model_s = _clean(make), _clean(model)
    if make_s and model_s.lower().startswith(make_s.lower()):
        return model_s
    return f"{make_s} {model_s}".strip()


def _gps(ifd: Any) -> tuple[float, float] | None:
    try:
        lat = _degrees(ifd[_GPS_LAT], ifd.get(_GPS_LAT_REF, "N"), "S")
        lon = _degrees(ifd[_GPS_LON], ifd.get(_GPS_LON_REF, "E"), "W")
    except (KeyError, TypeError, ValueError, ZeroDivisionError, IndexError):
        return None
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0) or (lat, lon) == (0.0, 0.0):
        return None
    return round(lat, 7), round(lon, 7)


def _degrees(parts: Any, ref: Any, negative: str) -> float:
    d, m, s = (float(p) for p in parts)
    value = d + m / 60.0 + s / 3600.0
    return -value if _clean(ref).upper().startswith(negative) else value


def _clean(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value or "").replace("\x00", "").strip()


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
