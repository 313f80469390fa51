"""The diffusion methods, one module each (:mod:`.serial`, :mod:`.srds`, :mod:`.picard`,
:mod:`.picard_exact`), their common base (:mod:`.base`) and the registry derived from their
classes (:mod:`.registry`)."""

from .base import TOL_MODES, Chunk, Method
from .picard import Picard
from .picard_exact import ExactPicard
from .registry import (
    AUTO,
    DEFAULT_TOL,
    METHOD_OPTIONS,
    METHODS,
    REGISTRY,
    check_method_options,
)
from .serial import Serial
from .srds import (
    SRDS,
    STOP_RULES,
    default_blocks,
    should_stop,
    srds_block_options,
    srds_lookahead,
)

__all__ = [
    "AUTO",
    "DEFAULT_TOL",
    "METHODS",
    "METHOD_OPTIONS",
    "REGISTRY",
    "SRDS",
    "STOP_RULES",
    "TOL_MODES",
    "Chunk",
    "ExactPicard",
    "Method",
    "Picard",
    "Serial",
    "check_method_options",
    "default_blocks",
    "should_stop",
    "srds_block_options",
    "srds_lookahead",
]
