"""The ``parareal`` command line: ``parareal solve PROBLEM ...`` and ``parareal sample``."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
