"""bitfsck's exceptions: one bitfsck.Error, a subclass per C++ ErrorKind (io/error.hpp)."""
from __future__ import annotations


class Error(Exception):
    """Any error the libraries raise. ``str(e)`` is their one-line message (it names the file);
    ``kind`` is the C++ ErrorKind ("usage", "unreadable", "file", "output", "cancelled",
    "model", "other"), ``file`` and ``tensor`` what it is about ("" when nothing)."""

    kind = "other"

    def __init__(self, message: str = "", file: str = "", tensor: str = "", kind: str | None = None):
        super().__init__(message)
        self.message = message
        self.file = file
        self.tensor = tensor
        if kind is not None:
            self.kind = kind


class UsageError(Error, ValueError):
    """The request itself is wrong: a bad option value, an unknown threshold or tensor."""
    kind = "usage"


class UnreadableError(Error):
    """An input is not what it claims to be: truncated, corrupted, hostile, another format."""
    kind = "unreadable"


class FileError(Error, OSError):
    """The operating system refused an input: missing, permissions."""
    kind = "file"


class OutputError(Error, OSError):
    """An output could not be written."""
    kind = "output"


class Cancelled(Error):
    """The progress callback returned False."""
    kind = "cancelled"


class ModelError(Error):
    """A checkpoint that cannot be made into a model."""
    kind = "model"


class CollapseError(Error):
    """Raised by bitfsck.watch.CollapseWatch(on_collapse="raise") at the first sign of collapse;
    ``event`` holds what the watch found (see CollapseEvent)."""
    kind = "collapse"

    def __init__(self, message: str, event=None):
        super().__init__(message)
        self.event = event


_BY_KIND = {c.kind: c for c in (Error, UsageError, UnreadableError, FileError, OutputError, Cancelled, ModelError)}


def _from_kind(kind: str, message: str, file: str, tensor: str) -> Error:
    """Called by the extension module to build the exception of a C++ bitfsck::Error."""
    cls = _BY_KIND.get(kind, Error)
    return cls(message, file, tensor, kind)
