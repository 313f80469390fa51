"""Atomic file writes: readers see the old file or the complete new one, never a part."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str, *, durable: bool = False) -> Iterator[str]:
    """Context manager: write to the yielded temporary path; on success it becomes ``path``.

    The temporary file is in ``path``'s folder and has the same extension (writers such as
    ``savefig`` or ``PIL.Image.save`` pick the format from it). When the ``with`` block ends
    normally the file is moved onto ``path`` with :func:`os.replace` (atomic: readers see the
    old file or the complete new one); when it raises, ``KeyboardInterrupt`` included, the
    temporary file is removed and ``path`` is left as it was. The new file gets the usual
    permissions (``0o666`` less the umask). ``durable=True`` also flushes the file and the
    rename to the disk (``fsync``), so that a crash of the machine leaves one of the two too.

    Examples
    --------
    >>> import os, tempfile
    >>> from parareal.atomic import atomic_path
    >>> target = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_path(target) as tmp:
    ...     with open(tmp, "w") as fh:
    ...         _ = fh.write("done")
    >>> open(target).read()
    'done'
    """
    folder = os.path.dirname(os.path.abspath(path))
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".part{ext}", dir=folder)
    os.close(fd)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    if durable:
        _fsync(folder)


def _fsync(path: str) -> None:
    """Flush a file's or a folder's data to the disk (a no-op where that is not possible)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
