"""Parse documented script command lines with each script's own argument parser, run nothing.

Usage: ``python parse_only.py JSON`` where JSON is a list of ``[script, [args...]]``. Each
script runs as ``__main__`` until its parser has parsed the arguments; then it is stopped.
Prints one line per command line that its parser refused, and exits 1 if there was any.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys


class Parsed(Exception):
    """Raised once the script's parser accepted its arguments."""


def main() -> int:
    real = argparse.ArgumentParser.parse_args
    parsers_seen: list[argparse.ArgumentParser] = []

    def parse_then_stop(self, args=None, namespace=None):
        result = real(self, args, namespace)
        parsers_seen.append(self)
        raise Parsed(result)

    argparse.ArgumentParser.parse_args = parse_then_stop  # type: ignore[method-assign]
    failed = 0
    for script, args in json.loads(sys.argv[1]):
        sys.argv = [script, *args]
        try:
            runpy.run_path(script, run_name="__main__")
        except Parsed:
            continue
        except SystemExit as exc:
            print(f"{script} {' '.join(args)}: refused by its parser (exit {exc.code})")
        else:
            print(f"{script} {' '.join(args)}: never parsed its arguments")
        failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
