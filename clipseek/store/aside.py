"""Where a damaged index goes when it is replaced, and how many such copies are kept.

A repair or a rebuild never deletes what it replaces: the old files move to a sibling
folder ``<index>.damaged-<time>`` that the user may inspect. Interrupted runs and repeated
repairs would pile those up (a copy of the whole index each time), so only the newest
:data:`KEEP_ASIDE` are kept; older ones are removed when a new one is made.
"""

from __future__ import annotations

import re
import shutil
from datetime import datetime
from pathlib import Path

#: How many moved-aside copies of one index are kept beside it.
KEEP_ASIDE = 3
_SUFFIX = ".damaged-"


def aside_folder(folder: Path) -> Path:
    """A new, unused sibling folder name for the files of ``folder``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    target = folder.with_name(f"{folder.name}{_SUFFIX}{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = folder.with_name(f"{folder.name}{_SUFFIX}{stamp}-{n}")
    return target


def kept_aside(folder: Path) -> list[Path]:
    """The moved-aside copies of ``folder``, oldest first."""
    pattern = re.compile(re.escape(folder.name + _SUFFIX) + r"(\d{8}-\d{6})(?:-(\d+))?$")
    found = []
    try:
        siblings = list(folder.parent.iterdir())
    except OSError:
        return []
    for path in siblings:
        match = pattern.match(path.name)
        if match and path.is_dir() and not path.is_symlink():
            found.append(((match.group(1), int(match.group(2) or 1)), path))
    return [path for _, path in sorted(found)]


def prune_aside(folder: Path, keep: int = KEEP_ASIDE) -> list[Path]:
    """Remove all but the ``keep`` newest copies; returns what was removed (best effort)."""
    copies = kept_aside(folder)
    removed = copies[: max(0, len(copies) - keep)]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def kept_sentence(folder: Path) -> str:
    """Where the copies are, for a message."""
    return (
        f"the {KEEP_ASIDE} newest such copies are kept beside the index "
        f"({folder.name}{_SUFFIX}*), older ones are removed"
    )
