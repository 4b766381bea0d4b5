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
from clipseek.photos.pathtext import display_path


def open_command(path: str, *, reveal: bool = False, platform: str | None = None) -> list[str]:
    """The command that opens ``path`` (or, with ``reveal``, shows it in its folder)."""
    platform = platform or sys.platform
    if platform == "darwin":
        return ["open", "-R", path] if reveal else ["open", path]
    if platform.startswith("win"):
        return ["explorer", f"/select,{path}"] if reveal else ["explorer", path]
    target = os.path.dirname(path) if reveal else path
    return ["xdg-open", target or "."]


def can_open(path: str, *, reveal: bool = False) -> bool:
    """Whether this system has the program that :func:`launch` would run."""
    return shutil.which(open_command(path, reveal=reveal)[0]) is not None


def launch(path: str, *, reveal: bool = False, timeout: float = 10.0) -> None:
    """Open ``path`` with the desktop's default application; raises ClipseekError if that
    cannot be done. Blocks up to ``timeout`` seconds (call it from a worker thread).

    With ``reveal`` the messages name the folder, since that is what was being opened."""
    if not os.path.exists(path):
        raise ClipseekError(f"{display_path(path)} is no longer on disk.")
    argv = open_command(path, reveal=reveal)
    folder = os.path.dirname(path) or "."
    what = f"the folder {display_path(folder)}" if reveal else display_path(path)
    if shutil.which(argv[0]) is None:
        raise ClipseekError(f"Cannot open {what} here: there is no `{argv[0]}` on this system.")
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        raise ClipseekError(
            f"Cannot run {argv[0]} to open {what}: {exc.strerror or exc}."
        ) from None
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return  # still running: a viewer that stays in the foreground, which is fine
    if code != 0 and not sys.platform.startswith("win"):
        raise ClipseekError(
            f"{argv[0]} could not open {what} (exit status {code}); "
            "is there a desktop session on this machine?"
        )


def clipboard_command(
    platform: str | None = None, env: dict[str, str] | None = None
) -> list[str] | None:
    """The desktop's own clipboard tool, when this session has one and it is installed.

    Textual copies with the terminal's OSC 52 escape, which tmux (``set-clipboard
    external``), screen and many SSH set-ups drop without a word; a desktop tool either
    works or fails with an exit status, so the app can say which happened.
    """
    platform = platform or sys.platform
    env = os.environ if env is None else env
    candidates: list[list[str]] = []
    if platform == "darwin":
        candidates.append(["pbcopy"])
    elif platform.startswith("win"):
        candidates.append(["clip"])
    else:
        if env.get("WAYLAND_DISPLAY"):
            candidates.append(["wl-copy"])
        if env.get("DISPLAY"):
            candidates.append(["xclip", "-selection", "clipboard"])
            candidates.append(["xsel", "--clipboard", "--input"])
    for argv in candidates:
        if shutil.which(argv[0]) is not None:
            return argv
    return None


def copy_with_tool(text: str, argv: list[str], timeout: float = 3.0) -> bool:
    """Hand ``text`` to a clipboard tool; True if it took it (call from a worker thread)."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc.communicate(text.encode("utf-8"), timeout=timeout)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0
