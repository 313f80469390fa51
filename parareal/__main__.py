"""``python -m parareal``: the ``parareal`` command line."""

import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load
    print("parareal: interrupted", file=sys.stderr)
    raise SystemExit(130) from None

raise SystemExit(main())
