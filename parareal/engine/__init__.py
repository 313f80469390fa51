"""The Parareal engine: the iteration, its schedules and the tick driver."""

from .driver import Driver
from .parareal import run_parareal
from .spec import DEFAULT_LOOKAHEAD, SCHEDULES, RunSpec

__all__ = ["DEFAULT_LOOKAHEAD", "SCHEDULES", "Driver", "RunSpec", "run_parareal"]
