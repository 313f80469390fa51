"""``--threads N``: the number of threads of torch and of the BLAS/OpenMP libraries.

On a small or shared machine the libraries' default (one thread per core, each) makes
threads fight over the cores: a small model or matrix then runs many times slower than on one
thread. :func:`set_threads` is what ``--threads`` does, before the command's work starts;
``parareal sample`` applies it to torch again once it has loaded torch (``parareal solve``
never imports torch for it).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from ..validation import check_int

__all__ = ["THREAD_VARIABLES", "set_threads"]

#: Environment variables read by OpenMP, OpenBLAS, MKL, Apple Accelerate and numexpr when
#: they are loaded.
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def set_threads(n: Any, *, torch: bool = False) -> dict[str, Any]:
    """Limit this process to ``n`` threads per library, as far as can still be done, without
    importing torch unless asked to.

    1. Sets the :data:`THREAD_VARIABLES` to ``n`` in ``os.environ``: they apply to every
       library loaded from now on (torch's intra-op pool and scipy's BLAS when they are
       imported later, subprocesses), not to one already loaded.
    2. ``torch.set_num_threads(n)`` if torch is already imported, or if ``torch`` is true and
       torch is installed (it is imported then). Importing torch takes seconds, so a command
       that may not need it (``parareal solve``) passes ``torch=False``: a torch loaded later
       takes its thread count from ``OMP_NUM_THREADS``, set in step 1.
    3. If threadpoolctl is installed (it comes with scikit-learn, part of the ``diffusion``
       extra): ``threadpoolctl.threadpool_limits(n)``, which also limits the BLAS and OpenMP
       pools already loaded, numpy's included. Without it numpy's own BLAS keeps the thread
       count it was loaded with: set ``OMP_NUM_THREADS`` (or ``OPENBLAS_NUM_THREADS``) in the
       shell for that. The bundled ``parareal solve`` problems are elementwise numpy and do not
       use BLAS.

    Parameters
    ----------
    n : int
        Threads, ``>= 1``.
    torch : bool, optional
        Import torch (where installed) to set its thread count even if it is not loaded yet.
        Default ``False``: torch is set only if it is already imported.

    Returns
    -------
    dict
        What was set: ``{"threads": n, "torch": n or None, "threadpoolctl": bool}``;
        ``"torch"`` is ``None`` when torch was not set (not loaded, or not installed).

    Raises
    ------
    TypeError, ValueError
        If ``n`` is not an int ``>= 1``.
    """
    n = check_int(n, "threads")
    for name in THREAD_VARIABLES:
        os.environ[name] = str(n)
    done: dict[str, Any] = {"threads": n, "torch": None, "threadpoolctl": False}
    module = _optional("torch") if torch else sys.modules.get("torch")
    if module is not None:
        module.set_num_threads(n)
        done["torch"] = module.get_num_threads()
    threadpoolctl = _optional("threadpoolctl")
    if threadpoolctl is not None:
        threadpoolctl.threadpool_limits(limits=n)
        done["threadpoolctl"] = True
    return done


def _optional(name: str) -> Any:
    """The module ``name`` if it is installed and imports, else ``None`` (never raises)."""
    if name in sys.modules:
        return sys.modules[name]
    try:
        if importlib.util.find_spec(name) is None:
            return None
        return importlib.import_module(name)
    except Exception:  # a broken install is as good as none for this purpose
        return None
