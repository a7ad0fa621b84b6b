"""Python-side support for pybridge, the bridge that embeds this interpreter in the BEAM.

The native library executes this file as the module ``pybridge`` when the
interpreter starts, so Python code running under pybridge can ``import pybridge``.
The functions here are what the native executors call for the parts of a call
that are clearer in Python than in Rust: compiling source, formatting
tracebacks and reloading modules.
"""

from __future__ import annotations

import builtins
import importlib
import sys
import traceback
from types import CodeType, TracebackType

__all__ = ["Timeout", "compile_source", "format_exception", "reload"]

SOURCE_NAME = "<pybridge>"

# Taken once: user code may replace builtins.compile later.
_compile = builtins.compile


class Timeout(BaseException):
    """Raised inside a Python call whose BEAM caller stopped waiting for it.

    It derives from BaseException so that ``except Exception`` blocks in user
    code do not swallow the interruption.
    """


def compile_source(source: str | bytes, mode: str) -> CodeType:
    """Compiles code given to ``Py.eval`` (mode ``"eval"``) or ``Py.exec`` (``"exec"``)."""
    return _compile(source, SOURCE_NAME, mode)


def format_exception(exc: BaseException, tb: TracebackType | None = None) -> str:
    """The full traceback of ``exc``, as Python would print it."""
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))


def reload(name: str) -> None:
    """Re-imports ``name`` from disk, importing it if it was not loaded yet."""
    module = sys.modules.get(name)
    if module is None:
        importlib.import_module(name)
    else:
        importlib.reload(module)
