"""``python -m parareal``: the ``parareal`` command line."""

from .cli import main

raise SystemExit(main())
