"""The command line: a thin Typer front end over :class:`clipseek.engine.Engine`.

It turns flags into settings, engine events into a rich progress bar, and
results into a table or JSON. Anything heavier than rich is imported inside the
command that needs it, so ``clipseek --help`` stays instant.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from clipseek.cli.debug import hide_debug_lines, show_debug_lines
from clipseek.cli.help import (
    PlainGroup,
    complete_choices,
    complete_folder,
    complete_model,
    complete_path,
)
from clipseek.cli.report import failure_line, links_line, summary_line
from clipseek.config import DEFAULT_MODEL, thread_count
from clipseek.errors import (
    ClipseekError,
    ConfigError,
    DamagedIndexError,
    IndexMissingError,
    ModelError,
    QueryError,
    StoreError,
)
from clipseek.photos.pathtext import display_path, dumps
from clipseek.search.query import QUERY_HELP, Query, QueryTerm, check_sort, check_top_k, parse_query

if TYPE_CHECKING:
    from rich.console import Console

    from clipseek.config import Settings
    from clipseek.engine import Engine
    from clipseek.indexing.events import IndexEvent
    from clipseek.search.query import SearchResponse

app = typer.Typer(
    name="clipseek",
    help="Semantic image search in the terminal: find photos by describing them.\n\n"
    "Run without a command to open the full-screen app.",
    cls=PlainGroup,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])


def _stdout() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


_debug_flag = False  # set by the root callback; a global because Typer runs commands outside
# the click context that would otherwise carry it


def _debug_enabled() -> bool:
    if _debug_flag:
        return True
    return os.environ.get("CLIPSEEK_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def friendly(func: F) -> F:
    """Show a :class:`ClipseekError` as its message and exit 1; a traceback only with --debug."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ClipseekError as exc:
            if _debug_enabled():
                raise
            from rich.markup import escape  # only now: a cold query does not import rich

            # escaped: messages hold paths and hints like clipseek[serve], not markup
            _stderr().print(f"[bold red]error:[/] {escape(_printable(str(exc)))}", highlight=False)
            raise typer.Exit(1) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except BaseException as exc:  # Chroma's Rust core panics with a BaseException
            if _debug_enabled():
                raise
            from rich.markup import escape

            _stderr().print(
                "[bold red]error:[/] clipseek hit an unexpected problem: "
                f"{escape(type(exc).__name__)}: {escape(_printable(str(exc))[:500])}\n"
                "Run again with --debug for the full traceback and include it in a bug report."
            )
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _printable(text: str) -> str:
    """Text as a terminal can take it: undecodable bytes and control characters in the
    file names it quotes show escaped (clipseek.photos.pathtext's one rule)."""
    from clipseek.photos.pathtext import display_text

    return display_text(text)


# --------------------------------------------------------------------------- shared options

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help=f"Model: {DEFAULT_MODEL} (default; an index keeps the model it "
        "was built with), a name `clipseek models` lists, an open_clip MODEL:PRETRAINED pair, "
        "hf-hub:ORG/REPO or local-dir:PATH. \\[env: CLIPSEEK_MODEL]",
        show_default=False,
        autocompletion=complete_model,
    ),
]
DbOpt = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="Index folder. \\[env: CLIPSEEK_DB]",
        show_default=False,
        autocompletion=complete_folder,
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device",
        help="auto, cpu, cuda or mps. \\[env: CLIPSEEK_DEVICE]",
        show_default=False,
        autocompletion=complete_choices("auto", "cpu", "cuda", "mps"),
    ),
]
PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="auto, fp32, bf16, fp16 or int8 (ONNX on a CPU, for indexing; explicit only); "
        "auto picks the fastest that keeps results. "
        "\\[env: CLIPSEEK_PRECISION]",
        show_default=False,
        autocompletion=complete_choices("auto", "fp32", "bf16", "fp16"),
    ),
]
ChromaOpt = Annotated[
    str | None,
    typer.Option(
        "--chroma-url",
        help="Use a Chroma server (http://HOST:PORT) instead of the local index. "
        "\\[env: CLIPSEEK_CHROMA_URL]",
        show_default=False,
    ),
]


def _settings(**flags: Any) -> Settings:
    # Lazy: --help does not import this (tests/test_imports.py).
    from clipseek.config import load_settings

    given = dict(_root_flags)
    given.update({k: v for k, v in flags.items() if v is not None})
    return load_settings(given)


def _engine(settings: Settings, *, interactive: bool = False) -> Engine:
    """``interactive``: one answer, as soon as possible (see Engine's direct, quick_start)."""
    # Lazy: --help does not import this (tests/test_imports.py).
    from clipseek.engine import Engine

    return Engine(settings, direct=interactive, quick_start=interactive)


