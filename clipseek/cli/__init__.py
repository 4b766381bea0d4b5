"""The command line: the entry point, the quick paths that answer before Typer is imported,
the Typer app, its help pages and its report lines. A thin layer over :mod:`clipseek.engine`."""
