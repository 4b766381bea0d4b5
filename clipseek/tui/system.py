"""Handing files to the desktop: the system image viewer and file manager.

Launching a viewer is fire-and-forget for the user, but a missing ``xdg-open`` or
a session without a desktop (SSH) must still come back as a sentence, not
silence; so the launcher waits briefly for the helper's exit status.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from clipseek.errors import ClipseekError


def open_command(path: str, *, reveal: bool = False, platform: str | None = None) -> list[str]:
    """The command that opens ``path`` (or, with ``reveal``, shows it in its folder)."""
    platform = platform or sys.platform
    if platform == "darwin":
        return ["open", "-R", path] if reveal else ["open", path]
    if platform.startswith("win"):
        return ["explorer", f"/select,{path}"] if reveal else ["explorer", path]
    target = os.path.dirname(path) if reveal else path
    return ["xdg-open", target or "."]


def launch(path: str, *, reveal: bool = False, timeout: float = 10.0) -> None:
    """Open ``path`` with the desktop's default application; raises ClipseekError if that
    cannot be done. Blocks up to ``timeout`` seconds (call it from a worker thread)."""
    if not os.path.exists(path):
        raise ClipseekError(f"{path} is no longer on disk.")
    argv = open_command(path, reveal=reveal)
    if shutil.which(argv[0]) is None:
        raise ClipseekError(
            f"Cannot open files here: there is no `{argv[0]}` on this system. The file is {path}."
        )
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        raise ClipseekError(f"Cannot run {argv[0]}: {exc.strerror or exc}.") from None
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return  # still running: a viewer that stays in the foreground, which is fine
    if code != 0 and not sys.platform.startswith("win"):
        raise ClipseekError(
            f"{argv[0]} could not open {path} (exit status {code}); "
            "is there a desktop session on this machine?"
        )
