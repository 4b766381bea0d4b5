"""clipseek: semantic image search for the terminal.

The package root stays import-light on purpose: ``clipseek --help`` and the
TUI's first paint must not pay for torch, open_clip or chromadb (nor for
reading the installed metadata: ``__version__`` is looked up when first asked for).
"""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            value = version("clipseek")
        except PackageNotFoundError:  # a source tree that was never installed
            value = "0.0.0+unknown"
        globals()["__version__"] = value
        return value
    raise AttributeError(f"module 'clipseek' has no attribute {name!r}")
