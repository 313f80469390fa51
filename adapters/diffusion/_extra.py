"""The error for a missing optional dependency of the diffusion adapter."""

from __future__ import annotations

__all__ = ["INSTALL_HINT", "missing"]

#: How to install every dependency of the diffusion adapter.
INSTALL_HINT = "pip install 'parareal[diffusion]'"


def missing(package: str, needed_by: str, error: ImportError) -> ImportError:
    """An ``ImportError`` saying that ``needed_by`` needs ``package`` and how to install it.

    Raise it ``from error``, the original import failure.
    """
    return ImportError(
        f"{needed_by} needs {package}, which cannot be imported ({error}); install the "
        f"diffusion extra: {INSTALL_HINT}"
    )