def _serving_engine(settings: Settings) -> Engine:
    """What ``clipseek serve`` searches with (see :func:`clipseek.server.serving_engine`)."""
    # Lazy: --help does not import this (tests/test_imports.py).
    from clipseek.server import serving_engine

    return serving_engine(settings)


# --------------------------------------------------------------------------- root


def _version(value: bool) -> None:
    if value:
        # Lazy: reading the installed metadata costs every other command its start.
        from clipseek import __version__

        typer.echo(f"clipseek {__version__}")
        raise typer.Exit()


PreviewOpt = Annotated[
    str | None,
    typer.Option(
        "--preview",
        help="How to draw images: auto, tgp (kitty), sixel, halfcell, unicode or none. "
        "\\[env: CLIPSEEK_PREVIEW]",
        show_default=False,
        autocompletion=complete_choices("auto", "tgp", "sixel", "halfcell", "unicode", "none"),
    ),
]


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


#: App options given before any command (``clipseek --db X``, ``clipseek --db X query ...``):
#: the defaults for whatever runs, below the command's own flags.
_root_flags: dict[str, Any] = {}


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option("--debug", help="Show tracebacks for bug reports. \\[env: CLIPSEEK_DEBUG]"),
    ] = False,
    preview: PreviewOpt = None,
    model: ModelOpt = None,
    db: DbOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """The app's options work here too: ``clipseek --preview unicode`` opens the app with
    them, and ``clipseek --db X query ...`` searches that index."""
    global _debug_flag
    _debug_flag = debug
    if _debug_enabled():
        show_debug_lines()
    else:
        hide_debug_lines()
    _root_flags.clear()
    _root_flags.update(
        {
            k: v
            for k, v in dict(
                model=model, db=db, device=device, precision=precision, chroma_url=chroma_url
            ).items()
            if v is not None
        }
    )
    if ctx.invoked_subcommand is None:
        if not _interactive():
            typer.echo(ctx.get_help())  # piped or scripted: help, not a full-screen app
            return
        _run_tui(preview)


@friendly
def _run_tui(preview: str | None = None, **flags: Any) -> None:
    # Lazy: --help does not import this (tests/test_imports.py).
    from clipseek.tui import run_tui

    settings = _settings(**flags)
    run_tui(settings, preview=preview)


