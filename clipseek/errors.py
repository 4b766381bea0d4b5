"""Errors that carry a message meant for the person at the keyboard.

Every front end (CLI, TUI, server) shows a :class:`ClipseekError` as its message
alone, without a traceback: the message must already say what went wrong and
what to do about it. Anything else escaping the engine is a bug.
"""

from __future__ import annotations


class ClipseekError(Exception):
    """A failure the user can understand and fix; ``str(err)`` is shown verbatim."""


class ConfigError(ClipseekError):
    """A setting (flag, environment variable or config file) has an unusable value."""


class ModelError(ClipseekError):
    """The requested model is unknown or cannot be built."""


class WeightsUnavailableError(ModelError):
    """The model's weights are not on this machine and could not be downloaded."""


class DeviceError(ClipseekError):
    """The requested compute device is not available."""


class StoreError(ClipseekError):
    """The vector store cannot be opened, read or written."""


class DamagedIndexError(StoreError):
    """The index files are damaged; ``clipseek index --rebuild`` recovers from the images."""


class IndexBusyError(StoreError):
    """Another process is writing to the index and the user asked not to wait."""


class IndexMissingError(StoreError):
    """There is no index yet for the requested model."""


class ModelMismatchError(StoreError):
    """The index was built with a different model than the one requested."""


class QueryError(ClipseekError):
    """The query cannot be run as written."""


class ImageReadError(ClipseekError):
    """One image could not be read; indexing reports it and moves on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
