"""The command line: the entry point, the quick paths that answer before Typer is imported,
the Typer app, its help pages and its report lines. A thin layer over :mod:`clipseek.engine`."""

from __future__ import annotations

#: The app's options (as ``clipseek tui`` takes them) and the settings each one sets: read
#: by the entry point, which opens the app on them, and by the quick index path, which
#: accepts all but ``--preview``. Kept here, in the package every path imports anyway.
APP_OPTIONS = {
    "--preview": "preview",
    "--model": "model",
    "-m": "model",
    "--db": "db",
    "--device": "device",
    "--precision": "precision",
    "--chroma-url": "chroma_url",
}
