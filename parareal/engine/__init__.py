"""The Parareal engine: the iteration, its schedules and the tick driver."""

from .driver import Driver
from .parareal import DEFAULT_LOOKAHEAD, SCHEDULES, run_parareal

__all__ = ["DEFAULT_LOOKAHEAD", "SCHEDULES", "Driver", "run_parareal"]
