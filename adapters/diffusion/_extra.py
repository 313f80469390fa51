"""The error for a missing optional dependency of the diffusion adapter."""

from __future__ import annotations

__all__ = ["INSTALL_HINT", "import_failure", "missing"]

#: How to install every dependency of the diffusion adapter.
INSTALL_HINT = "pip install 'parareal[diffusion]'"


def missing(package: str, needed_by: str, error: BaseException) -> ImportError:
    """An ``ImportError`` saying that ``needed_by`` needs ``package`` and how to install it.

    Raise it ``from error``, the original import failure.
    """
    cause = import_failure(error) or error
    return ImportError(
        f"{needed_by} needs {package}, which cannot be imported ({cause}); install the "
        f"diffusion extra: {INSTALL_HINT}"
    )


def import_failure(error: BaseException) -> ImportError | None:
    """The ``ImportError`` at the root of ``error``'s chain of causes, if there is one."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ImportError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
