"""Run torchdiffeq's own test suite with its ``odeint`` swapped for ``parareal.odeint``.

The tests of torchdiffeq (the commit of release 0.2.5 by default, matching the installed
package) are read from a git directory, copied into a temporary folder, and every
``import torchdiffeq`` in them is pointed at a shim module: the real torchdiffeq with
``odeint`` replaced by a wrapper that calls :func:`parareal.odeint` with its defaults. Only the
tests see the shim, so ``parareal.TorchDiffEq`` (which calls the real ``torchdiffeq.odeint``
per slice) and ``torchdiffeq.odeint_adjoint`` are untouched.

Every unittest subtest (or test without subtests) is one case. A case is *applicable* when it
called the swapped ``odeint`` at least once; the others exercise only ``odeint_adjoint`` or
torchdiffeq internals, not odeint's semantics. Prints passed/failed/applicable, per test.

Usage::

    python benchmarks/torchdiffeq_suite.py --git-dir /path/to/torchdiffeq/.git
    python benchmarks/torchdiffeq_suite.py --tests-dir /path/to/torchdiffeq/tests

for instance after ``git clone https://github.com/rtqichen/torchdiffeq /tmp/torchdiffeq``:
``python benchmarks/torchdiffeq_suite.py --git-dir /tmp/torchdiffeq/.git -v --json cases.json``.

Not applicable: ``TestGradient.test_adjoint``, ``TestSolverError.test_adjoint``,
``TestCallbacks.test_steps``, ``test_adjoint_norm``, ``test_seminorm``,
``TestEventHandling.test_adjoint`` and the ``adjoint=True`` halves of ``TestDiscontinuities``
and ``TestGridConstructor`` call only ``odeint_adjoint``, which is not ours.

Last measured (CPU, float32 and float64) when ``odeint``'s default ``coarse_method`` was
still ``"euler"`` (it is ``"auto"`` now; not re-measured since): 476 of 518 applicable
subtests passed (42 failed, 122 not applicable). The run was split in two with ``-k``
(everything but ``TestSolverError.test_odeint``, then that test alone; about 45 minutes of one
core in all) and summarised with ``--from-json first.json second.json``. What failed, and why:

- ``TestCallbacks.test_wrong_callback`` (17): expects a warning that an unused step callback
  is ignored; ``odeint`` refuses step callbacks with a ``ValueError`` instead (by design).
- ``TestDiscontinuities.test_odeint_perturb``, ``perturb=True`` (14): refused (the coarse
  sweep evaluates ``func`` at slice boundaries). ``TestGridConstructor`` (1):
  ``grid_constructor`` refused.
- ``TestCompareAdjointGradient`` (4): on ``y' = y^3 A`` over ``[0, 25]`` the then default
  coarse method (one Euler step per slice of 1.56) overflowed and ``odeint`` raised
  ``DivergenceError`` (no wrong value returned).
- ``TestMinMaxStep`` (1): asserts fewer than 50 calls of ``func`` with ``min_step=2``;
  Parareal made 1606 (coarse sweeps, fine sweeps, the fill-in pass): cost, not a wrong value.
- ``TestEventHandling.test_odeint``, ``bosh3`` on ``sine`` (2): the event state ``2e-4`` off
  in relative terms against the test's ``1e-4`` (bosh3 restarted at every slice boundary).
- ``TestSolverError.test_odeint`` (3): ``bosh3`` on ``linear`` (``5.6e-3`` relative error
  against ``4e-3``) and reversed float32 ``dopri8`` on ``sine`` (``2.3e-3`` against
  ``3e-4``): the adaptive solver restarted at every slice boundary loses accuracy that
  torchdiffeq's single uninterrupted solve keeps.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import unittest
import warnings
from pathlib import Path
from typing import Any

#: torchdiffeq's commit "upd version" that set ``__version__ = "0.2.5"``.
COMMIT_0_2_5 = "a88aac53cae738addee44251288ce5be9a018af3"
MODULES = ("api_tests", "event_tests", "gradient_tests", "norm_tests", "odeint_tests")
FILES = (*MODULES, "problems")

SHIM = '''"""torchdiffeq, its odeint swapped for parareal.odeint (torchdiffeq_suite.py)."""
import torchdiffeq as _real
import parareal

CALLS = [0]


def __getattr__(name):
    return getattr(_real, name)


def odeint(func, y0, t, *, rtol=1e-7, atol=1e-9, method=None, options=None, event_fn=None):
    CALLS[0] += 1
    return parareal.odeint(func, y0, t, rtol, atol, method, options, event_fn=event_fn)


odeint_adjoint = _real.odeint_adjoint
odeint_event = _real.odeint_event
'''


def _copy_tests(dest: Path, git_dir: str | None, commit: str, tests_dir: str | None) -> None:
    for name in FILES:
        if tests_dir is not None:
            text = (Path(tests_dir) / f"{name}.py").read_text()
        else:
            text = subprocess.run(
                ["git", f"--git-dir={git_dir}", "show", f"{commit}:tests/{name}.py"],
                check=True, capture_output=True, text=True,
            ).stdout
        text = re.sub(r"^import torchdiffeq$", "import _parareal_torchdiffeq as torchdiffeq",
                      text, flags=re.MULTILINE)
        (dest / f"{name}.py").write_text(text)
    (dest / "_parareal_torchdiffeq.py").write_text(SHIM)


class _Counting(unittest.TestResult):
    """Records one outcome per subtest (or per test without subtests), with applicability."""

    def __init__(self, calls: list[int], verbose: bool, path: str | None) -> None:
        super().__init__()
        self.calls = calls
        self.verbose = verbose
        self.path = path
        self.cases: list[dict[str, Any]] = []
        self._mark = 0
        self._clock = 0.0
        self._subtests = 0

    def _record(self, test: Any, name: str, outcome: str, detail: str = "") -> None:
        applicable = self.calls[0] > self._mark
        now = time.perf_counter()
        case = {"test": test.id(), "case": name, "outcome": outcome,
                "applicable": applicable, "seconds": round(now - self._clock, 2),
                "detail": detail[-300:]}
        self.cases.append(case)
        if self.path:  # after every case: a run cut short still leaves what it did
            Path(self.path).write_text(json.dumps(self.cases, indent=1))
        if self.verbose:
            print(f"{outcome:7s} {'A' if applicable else '-'} {case['seconds']:7.2f}s "
                  f"{name} {detail.strip().splitlines()[-1] if detail else ''}", flush=True)
        self._mark = self.calls[0]
        self._clock = now

    def startTest(self, test: Any) -> None:  # noqa: N802 - unittest's hook name
        super().startTest(test)
        self._mark = self.calls[0]
        self._clock = time.perf_counter()
        self._subtests = 0

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:  # noqa: N802
        self._subtests += 1
        outcome = "passed" if err is None else (
            "failed" if issubclass(err[0], test.failureException) else "error")
        detail = "" if err is None else self._exc_info_to_string(err, test)
        self._record(test, subtest.id(), outcome, detail)

    def addSuccess(self, test: Any) -> None:  # noqa: N802
        if self._subtests == 0:
            self._record(test, test.id(), "passed")

    def addFailure(self, test: Any, err: Any) -> None:  # noqa: N802
        self._record(test, test.id(), "failed", self._exc_info_to_string(err, test))

    def addError(self, test: Any, err: Any) -> None:  # noqa: N802
        self._record(test, test.id(), "error", self._exc_info_to_string(err, test))

    def addSkip(self, test: Any, reason: str) -> None:  # noqa: N802
        self._record(test, test.id(), "skipped", reason)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--git-dir", default=os.environ.get("TORCHDIFFEQ_GIT_DIR"),
                        help="git directory of a torchdiffeq clone (bare is fine)")
    parser.add_argument("--commit", default=COMMIT_0_2_5, help="commit to take tests from")
    parser.add_argument("--tests-dir", help="a torchdiffeq tests/ folder instead of git")
    parser.add_argument("-k", dest="pattern", default="",
                        help="run only test ids matching this regular expression")
    parser.add_argument("--json", help="write every case's outcome to this file")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per case")
    parser.add_argument("--from-json", nargs="+", metavar="FILE",
                        help="only summarise the cases of earlier --json files (runs split "
                             "with -k); a case in several files counts once, the last one")
    args = parser.parse_args(argv)
    if args.from_json:
        merged: dict[tuple[str, int], dict[str, Any]] = {}
        for name in args.from_json:
            seen: collections.Counter[str] = collections.Counter()
            for case in json.loads(Path(name).read_text()):  # some subtests share an id
                seen[case["case"]] += 1
                merged[case["case"], seen[case["case"]]] = case
        summarize(list(merged.values()))
        return 0
    if args.git_dir is None and args.tests_dir is None:
        parser.error("give --git-dir (or TORCHDIFFEQ_GIT_DIR) or --tests-dir")

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        _copy_tests(Path(tmp), args.git_dir, args.commit, args.tests_dir)
        sys.path.insert(0, tmp)
        shim = importlib.import_module("_parareal_torchdiffeq")
        suite = unittest.TestSuite()
        loader = unittest.TestLoader()
        for name in MODULES:
            for test in _flatten(loader.loadTestsFromModule(importlib.import_module(name))):
                if re.search(args.pattern, test.id()):
                    suite.addTest(test)
        result = _Counting(shim.CALLS, args.verbose, args.json)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            suite.run(result)
        seconds = time.perf_counter() - start

    summarize(result.cases, seconds)
    return 0


def summarize(cases: list[dict[str, Any]], seconds: float | None = None) -> tuple[int, int]:
    """Print passed/applicable per test and in all; return ``(passed, applicable)``."""
    per_test: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for case in cases:
        key = "applicable" if case["applicable"] else "not applicable"
        per_test[case["test"]][key] += 1
        if case["applicable"]:
            per_test[case["test"]][case["outcome"]] += 1
    print(f"{'test':70s} {'passed':>7s} {'applic.':>7s} {'n/a':>5s}")
    for test, counts in per_test.items():
        print(f"{test:70s} {counts['passed']:7d} {counts['applicable']:7d} "
              f"{counts['not applicable']:5d}")
    applicable = [c for c in cases if c["applicable"]]
    passed = sum(c["outcome"] == "passed" for c in applicable)
    took = "" if seconds is None else f"; {seconds:.0f} s"
    print(f"passed {passed} / applicable {len(applicable)} "
          f"(failed {len(applicable) - passed}; not applicable "
          f"{len(cases) - len(applicable)}{took})")
    return passed, len(applicable)


def _flatten(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    out: list[unittest.TestCase] = []
    for item in suite:
        out.extend(_flatten(item) if isinstance(item, unittest.TestSuite) else [item])
    return out


if __name__ == "__main__":
    sys.exit(main())
