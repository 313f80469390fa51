"""Output files: checks done before any long work starts, and atomic writes.

A command checks every output path first (:func:`check_writable`, :func:`check_extension`), so
that a bad path fails in a second, not after the work; then it writes each file through
:func:`atomic_path`, so that an interrupted or failed write never leaves a partial file.
"""

from __future__ import annotations

import os
from collections.abc import Collection

from ..atomic import atomic_path

__all__ = ["atomic_path", "check_extension", "check_writable"]


def check_writable(path: str, what: str) -> None:
    """Raise unless ``path`` names a file that can be written (``what`` names it in messages).

    Raises
    ------
    ValueError
        If ``path`` is empty.
    OSError
        If its folder does not exist or is not writable, if ``path`` is a folder, or if it is
        an existing file that is not writable.
    """
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"the path of {what} is empty: give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise OSError(
            f"cannot write {what} to {path!r}: folder {folder!r} does not exist or is not writable"
        )
    if os.path.isdir(path):
        raise OSError(f"cannot write {what} to {path!r}: it is a folder")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise OSError(f"cannot write {what} to {path!r}: the file is read-only")


def check_extension(path: str, formats: Collection[str], what: str) -> str:
    """Return the lower-case extension of ``path`` (without the dot) if it is in ``formats``.

    The extension names the file format; a missing one is refused rather than guessed, so that
    the file written is always the file named.

    Raises
    ------
    ValueError
        If ``path`` has no extension or one not in ``formats`` (the message lists them).
    """
    allowed = ", ".join(sorted(formats))
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if not ext:
        raise ValueError(
            f"{what} {path!r} has no file extension; add one to name the format ({allowed})"
        )
    if ext not in formats:
        raise ValueError(f"{what} {path!r}: unknown format {ext!r}; use one of {allowed}")
    return ext
