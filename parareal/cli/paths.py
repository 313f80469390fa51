"""Checks on output paths, done before any long work starts."""

from __future__ import annotations

import os

__all__ = ["check_writable"]


def check_writable(path: str, what: str) -> None:
    """Raise ``OSError`` unless ``path`` names a file that can be written (``what`` names it)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise OSError(
            f"cannot write {what} to {path!r}: folder {folder!r} does not exist or is not writable"
        )
    if os.path.isdir(path):
        raise OSError(f"cannot write {what} to {path!r}: it is a folder")
