"""How long from process start to the app's first screen, and what was imported by then.

Each sample starts a fresh Python process that opens the app (headless by
default, or in this terminal with --terminal) and reports the moment its search
screen is up, and whether torch, open_clip or chromadb were imported by then
(they must not be: they load in a worker after the first paint). The baseline,
measured in the same run, is a bare ``python -c pass``; the report gives both
and their difference (the app's own cost):

    python benchmarks/tui_first_paint.py            # 7 headless samples
    python benchmarks/tui_first_paint.py --terminal # in a real terminal (tmux, ...)
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.abc
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "open_clip", "chromadb")


def child(args: argparse.Namespace) -> None:
    """Open the app and write when its first screen was up, and what was imported by then.

    With --terminal this is exactly what ``clipseek tui`` does (through the CLI); the
    headless run takes the same steps without a terminal. The app's ``_start_boot``
    (which the search screen calls right after its first paint) is wrapped as the
    module is imported, so the timing includes every import.
    """
    report: dict[str, object] = {}

    def patch(app_class: type) -> None:
        def first_paint(self) -> None:
            report["ready"] = time.time()
            report["cpu"] = time.process_time()
            report["heavy"] = [m for m in HEAVY if m in sys.modules]
            report["screen"] = type(self.screen).__name__
            report["focused"] = getattr(self.focused, "id", None)
            self.exit()

        app_class._start_boot = first_paint

    class PatchOnImport(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
            if name != "clipseek.tui.app":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            exec_module = spec.loader.exec_module

            def exec_and_patch(module) -> None:  # type: ignore[no-untyped-def]
                exec_module(module)
                patch(module.ClipseekApp)

            spec.loader.exec_module = exec_and_patch
            return spec

    sys.meta_path.insert(0, PatchOnImport())
    if args.terminal:
        from clipseek.cli.app import app as cli

        with contextlib.suppress(SystemExit):
            cli(["tui", "--db", args.db, "--preview", args.preview], prog_name="clipseek")
    else:
        import clipseek.cli.entry  # noqa: F401 - the same start-up cost as `clipseek` on its own
        from clipseek.config import load_settings
        from clipseek.tui import _Background
        from clipseek.tui.preview import prepare

        probe = _Background(prepare, args.preview)
        from clipseek.tui.app import ClipseekApp

        app = ClipseekApp(
            load_settings({"db": args.db}), preview=args.preview, image_class=probe.result()
        )
        app.run(headless=True)
    Path(args.report).write_text(json.dumps(report))
    os._exit(0)  # do not wait for the model-loading worker: the measurement is taken


BASELINE_APP = """
import json, sys, time
from textual.app import App
from textual.widgets import Footer, Input, Static

class Hello(App):
    def compose(self):
        yield Input(placeholder="query")
        yield Static("hello")
        yield Footer()

    def on_mount(self):
        self.call_after_refresh(self.done)

    def done(self):
        with open(sys.argv[1], "w") as fh:
            json.dump({"ready": time.time(), "cpu": time.process_time()}, fh)
        self.exit()

Hello().run(headless=True)
"""


def sample(argv: list[str], env: dict[str, str], report: Path | None) -> tuple[float, dict]:
    start = time.time()
    proc = subprocess.run(argv, env=env, stdin=None if report else subprocess.DEVNULL)
    if proc.returncode != 0:
        raise SystemExit(f"child failed: {argv}")
    if report is None:
        return time.time() - start, {}
    data = json.loads(report.read_text())
    return float(data["ready"]) - start, data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--terminal", action="store_true", help="draw in this terminal")
    parser.add_argument("--preview", default="auto")
    parser.add_argument("--out", type=Path, help="also write the summary to this file")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    python, baseline, base_cpu, app_times, cpu_times, heavy = [], [], [], [], [], set()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        for _ in range(args.samples):
            python.append(sample([sys.executable, "-c", "pass"], env, None)[0])
            seconds, data = sample([sys.executable, "-c", BASELINE_APP, str(report)], env, report)
            baseline.append(seconds)
            base_cpu.append(float(data["cpu"]))
            argv = [
                sys.executable,
                __file__,
                "--child",
                "--db",
                str(Path(tmp) / "db"),
                "--report",
                str(report),
                "--preview",
                args.preview,
            ]
            if args.terminal:
                argv.append("--terminal")
            seconds, data = sample(argv, env, report)
            app_times.append(seconds)
            cpu_times.append(float(data["cpu"]))
            heavy.update(data.get("heavy", []))
    base, first = statistics.median(baseline), statistics.median(app_times)
    summary = (
        f"clipseek first paint (median of {args.samples}, "
        f"{'terminal' if args.terminal else 'headless'}): {first:.3f} s from process start "
        f"({statistics.median(cpu_times):.3f} s of CPU)\n"
        f"baseline, a minimal Textual app (headless): {base:.3f} s "
        f"({statistics.median(base_cpu):.3f} s of CPU); ratio {first / base:.2f}\n"
        f"python -c pass: {statistics.median(python):.3f} s\n"
        f"heavy modules imported by first paint: {sorted(heavy) or 'none'}; "
        f"screen {data.get('screen')}, focus on #{data.get('focused')}"
    )
    print(summary)
    if args.out:
        args.out.write_text(summary + "\n")


if __name__ == "__main__":
    main()
