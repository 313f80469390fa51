"""Run by tests/test_concurrency_process.py: a long solve, to be interrupted with SIGINT.

argv: backend name, marker directory. The first call of ``f`` in each process and thread
writes a file named ``PID-THREAD`` there; the test sends SIGINT once a worker has written one.
"""

import os
import sys
import threading
import time

import numpy as np

import parareal
from parareal import RK4, Euler


def main():
    backend, marks = sys.argv[1], sys.argv[2]

    def f(t, y):
        mark = os.path.join(marks, f"{os.getpid()}-{threading.current_thread().name}")
        if not os.path.exists(mark):
            with open(mark, "w"):
                pass
        time.sleep(0.01)
        return -y

    try:
        parareal.solve(f, np.ones(2), (0, 1), coarse=Euler(1), fine=RK4(2000), slices=8,
                       backend=backend)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(130)
    sys.exit(0)


if __name__ == "__main__":
    main()
