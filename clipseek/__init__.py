"""clipseek: semantic image search for the terminal.

The package root stays import-light on purpose: ``clipseek --help`` and the
TUI's first paint must not pay for torch, open_clip or chromadb.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("clipseek")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
