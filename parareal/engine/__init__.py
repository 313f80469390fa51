"""The Parareal engine: the iteration, its schedules and the tick driver."""

from .driver import Driver
from .parareal import SCHEDULES, run_parareal

__all__ = ["SCHEDULES", "Driver", "run_parareal"]
