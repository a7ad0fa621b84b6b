"""Python-side support for pybridge, the bridge that embeds this interpreter in the BEAM.

The native library executes this file as the module ``pybridge`` when the
interpreter starts, so Python code running under pybridge can ``import pybridge``.
The functions here are what the native executors call for the parts of a call
that are clearer in Python than in Rust: formatting tracebacks and reloading
modules. The executors keep the functions they were defined as (and compile
code with the ``compile`` builtin taken at start-up), so replacing this
module's attributes changes nothing the bridge does.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from types import TracebackType

__all__ = ["Timeout", "format_exception", "reload"]


class Timeout(BaseException):
    """Raised inside a Python call whose BEAM caller stopped waiting for it.

    It derives from BaseException so that ``except Exception`` blocks in user
    code do not swallow the interruption.
    """


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