@app.command()
def tui(
    preview: PreviewOpt = None,
    model: ModelOpt = None,
    db: DbOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Open the full-screen app (the same as running clipseek alone)."""
    _run_tui(preview, model=model, db=db, device=device, precision=precision, chroma_url=chroma_url)


# --------------------------------------------------------------------------- index


class _IndexProgress:
    """Draws engine events as a rich progress bar with rate and ETA.

    When stderr is not a terminal (a log file, cron, a pipe) the bar cannot redraw, so
    progress is written as a plain line now and then instead.
    """

    #: Seconds between plain progress lines when stderr is not a terminal.
    LOG_EVERY = 1.0

    def __init__(self, console: Console) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("Scanning", total=None, rate="")
        self._plain = not console.is_terminal
        self._last_line = 0.0

    def __enter__(self) -> _IndexProgress:
        if not self._plain:
            self.progress.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if self._plain:
            return
        if exc_type is not None:  # the error message says it all; a frozen bar would be noise
            self.progress.update(self.task, visible=False)
        self.progress.stop()

    def __call__(self, event: IndexEvent) -> None:
        # Lazy: --help does not import this (tests/test_imports.py).
        from clipseek.indexing import events as ev

        p = self.progress
        if isinstance(event, ev.ScanProgress):
            p.update(self.task, description=f"Scanning ({event.found} images found)")
        elif isinstance(event, ev.PlanReady):
            p.update(self.task, description="Embedding", total=event.to_embed or 1, completed=0)
            if event.to_embed == 0:
                p.update(self.task, description="Up to date", completed=1)
        elif isinstance(event, ev.ModelLoading):
            p.update(self.task, description=f"Loading {_safe(event.model)}")
        elif isinstance(event, ev.ModelReady):
            p.update(self.task, description=f"Embedding ({event.device}, {event.precision})")
        elif isinstance(event, ev.BatchDone):
            # A batch at 0 images/s went through no model: stored vectors of files whose
            # bytes the index already held (renamed, moved, copied, touched).
            reused = event.images_per_second == 0.0
            rate = "reused" if reused else f"{event.images_per_second:5.1f} img/s"
            p.update(self.task, completed=event.done, rate=rate)
            now = time.monotonic()
            if self._plain and (now - self._last_line >= self.LOG_EVERY or event.number == 1):
                self._last_line = now
                if reused:
                    line = (
                        f"{event.done} of {event.total} done (already indexed under another name)"
                    )
                else:
                    line = (
                        f"embedded {event.done} of {event.total} "
                        f"({event.images_per_second:.1f} images/s)"
                    )
                p.console.print(line)
        elif isinstance(event, ev.FileFailed):
            p.console.print(f"[yellow]skipped[/] {_safe(event.path)}: {_safe_text(event.reason)}")
        elif isinstance(event, ev.Notice):
            p.console.print(f"[cyan]note:[/] {_safe_text(event.message)}")


def _safe(path: str) -> str:
    """A path for rich: undecodable bytes and controls escaped under the one rule of
    clipseek.photos.pathtext (a name cannot drive the terminal), and no markup."""
    from rich.markup import escape

    return escape(display_path(path))


def _safe_text(text: str) -> str:
    """A message for rich (it may quote paths, shown or not): controls escaped, no markup."""
    from rich.markup import escape

    return escape(_printable(text))


@contextmanager
def _cancel_on_interrupt(console: Console) -> Iterator[threading.Event]:
    """First Ctrl-C asks the indexer to stop after the batch in flight; a second one quits."""
    cancel = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield cancel
        return

    def handler(signum: int, frame: object) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        console.print("[yellow]Stopping after the current batch… (Ctrl-C again to quit now)[/]")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


@app.command()
@friendly
def index(
    ctx: typer.Context,
    folders: Annotated[
        list[Path],
        typer.Argument(
            help="Folders to index (recursively).",
            show_default=False,
            autocompletion=complete_folder,
        ),
    ],
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Embed every file again, even unchanged ones.")
    ] = False,
    include_hidden: Annotated[
        bool, typer.Option("--include-hidden", help="Also index hidden files and folders.")
    ] = False,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            "-x",
            help="Skip paths matching this glob (repeatable).",
            show_default=False,
        ),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size",
            "-b",
            help="Images per model batch \\[default: 256 on a GPU, 32 on a CPU]. "
            "\\[env: CLIPSEEK_BATCH_SIZE]",
            show_default=False,
        ),
    ] = None,
    max_megapixels: Annotated[
        float | None,
        typer.Option(
            "--max-megapixels",
            help="Skip images larger than this \\[default: 200].",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            help="Decoder threads, 1 to 1024 (default: one per core).",
            show_default=False,
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            help="Model (torch) threads on a CPU, 1 to 1024 (default: tuned while indexing).",
            show_default=False,
        ),
    ] = None,
    skip_outside_links: Annotated[
        bool,
        typer.Option(
            "--skip-outside-links",
            help="Leave out folders and files reached through links that lead outside "
            "FOLDERS (they are listed either way).",
        ),
    ] = False,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="Runtime on a CPU: auto (measures ONNX Runtime against torch once per "
            "machine and keeps the faster), torch or onnx. A GPU always uses torch.",
        ),
    ] = "auto",
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait",
            help="If another clipseek index run is updating the same index, stop (exit 1) "
            "instead of waiting for it.",
        ),
    ] = False,
    model: ModelOpt = None,
    db: DbOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Embed the images under FOLDERS; later runs only touch what changed."""
    # Lazy: --help does not import this (tests/test_imports.py).
    from clipseek.indexing.options import IndexOptions

    settings = _settings(
        model=model,
        db=db,
        device=device,
        precision=precision,
        chroma_url=chroma_url,
        batch_size=batch_size,
        max_megapixels=max_megapixels,
    )
    settings.require("batch_size")
    engine = _engine(settings)
    # Lazy: --help does not import this (tests/test_imports.py).
    from clipseek.models.runtime import BACKENDS

    if backend not in BACKENDS:
        raise ConfigError(f"Unknown backend {backend!r}; use auto, torch or onnx.")
    engine.backend = backend
    options = IndexOptions.from_settings(
        settings,
        include_hidden=include_hidden,
        excludes=tuple(exclude or ()),
        rebuild=rebuild,
        decode_workers=thread_count(workers, "--workers"),
        torch_threads=thread_count(threads, "--threads"),
        skip_outside_links=skip_outside_links,
        # the console script has just compared this tree with the index and found changes
        quick_check=not (isinstance(ctx.obj, dict) and ctx.obj.get("quick_checked")),
    )
    err = _stderr()
    err.print(
        f"Indexing with [bold]{_safe(engine.spec.name)}[/] into {_safe(engine.store.location)}"
    )
    for note in (engine.model_notice(), engine.index_plan()):
        if note:
            err.print(f"[cyan]note:[/] {_safe(note)}")
    with _cancel_on_interrupt(err) as cancel, _IndexProgress(err) as progress:
        summary = engine.index(
            [str(f) for f in folders], options, on_event=progress, cancel=cancel, wait=not no_wait
        )
    _stdout().print(summary_line(summary))
    if summary.failed:
        err.print(f"[yellow]{failure_line(summary)}[/]")
    if summary.outside_links:
        err.print(f"[cyan]note:[/] {links_line(summary, skip_outside_links, _safe)}")
    if summary.cancelled:
        raise typer.Exit(130)
    _export_after_answer(engine, err)


# --------------------------------------------------------------------------- query


@app.command(epilog=QUERY_HELP)
@friendly
def query(
    ctx: typer.Context,
    terms: Annotated[
        list[str] | None,
        typer.Argument(
            help='What to look for, e.g. "a dog playing in the park".', show_default=False
        ),
    ] = None,
    image: Annotated[
        Path | None,
        typer.Option(
            "--image",
            "-i",
            help="Find images similar to this one.",
            show_default=False,
            autocompletion=complete_path,
        ),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="How many results.")] = 5,
    in_dir: Annotated[
        Path | None,
        typer.Option(
            "--in",
            help="Only images inside this folder.",
            show_default=False,
            autocompletion=complete_folder,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only, for scripts.")] = False,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save",
            help="Also write a contact sheet PNG and the JSON into this folder, or to "
            "this .png file (the JSON beside it).",
            show_default=False,
            autocompletion=complete_folder,
        ),
    ] = None,
    after: Annotated[
        str | None,
        typer.Option(
            "--after",
            help="Only pictures taken in or after this date: 2024, 2024-06 or 2024-06-15.",
            show_default=False,
        ),
    ] = None,
    before: Annotated[
        str | None,
        typer.Option(
            "--before",
            help="Only pictures taken before this date (same forms).",
            show_default=False,
        ),
    ] = None,
    camera: Annotated[
        str | None,
        typer.Option(
            "--camera",
            help="Only pictures from a camera whose name contains this.",
            show_default=False,
        ),
    ] = None,
    min_size: Annotated[
        str | None,
        typer.Option(
            "--min-size", help="Only pictures at least WIDTHxHEIGHT pixels.", show_default=False
        ),
    ] = None,
    sort: Annotated[
        str, typer.Option("--sort", help="Order the top results by score or by date taken.")
    ] = "score",
    model: ModelOpt = None,
    db: DbOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Search the index by text, by example image, or both."""
    # Lazy: --help does not import this (tests/test_imports.py).
    from clipseek.search.filters import make_filters

    check_top_k(top_k)
    check_sort(sort)
    filters = make_filters(after, before, camera, min_size)
    parts = list(terms or [])
    if image is None and not parts:
        raise QueryError(
            'Give a text to search for, e.g. clipseek query "a red car", or --image PATH.'
        )
    terms_list: list[QueryTerm] = []
    if image is not None:
        terms_list.extend(Query.image(str(image)).terms)
    if parts:
        terms_list.extend(parse_query(parts).terms)
    settings = _settings(
        model=model, db=db, device=device, precision=precision, chroma_url=chroma_url
    )
    engine = _engine(settings, interactive=True)
    response = engine.search(
        Query(tuple(terms_list)),
        top_k,
        in_dir=str(in_dir) if in_dir is not None else None,
        filters=filters,
        sort=sort,
    )
    for note in [engine.model_notice(), *response.notes]:
        if note:
            _stderr().print(f"[cyan]note:[/] {_safe_text(note)}")
    # Lazy: --help does not import this (tests/test_imports.py).
    from clipseek.models.calibration import calibrated_query

    # A text query's cosines are read on the model family's scale, as the app and the
    # web page read them (not one with a minus, nor a search by example).
    if calibrated_query(terms_list):
        response.calibration = engine.calibration()
    if as_json:
        sys.stdout.write(dumps(response.to_json()) + "\n")
    else:
        _print_results(response, by_date=sort == "date")
    sys.stdout.flush()  # the answer is out: what it cost is measured to here
    if isinstance(ctx.obj, dict) and ctx.obj.get("one_command"):
        _remember_cold_query(engine, calibrated_query(terms_list))
    if save is not None:
        # Lazy: --help does not import this (tests/test_imports.py).
        from clipseek.search.contact_sheet import save_results

        saved = save_results(response, save)
        _stderr().print(
            f"Saved the contact sheet to {_safe(str(saved.sheet))} "
            f"and the results to {_safe(str(saved.json))}"
        )
    _sweep_snapshots()
    _export_after_answer(engine)


def _remember_cold_query(engine: Engine, plain_text: bool) -> None:
    """Remember what this process cost, from its start to the answer, for `clipseek
    models`: only for a plain text query (`clipseek query "text"`, the default's rule (b)
    in docs/MODELS.md) answered through the fast path (the ONNX export, no torch), in a
    process that ran this one command (the console script), so that the figure is a cold
    query's. Written beside the exports, never into the index."""
    try:
        if not plain_text or not engine.model_loaded or "torch" in sys.modules:
            return
        if getattr(engine.model(), "backend", None) != "onnx":
            return
        from clipseek.models.runtime import process_cost, remember_cold_query

        cost = process_cost()
        if cost is not None:
            remember_cold_query(engine.spec, *cost)
    except Exception:  # the answer is out: a figure not kept must not fail the command
        pass


def _sweep_snapshots() -> None:
    """Remove the snapshots of reader processes that are gone (a server killed, an app
    that crashed): a query reads the index files directly and takes none, so without this
    they would wait in memory for the next reader that does."""
    from clipseek.store.snapshot import snapshot_bases, sweep

    sys.stdout.flush()  # the answer first
    for base in snapshot_bases():
        sweep(base)


def _export_after_answer(engine: Engine, err: Console | None = None) -> None:
    """After a query that had to load torch, export the ONNX fast path for the next one;
    a failure is said once (the engine remembers it), with the traceback under --debug."""
    if not engine.fast_path_pending():
        return
    err = err or _stderr()
    sys.stdout.flush()
    err.print("[dim]Preparing the fast path for later queries (once per model)…[/]")
    outcome = engine.export_fast_path()
    if outcome.exported is not None:
        err.print(f"[dim]Fast path ready ({outcome.exported:.0f} s, once per model).[/]")
    elif outcome.error:
        err.print(
            f"[yellow]The fast path could not be prepared: {_safe_text(outcome.error)} "
            "Queries keep working (more slowly).[/]"
        )
        if _debug_enabled() and outcome.detail:
            err.print(outcome.detail, markup=False, highlight=False)


def _print_results(response: SearchResponse, *, by_date: bool = False) -> None:
    from urllib.parse import quote

    from rich.table import Table

    out = _stdout()
    if not response.results:
        out.print("No results.")
        return
    shown_query = response.query if len(response.query) <= 120 else response.query[:117] + "..."
    table = Table(
        title=f"{_safe_text(shown_query)}  [dim]({_safe(response.model)})[/]",
        title_justify="left",
        expand=False,
    )
    table.add_column("#", justify="right", style="dim")
    table.add_column("score", justify="right", style="bold cyan")
    # When a camera recorded a date, or the results are in date order (the column is what
    # explains that order): file times alone sorted by score would take a path's width for
    # little (they stay in --json).
    dated = by_date or any(r.taken_source == "exif" for r in response.results)
    if dated:
        table.add_column("taken", no_wrap=True)
    table.add_column("path", overflow="fold")
    for result in response.results:
        shown = _safe(result.path)
        link = "file://" + quote(os.fsencode(result.path), safe="/")
        score = f"{result.score:.3f}"
        if response.calibration is not None:  # a text query: the word the app shows too
            score += f" [dim]{response.calibration.verdict(result.score)}[/]"
        cells = [str(result.rank), score]
        if dated:
            cells.append(_taken_cell(result.taken, result.taken_source))
        table.add_row(*cells, f"[link={link}]{shown}[/link]")
    out.print(table)


def _taken_cell(taken: str, source: str) -> str:
    """The date taken, to the minute; a file time (no date in the photo) says so, dimmed,
    in the words the app and the web page use."""
    text = taken[:16].replace("T", " ") if taken else ""
    return f"[dim]{text} file time[/]" if text and source != "exif" else text


# --------------------------------------------------------------------------- duplicates


@app.command()
@friendly
def duplicates(
    in_dir: Annotated[
        Path | None,
        typer.Option("--in", help="Only pictures inside this folder.", show_default=False),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="How alike two pictures must be (cosine similarity, up to 1) "
            "\\[default: the model family's, 0.95 for CLIP and SigLIP].",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only, for scripts.")] = False,
    model: ModelOpt = None,
    db: DbOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """List groups of near-duplicate pictures (bursts, resized copies, edits); deletes nothing."""
    # Lazy: --help does not import this (tests/test_imports.py).
    from clipseek.search.duplicates import check_threshold

    engine = _engine(_settings(model=model, db=db, chroma_url=chroma_url))
    if threshold is None:
        threshold = engine.calibration().duplicate_threshold
    check_threshold(threshold)
    groups = engine.duplicates(threshold, in_dir=str(in_dir) if in_dir is not None else None)
    if as_json:
        from clipseek.photos.pathtext import dumps

        payload = {"threshold": threshold, "groups": [g.to_json() for g in groups]}
        sys.stdout.write(dumps(payload) + "\n")  # exact names, as query --json writes them
        return
    out = _stdout()
    if not groups:
        out.print(f"No near-duplicates at similarity {threshold:g} or above.")
        return
    from rich.table import Table

    pictures = sum(len(g.items) for g in groups)
    out.print(f"{len(groups)} group(s), {pictures} pictures, at similarity {threshold:g} or above:")
    for number, group in enumerate(groups, start=1):
        table = Table(title=f"group {number}", title_justify="left", expand=False)
        table.add_column("similarity", justify="right", style="bold cyan")
        table.add_column("size", justify="right")
        table.add_column("pixels", justify="right")
        table.add_column("taken", no_wrap=True)
        table.add_column("path", overflow="fold")
        for item in group.items:
            pixels = f"{item.width}×{item.height}" if item.width and item.height else ""
            size = _file_size(item.size) if item.size else ""
            table.add_row(
                f"{item.similarity:.3f}",
                size,
                pixels,
                item.taken[:16].replace("T", " "),
                _safe(item.path),
            )
        out.print(table)


def _file_size(size: int) -> str:
    """A file size in the unit that reads best (13 KB, not 0.0 MB); decimal units, as the
    rest of the command line uses."""
    if size < 1000:
        return f"{size} B"
    if size < 999_500:
        return f"{size / 1e3:.0f} KB"
    if size < 999_950_000:
        return f"{size / 1e6:.1f} MB"
    return f"{size / 1e9:.1f} GB"


# --------------------------------------------------------------------------- info / models


def _human_path(path: str) -> str:
    home = str(Path.home())
    return "~" + path[len(home) :] if path.startswith(home + os.sep) else path


@app.command()
@friendly
def info(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
    model: ModelOpt = None,
    db: DbOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Where the index lives, which models built it, how many images, which folders."""
    # Lazy: --help does not import this (tests/test_imports.py).
    from clipseek.config import config_file_path

    settings = _settings(model=model, db=db, chroma_url=chroma_url)
    facts = _engine(settings).info()
    fast = _fast_paths(facts.indexes)
    if as_json:
        payload = {
            "location": facts.location,
            "remote": facts.remote,
            "config_file": str(config_file_path()),
            "model": facts.model,
            "model_source": facts.model_source,
            "indexes": [
                {
                    "model": i.model_name,
                    "model_key": i.model_key,
                    "dim": i.dim,
                    "images": i.count,
                    "roots": list(i.roots),
                    "created": i.created,
                    "fast_path": fast[i.model_key][0],
                    "fast_path_bytes": fast[i.model_key][1],
                }
                for i in facts.indexes
            ],
        }

        sys.stdout.write(dumps(payload) + "\n")
        return
    from rich.table import Table

    out = _stdout()
    out.print(
        f"[bold]Index[/]        {_safe(_human_path(facts.location))}"
        + (" (Chroma server)" if facts.remote else "")
    )
    out.print(f"[bold]Config file[/]  {_safe(_human_path(str(config_file_path())))}")
    out.print(f"[bold]Model[/]        {_safe(facts.model)} [dim]({facts.model_source})[/]")
    if not facts.indexes:
        out.print("\nNothing indexed yet. Run [bold]clipseek index FOLDER[/] to start.")
        return
    table = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    table.add_column("model")
    table.add_column("dims", justify="right")
    table.add_column("images", justify="right")
    table.add_column("fast path", justify="right")
    table.add_column("folders")
    for i in facts.indexes:
        table.add_row(
            _safe(i.model_name),
            str(i.dim),
            f"{i.count:,}",
            _fast_path_cell(*fast[i.model_key]),
            "\n".join(_safe(_human_path(r)) for r in i.roots) or "—",
        )
    out.print()
    out.print(table)


def _local_store(db: str | None, chroma_url: str | None) -> Any:

    store = _engine(_settings(db=db, chroma_url=chroma_url)).store
    if store.is_remote:
        raise StoreError(
            f"`clipseek check` and `repair` work on a local index folder; {store.location} is a "
            "Chroma server. Run them on the machine that serves it, with --db on its folder."
        )
    if not store.exists:
        raise IndexMissingError(
            f"There is no index at {store.location} yet. Run `clipseek index FOLDER` to build one."
        )
    return store


@app.command()
@friendly
def check(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
    full: Annotated[
        bool,
        typer.Option(
            "--full", help="Search for every vector, not 2,000 chosen at random (slow when large)."
        ),
    ] = False,
    db: DbOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Check the index without the model: records, vector files, metadata and the vector
    cache agree, and vectors find themselves. Exit 1 when damaged."""
    # Lazy: --help does not import this (tests/test_imports.py).
    from clipseek.store.repair import CHECK_SAMPLE
    from clipseek.store.repair import check as check_index

    report = check_index(_local_store(db, chroma_url), sample=None if full else CHECK_SAMPLE)
    if as_json:
        payload = {
            "location": report.location,
            "healthy": report.healthy,
            "images": report.records,
            "found_self": report.found_self,
            "missed_self": report.missed_self,
            "problems": report.problems,
            "repairable": report.repairable,
        }
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
        if not report.healthy:
            raise typer.Exit(1)
        return
    if not report.healthy:
        raise DamagedIndexError(report.sentence())
    _stdout().print(_safe_text(report.sentence()), highlight=False)


@app.command()
@friendly
def repair(
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild the vector files even if the check passes.")
    ] = False,
    db: DbOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Rebuild the vector files from the vectors the index stored, without the model or
    your images; the old files are moved aside, never deleted."""
    # Lazy: --help does not import this (tests/test_imports.py).
    from clipseek.store.repair import repair as repair_index

    err = _stderr()
    report = repair_index(
        _local_store(db, chroma_url),
        force=force,
        on_progress=lambda text: err.print(_safe_text(text)),
    )
    if report is None:
        _stdout().print(
            "The index is healthy; nothing to repair (--force rebuilds its vector files anyway).",
            highlight=False,
        )
        return
    _stdout().print(_safe_text(report.sentence()), highlight=False)
    if report.after is not None and not report.after.healthy:
        raise DamagedIndexError(report.after.sentence())


def _fast_path_cell(ready: bool, size: int) -> str:
    return f"[green]ready[/] {size / 1e6:,.0f} MB" if ready else "[dim]—[/]"


def _fast_paths(indexes: list[Any]) -> dict[str, tuple[bool, int]]:
    """Each index's model: is its ONNX export ready, and its size on disk."""
    # Lazy: --help does not import this (tests/test_imports.py).
    from clipseek.models import resolve_model
    from clipseek.models.export import export_status

    out: dict[str, tuple[bool, int]] = {}
    for i in indexes:
        try:
            out[i.model_key] = export_status(resolve_model(i.model_name))
        except ModelError:
            out[i.model_key] = (False, 0)
    return out


@app.command()
@friendly
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only.")] = False,
    model: ModelOpt = None,
    db: DbOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Suggested models: how well they find pictures, what they cost here, their licence
    and languages, which are on this machine, and which one is in use (and why)."""
    # Lazy: --help does not import these (tests/test_imports.py).
    from clipseek.cli.models_table import model_rows, render, rows_json
    from clipseek.errors import ClipseekError
    from clipseek.models.weights import hf_cache_dir

    settings = _settings(model=model, db=db, chroma_url=chroma_url)
    try:
        facts = _engine(settings).info()
        in_use, source = facts.model, facts.model_source
        from clipseek.models import resolve_model

        in_use_key: str | None = resolve_model(in_use).key
    except ClipseekError:  # a damaged index or a bad name: the table is still worth showing
        in_use, source, in_use_key = settings.model, "could not be checked", None
    rows = model_rows(in_use_key)
    if as_json:
        sys.stdout.write(json.dumps(rows_json(rows, source), ensure_ascii=False) + "\n")
        return
    lines = render(rows, in_use, source, DEFAULT_MODEL, _human_path(str(hf_cache_dir())))
    sys.stdout.write("\n".join(_printable(line) for line in lines) + "\n")


# --------------------------------------------------------------------------- serve


@app.command()
@friendly
def serve(
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="Address to listen on. The default answers this machine only; "
            "0.0.0.0 opens it to the network (there is no login).",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 8000,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="Another host name browsers may use to reach the server (repeatable); "
            "localhost names and the --host value are always accepted.",
            show_default=False,
        ),
    ] = None,
    max_megapixels: Annotated[
        float | None,
        typer.Option(
            "--max-megapixels",
            help="Refuse pictures larger than this, uploads included \\[default: 200 for "
            "indexed files, 50 for uploads].",
            show_default=False,
        ),
    ] = None,
    model: ModelOpt = None,
    db: DbOpt = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    chroma_url: ChromaOpt = None,
) -> None:
    """Serve the REST API and the web page (needs: pip install 'clipseek\\[serve]')."""
    # Lazy: --help does not import this (tests/test_imports.py).
    from clipseek import server

    server.check_installed()
    # Lazy: FastAPI; only `serve` needs it.
    from clipseek.server.app import ServerOptions

    settings = _settings(
        model=model,
        db=db,
        device=device,
        precision=precision,
        chroma_url=chroma_url,
        max_megapixels=max_megapixels,
    )
    engine = _serving_engine(settings)
    options = ServerOptions(
        host=host,
        allowed_hosts=tuple(allowed_host or ()),
        # uploads come from anyone who can reach the port: a lower cap unless one is given
        upload_max_megapixels=settings.max_megapixels if max_megapixels is not None else None,
    )

    err = _stderr()
    sock = server.bind(host, port)
    previous_term = None
    if threading.current_thread() is threading.main_thread():
        previous_term = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        err.print(f"Loading [bold]{_safe(engine.spec.name)}[/]…")
        engine.model()
        if engine.fast_path_pending():  # exported beside serving; the next start is fast
            threading.Thread(target=engine.export_fast_path, daemon=True).start()
        facts = engine.info()
        count = sum(i.count for i in facts.indexes if i.model_key == engine.spec.key)
        err.print(f"Index: {_safe(_human_path(facts.location))} ({count:,} images)")
        if not count:
            err.print(
                f"[yellow]Nothing is indexed with {_safe(engine.spec.name)} yet, so searches "
                "find nothing: run [bold]clipseek index FOLDER[/] (with the same --db and "
                "--model); this server picks up new images within seconds, no restart "
                "needed.[/]"
            )
        if not server.is_loopback(host):
            err.print(
                f"[yellow]Listening on {host}: anyone who can reach this machine can search "
                "the index and see the images. There is no login.[/]"
            )

        def ready(url: str) -> None:
            err.print(f"Serving on [bold]{url}[/] (API docs at {url}/docs). Ctrl-C stops.")

        def stopping(in_flight: int) -> None:
            if in_flight:
                err.print(
                    f"[yellow]Stopping: letting {in_flight} request(s) in flight finish "
                    f"(at most {server.GRACE_SECONDS} s; Ctrl-C again to stop now)…[/]"
                )
            else:
                err.print("[yellow]Stopping…[/]")

        try:
            stopped_by = server.serve(engine, sock, options, on_ready=ready, on_stopping=stopping)
        except KeyboardInterrupt:
            code = 130
        else:
            # Ctrl-C exits 130 whether or not uvicorn raised it again once it had stopped
            # (it does not always, on a busy machine).
            code = 130 if stopped_by == signal.SIGINT else 0
    except _Terminated:  # while loading, or raised again by uvicorn once it has stopped
        code = 128 + signal.SIGTERM
    finally:
        sock.close()
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
        _remove_own_snapshots()
    err.print("Stopped.")
    _exit_now(code)


class _Terminated(Exception):
    """SIGTERM, as ``clipseek serve`` receives it: uvicorn stops gracefully, then raises
    the signal again once its own handler is gone, which without this handler would end
    the process before it removed its snapshot."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise _Terminated


def _remove_own_snapshots() -> None:
    """The snapshots this process read through; :func:`_exit_now` skips the exit handler
    that would remove them."""
    chroma = sys.modules.get("clipseek.store.chroma")
    if chroma is not None:
        chroma.remove_own_snapshots()


def _exit_now(code: int) -> None:
    """Leave without tearing the model and the index down object by object: the
    interpreter's clean-up of torch and chromadb takes seconds after Ctrl-C, and a
    server (a reader) has nothing to write. Output is flushed first."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(*, quick_checked: bool = False) -> None:
    """Console-script entry point. ``quick_checked``: the tree of an ``index`` command was
    compared with the index before Typer was imported, and found changed
    (:mod:`clipseek.cli.quick`)."""
    started = time.perf_counter()
    try:
        # one_command: this process runs one command and ends (see _remember_cold_query).
        app(prog_name="clipseek", obj={"quick_checked": quick_checked, "one_command": True})
    except KeyboardInterrupt:
        _stderr().print(f"[yellow]Interrupted after {time.perf_counter() - started:.1f} s.[/]")
        sys.exit(130)
