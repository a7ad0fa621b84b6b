"""Python-side support for pybridge, the bridge that embeds this interpreter in the BEAM.

The native library executes this file as the module ``pybridge`` when the
interpreter starts, so Python code running under pybridge can ``import pybridge``.
The functions here are what the native executors call for the parts of a call
that are clearer in Python than in Rust: formatting tracebacks and reloading
modules. The executors keep the functions they were defined as (and compile
code with the ``compile`` builtin taken at start-up), so replacing this
module's attributes changes nothing the bridge does.

The runtime controls (``Py.activate_venv/1``, ``Py.memory_stats/1``...) call
the functions below the executors' by name, in each interpreter: they are
administration, not the call path.
"""

from __future__ import annotations

import importlib
import io
import logging
import sys
import threading
import traceback
from types import TracebackType

__all__ = [
    "LogHandler",
    "Timeout",
    "activate_venv",
    "deactivate_venv",
    "format_exception",
    "memory_stats",
    "reload",
    "venv_info",
]


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


# The venv activated at run time in this interpreter (each interpreter has
# its own copy of this module, and its own sys.path): its path, its
# site-packages directories, the sys.path entries activating it added, and
# the sys.prefix and sys.exec_prefix it replaced.
_venv: dict | None = None


def activate_venv(path: str, site_dirs: list[str]) -> None:
    """Puts the venv ``path``'s ``site_dirs`` first on ``sys.path``.

    The directories go through ``site.addsitedir`` (so their ``.pth`` files
    are processed), and every entry that added is moved to the front, so the
    venv's packages win over the interpreter's own. ``sys.prefix`` and
    ``sys.exec_prefix`` become ``path``, as in a venv's own Python. A venv
    activated before is deactivated first.
    """
    global _venv
    import site

    deactivate_venv()
    before = list(sys.path)
    for directory in site_dirs:
        site.addsitedir(directory)
    known = set(before)
    added = []
    for entry in sys.path:
        if entry not in known and entry not in added:
            added.append(entry)
    sys.path[:] = added + [entry for entry in sys.path if entry not in added]
    _venv = {
        "path": path,
        "site_packages": list(site_dirs),
        "added": added,
        "prefix": sys.prefix,
        "exec_prefix": sys.exec_prefix,
    }
    sys.prefix = sys.exec_prefix = path
    importlib.invalidate_caches()


def deactivate_venv() -> bool:
    """Undoes ``activate_venv``: its ``sys.path`` entries go, ``sys.prefix``
    is restored. Modules already imported from the venv stay imported.
    False when no venv was active."""
    global _venv
    venv, _venv = _venv, None
    if venv is None:
        return False
    added = set(venv["added"])
    sys.path[:] = [entry for entry in sys.path if entry not in added]
    sys.prefix = venv["prefix"]
    sys.exec_prefix = venv["exec_prefix"]
    importlib.invalidate_caches()
    return True


def venv_info() -> dict:
    """The venv activated at run time in this interpreter, and ``sys.path``."""
    if _venv is None:
        return {"active": False, "sys_path": list(sys.path)}
    return {
        "active": True,
        "venv_path": _venv["path"],
        "site_packages": list(_venv["site_packages"]),
        "sys_path": list(sys.path),
    }


def _rss() -> int | None:
    """The process's resident set size in bytes, where the OS tells it."""
    import os

    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def memory_stats(top: int = 10) -> dict:
    """The garbage collector's counters, the number of objects it tracks,
    the process's RSS and, while ``tracemalloc`` traces, the traced memory
    and the ``top`` source lines that allocated the most of it."""
    import gc
    import tracemalloc

    stats = {
        "gc_stats": gc.get_stats(),
        "gc_count": gc.get_count(),
        "gc_threshold": gc.get_threshold(),
        "objects": len(gc.get_objects()),
        "rss": _rss(),
    }
    if tracemalloc.is_tracing():
        current, peak = tracemalloc.get_traced_memory()
        stats["traced_memory_current"] = current
        stats["traced_memory_peak"] = peak
        snapshot = tracemalloc.take_snapshot()
        stats["tracemalloc_top"] = [
            {
                "file": stat.traceback[0].filename,
                "line": stat.traceback[0].lineno,
                "size": stat.size,
                "count": stat.count,
            }
            for stat in snapshot.statistics("lineno")[:top]
        ]
    return stats


# Output and logging (see native/pybridge/src/output/). The native module is
# handed over by the bridge when the interpreter is set up.
_output = None

# The longest line kept waiting for its newline outside a call.
_MAX_LINE = 65536


class _BeamWriter(io.TextIOBase):
    """``sys.stdout`` and ``sys.stderr`` under pybridge.

    During a call, text goes to the BEAM process that made the call, which
    writes it to its group leader (IEx, ``ExUnit.CaptureIO``) before the
    call returns. Anywhere else (threads no call waits on), text is cut into
    lines and logged with Elixir's ``Logger``.
    """

    def __init__(self, stream: str) -> None:
        super().__init__()
        self._stream = stream
        self._pending = threading.local()

    @property
    def encoding(self) -> str:
        return "utf-8"

    @property
    def errors(self) -> str:
        return "strict"

    @property
    def name(self) -> str:
        return "<pybridge " + self._stream + ">"

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError("write() argument must be str, not " + type(text).__name__)
        if not text or _output is None:
            return len(text)
        if _output.write(self._stream, text):
            return len(text)
        pending = getattr(self._pending, "text", "") + text
        *lines, rest = pending.split("\n")
        for line in lines:
            _output.line(self._stream, line)
        if len(rest) > _MAX_LINE:
            _output.line(self._stream, rest)
            rest = ""
        self._pending.text = rest
        return len(text)

    def flush(self) -> None:
        rest = getattr(self._pending, "text", "")
        if rest and _output is not None:
            self._pending.text = ""
            _output.line(self._stream, rest)


class LogHandler(logging.Handler):
    """Hands log records to Elixir's ``Logger``, with their level and logger
    name: in the calling process during a call, else in ``Py.Output``.

    pybridge makes it ``logging.lastResort``, so records of a program that
    configured no handler reach ``Logger`` (instead of bare stderr). Add it
    to a logger yourself to send records there as well as to your handlers::

        logging.getLogger().addHandler(pybridge.LogHandler())
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if _output is not None:
                _output.log(record.levelno, record.name, self.format(record))
        except Exception:
            self.handleError(record)


def _install_output(native) -> None:
    """Called by the bridge once per interpreter, at set-up."""
    global _output
    _output = native
    sys.stdout = _BeamWriter("stdout")
    sys.stderr = _BeamWriter("stderr")
    logging.lastResort = LogHandler()
