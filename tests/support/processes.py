"""Real ``python -m clipseek`` processes, isolated from the developer's own files, that
take the ONNX fast path from their first command."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support import REPO_ROOT

_shared_exports: list[Path] = []
_exported: set[str] = set()  # models already exported there


def _exports_folder() -> Path:
    """One ONNX export folder for every test process of this session (filled once by
    :func:`_export_once`): processes take the fast path, as a user's do after their first
    index run, instead of importing torch again (about 8 s a process)."""
    if not _shared_exports:
        import atexit
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="clipseek-test-exports-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _shared_exports.append(folder)
    return _shared_exports[0]


def _link_exports(cache_home: Path) -> None:
    exports = cache_home / "clipseek" / "onnx"
    if not exports.exists():
        exports.parent.mkdir(parents=True, exist_ok=True)
        exports.symlink_to(_exports_folder(), target_is_directory=True)


def _export_once(model: str) -> None:
    """Export ``model`` to the shared folder (in this process, once), so every process test
    runs the fast path from its first command, whatever ran before it."""
    if model in _exported:
        return
    import tempfile
    from unittest import mock

    from clipseek.models.catalogue import resolve_model
    from clipseek.models.export import export_model, find_export
    from clipseek.models.torch_backend import load_model

    with tempfile.TemporaryDirectory() as cache:
        _link_exports(Path(cache))
        with mock.patch.dict(os.environ, {"XDG_CACHE_HOME": cache}):
            spec = resolve_model(model)
            if find_export(spec) is None:
                export_model(load_model(spec, device="cpu", precision="fp32"))
    _exported.add(model)


def share_exports(cache_home: Path, model: str) -> None:
    """Give the ``XDG_CACHE_HOME`` at ``cache_home`` the session's ready export of ``model``:
    a process started there takes the fast path (queries, serve, CPU index runs)."""
    _link_exports(cache_home)
    _export_once(model)


def cli_env(tmp: Path, model: str, db: Path) -> dict[str, str]:
    """An environment for ``python -m clipseek`` isolated from the developer's own files
    (all but the ONNX exports, see :func:`_exports_folder`)."""
    home = tmp / "proc-home"
    share_exports(home / ".cache", model)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CLIPSEEK_", "PYTEST_", "COV_")) and k != "PYTHONPATH"
    }
    env.update(
        PYTHONPATH=str(REPO_ROOT),
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        HF_HOME=str(home / ".cache" / "huggingface"),
        HF_HUB_OFFLINE="1",
        ANONYMIZED_TELEMETRY="False",
        CLIPSEEK_MODEL=model,
        CLIPSEEK_DB=str(db),
        CLIPSEEK_DEVICE="cpu",
        CLIPSEEK_PRECISION="fp32",
        PYTHONUNBUFFERED="1",
        COLUMNS="200",
    )
    return env


class Proc:
    """A running ``clipseek`` process whose stderr can be waited on line by line."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.args = args
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "clipseek", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.err_lines: list[str] = []
        self.out_lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._readers = [
            threading.Thread(target=self._read_err, daemon=True),
            threading.Thread(target=self._read_out, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _read_err(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.err_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def _read_out(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.out_lines.append(line)

    def wait_for(self, text: str, timeout: float = 120.0, count: int = 1) -> str:
        """Block until the ``count``-th stderr line containing ``text``; fail on exit first."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} within {timeout} s:\n{self.stderr}")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"exited before {text!r}:\n{self.stderr}")
            if text in line:
                seen += 1
                if seen >= count:
                    return line

    def finish(self, timeout: float = 180.0) -> tuple[int, str, str]:
        """Wait for the exit; returns (exit status, stdout, stderr)."""
        self.popen.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return self.popen.returncode, "".join(self.out_lines), self.stderr

    @property
    def stderr(self) -> str:
        return "".join(self.err_lines)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.finish()


@contextmanager
def running(args: list[str], env: dict[str, str]) -> Iterator[Proc]:
    proc = Proc(args, env)
    try:
        yield proc
    finally:
        if proc.popen.poll() is None:
            proc.popen.kill()
            proc.popen.wait(timeout=30)
