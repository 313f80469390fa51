"""Error messages in the command line's words: its flags, not the Python arguments.

The commands check what they can before the work, naming the flag themselves. A few errors
can only come from the library once the work has started (a checkpoint that turns out to be
another run's, CUDA that is missing); :func:`in_flags` rewrites the Python names in those.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence

__all__ = ["CUDA_FLAGS", "in_flags", "in_flags_raised", "named"]

#: ``cuda-streams`` without CUDA: the library's words for the backends, as flags.
CUDA_FLAGS: tuple[tuple[str, str], ...] = (
    (r"^backend 'cuda-streams'", "--backend cuda-streams"),
    (r"backend='threads' \(parareal\.backends\.Threads\)", "--backend threads"),
)


def in_flags(message: str, replacements: Sequence[tuple[str, str]]) -> str:
    """``message`` with each regular expression of ``replacements`` replaced, in order.

    The patterns are the library's exact phrases (``^``-anchored where the message starts
    with the argument's name), so that nothing else in a message, a path say, is touched.

    Parameters
    ----------
    message : str
        The library's message.
    replacements : sequence of (pattern, replacement)
        Regular expressions and the flag text that replaces them.

    Returns
    -------
    str
    """
    for pattern, replacement in replacements:
        message = re.sub(pattern, replacement, message)
    return message


@contextlib.contextmanager
def in_flags_raised(replacements: Sequence[tuple[str, str]]) -> Iterator[None]:
    """Re-raise a ValueError raised inside with its message :func:`in_flags` (unchanged when
    no pattern matches).

    Parameters
    ----------
    replacements : sequence of (pattern, replacement)
        As for :func:`in_flags`.
    """
    try:
        yield
    except ValueError as exc:
        message = in_flags(str(exc), replacements)
        if message == str(exc):
            raise
        raise ValueError(message) from exc


@contextlib.contextmanager
def named(flag: str) -> Iterator[None]:
    """Prefix ``flag: `` to the message of a ValueError or OSError raised inside (a check of
    the option's value whose message says what is wrong but not which option it is).

    Parameters
    ----------
    flag : str
        The flag, e.g. ``"--out"``.
    """
    try:
        yield
    except (ValueError, OSError) as exc:
        kind = OSError if isinstance(exc, OSError) else ValueError
        raise kind(f"{flag}: {exc}") from exc
