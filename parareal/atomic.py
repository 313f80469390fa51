"""Atomic file writes: readers see the old file or the complete new one, never a part."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

__all__ = ["atomic_path", "name_max", "probe_writable", "write_target"]

_RANDOM = 8  # the characters tempfile.mkstemp puts between prefix and suffix
_FALLBACK_NAME_MAX = 255


def write_target(path: str) -> str:
    """The file a write to ``path`` replaces: ``path`` itself, or for a symbolic link the file
    it points to (so that the link stays and its target gets the new contents)."""
    return os.path.realpath(path) if os.path.islink(path) else os.path.abspath(path)


def name_max(folder: str) -> int:
    """The longest file name (in bytes) the file system of ``folder`` accepts (255 where it
    cannot be asked, e.g. a folder that does not exist)."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return _FALLBACK_NAME_MAX


def _temporary_name(target: str) -> tuple[str, str, str]:
    """Folder, prefix and suffix of the temporary file for ``target``: ``.BASE.XXXXXXXX.partEXT``
    with ``BASE`` shortened so that the name fits the file system's limit."""
    folder = os.path.dirname(target)
    base, ext = os.path.splitext(os.path.basename(target))
    limit = name_max(folder)
    fixed = len(".") + len(".") + _RANDOM + len(".part")
    if fixed + len(os.fsencode(ext)) > limit:
        ext = ""  # an extension too long to keep: the temporary file goes without it
    room = limit - fixed - len(os.fsencode(ext))
    while len(os.fsencode(base)) > room:
        base = base[:-1]
    return folder, f".{base}.", f".part{ext}"


def probe_writable(path: str) -> None:
    """Create and remove the temporary file that :func:`atomic_path` would write for ``path``.

    Raises
    ------
    OSError
        If it cannot be created there (a read-only or special file system such as ``/proc``,
        a missing folder, a name too long...).
    """
    folder, prefix, suffix = _temporary_name(write_target(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.close(fd)
    os.remove(tmp)


@contextlib.contextmanager
def atomic_path(path: str, *, durable: bool = False) -> Iterator[str]:
    """Context manager: write to the yielded temporary path; on success it becomes ``path``.

    The temporary file is in ``path``'s folder and has the same extension (writers such as
    ``savefig`` or ``PIL.Image.save`` pick the format from it). When the ``with`` block ends
    normally the file is moved onto ``path`` with :func:`os.replace` (atomic: readers see the
    old file or the complete new one); when it raises, ``KeyboardInterrupt`` included, the
    temporary file is removed and ``path`` is left as it was. A symbolic link is written
    through: the file it points to is replaced (next to it, atomically) and the link stays.
    The temporary file's name is shortened where needed to fit the file system's limit on
    names. The new file gets the usual permissions (``0o666`` less the umask).
    ``durable=True`` also flushes the file and the rename to the disk (``fsync``), so that a
    crash of the machine leaves one of the two too.

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
    target = write_target(path)
    folder, prefix, suffix = _temporary_name(target)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        if durable:
            _fsync(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
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
