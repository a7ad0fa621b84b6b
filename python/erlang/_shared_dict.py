"""SharedDict: the key/value stores shared with the BEAM, seen from Python.

A SharedDict lives in pybridge's native library, not in this interpreter:
the BEAM (``Py.SharedDict``, ``py:shared_dict_*``) and every context,
sub-interpreters included, read and write the same data. Keys are ``str``.
Plain data (None, bool, int, float, str, bytes, list, tuple, dict, set,
``erlang.Pid``/``erlang.Ref``) is stored as such and is readable by the BEAM
without Python; any other object is pickled (the BEAM sees a
``%Py.SharedDict.Pickled{type: "module.Class"}``) and comes back unpickled.
Every read returns a new copy: changing it does not change the store.

The ``state_*`` functions are the global State API: one named SharedDict,
``"pybridge.state"``, shared with ``Py.State`` and ``py:state_*``.

The native library executes this file as ``erlang._shared_dict`` in every
interpreter, after making ``erlang._shared_dict_native`` there.
"""

from __future__ import annotations

import math
import pickle
import sys
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

_native = sys.modules["erlang._shared_dict_native"]

_MISSING, _PLAIN, _PICKLED = 0, 1, 2
_OK, _NOT_PLAIN, _FULL, _EXISTS = 0, 1, 2, 3

__all__ = [
    "SharedDict",
    "SharedDictFull",
    "state_set",
    "state_get",
    "state_delete",
    "state_keys",
    "state_clear",
    "state_incr",
    "state_decr",
]


class SharedDictFull(RuntimeError):
    """A new key beyond the dict's ``max_entries``."""


# What the bound ``get`` answers for a missing key when asked to tell.
_ABSENT = object()


def _value(kind: int, payload: Any) -> Any:
    return pickle.loads(payload) if kind == _PICKLED else payload


# Event names and their bits in a callback's mask (native
# ``callbacks::event_bit``); "get" is LiveDict's name for "access".
_EVENTS = {"set": 1, "delete": 2, "expire": 4, "access": 8, "get": 8}


class _Callback:
    """One registered callback. The native side calls ``_run`` on
    pybridge's callback context, once per event, with the value written or
    removed (``None`` when there is none)."""

    __slots__ = ("fn", "timeout")

    def __init__(self, fn: Callable[[str, Any], Any], timeout: float | None) -> None:
        self.fn = fn
        self.timeout = timeout

    def _run(self, key: str, event: str, kind: int, payload: Any) -> None:
        value = None if kind == _MISSING else _value(kind, payload)
        result = self.fn(key, value)
        if hasattr(result, "__await__"):
            import asyncio  # only here: every interpreter runs this module

            asyncio.run(self._wait(result))

    async def _wait(self, awaitable: Any) -> None:
        import asyncio

        try:
            await asyncio.wait_for(awaitable, self.timeout)
        except asyncio.TimeoutError:
            import pybridge

            raise pybridge.Timeout(f"callback ran past its timeout of {self.timeout} s") from None


def _ttl_ms(ttl: float | None) -> int | None:
    if ttl is None:
        return None
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not ttl >= 0:
        raise ValueError(f"ttl must be a number of seconds >= 0 or None, not {ttl!r}")
    return math.ceil(ttl * 1000)


def _put_other(dict_id: int, status: int, key: str, value: Any, ms: int | None, only_new: bool) -> int:
    # What a put that did not store plain data does next.
    if status == _NOT_PLAIN:
        kind = type(value)
        status = _native.put_pickled(
            dict_id,
            key,
            f"{kind.__module__}.{kind.__qualname__}",
            pickle.dumps(value),
            ms,
            only_new,
        )
    if status == _FULL:
        raise SharedDictFull(f"the shared dict is full: cannot add {key!r}")
    return status


def _set_other(dict_id: int, status: int, key: str, value: Any, ms: int | None) -> None:
    # The bound ``set``'s rare outcomes (python_fast.rs): pickling, a full dict.
    _put_other(dict_id, status, key, value, ms, False)


class SharedDict:
    """A dict-like view of a SharedDict.

    ``SharedDict(handle)`` wraps a handle passed from the BEAM (an argument
    or a local); ``SharedDict("name")`` opens the named dict (``create=True``
    makes it when missing, on ``backend``). ``SharedDict.open(name,
    backend=...)`` is the same with ``create=True``. A destroyed dict raises
    ``RuntimeError``; a backend that fails (a read-only, corrupt or full
    SQLite file, an unreachable Redis) raises ``OSError``.

    Backends: ``"memory"`` (the default: in this OS process),
    ``"sqlite"`` with ``path=`` (a file that survives restarts; every write
    is committed to disk before it returns), or ``"redis"`` with ``url=``
    (a Redis server: every node opening the same name and prefix there
    shares the dict, its events and its locks; on a Redis Cluster, any
    node's URL, or several seed URLs separated by spaces). ``prefix`` keeps this
    dict's keys apart from others in the same file or server;
    ``pool_size`` is the number of connections.
    """

    # ``get`` and ``set`` are per instance: native callables bound to the
    # dict (``_native.bind``), called without a Python frame.
    __slots__ = ("_id", "_name", "get", "set")

    get: Callable[..., Any]
    """``get(key, default=None)``: the value of ``key``, or ``default``
    when it is missing or expired."""
    set: Callable[..., None]
    """``set(key, value, ttl=None)``: stores ``value``; ``ttl`` in seconds
    makes the key expire."""

    def __init__(
        self,
        handle_or_name: Any,
        *,
        create: bool = False,
        backend: str = "memory",
        path: str | None = None,
        url: str | None = None,
        prefix: str = "",
        pool_size: int = 1,
    ) -> None:
        location = path if path is not None else url
        if location is not None and not isinstance(location, str):
            location = str(location)
        self._id, self._name = _native.open(
            handle_or_name, create, backend, location, prefix, pool_size
        )
        self.get, self.set = _native.bind(self._id)

    @classmethod
    def open(
        cls,
        name: str,
        backend: str = "memory",
        *,
        path: str | None = None,
        url: str | None = None,
        prefix: str = "",
        pool_size: int = 1,
    ) -> SharedDict:
        """The dict named ``name``, made on ``backend`` when missing; an
        existing one must be on that kind of backend (else ``ValueError``).
        Opening a SQLite file removes the keys that expired while it was
        closed."""
        return cls(
            name,
            create=True,
            backend=backend,
            path=path,
            url=url,
            prefix=prefix,
            pool_size=pool_size,
        )

    @property
    def name(self) -> str | None:
        return self._name

    def __repr__(self) -> str:
        name = f" {self._name!r}" if self._name is not None else ""
        return f"<erlang.SharedDict{name} #{self._id}>"

    # -- reading --------------------------------------------------------

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, _ABSENT)
        if value is _ABSENT:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return self.get(key, _ABSENT) is not _ABSENT

    def keys(self) -> list[str]:
        return _native.keys(self._id)  # type: ignore[no-any-return]

    def values(self) -> list[Any]:
        return [_value(kind, payload) for _k, kind, payload in _native.items(self._id)]

    def items(self) -> list[tuple[str, Any]]:
        return [(k, _value(kind, payload)) for k, kind, payload in _native.items(self._id)]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return _native.size(self._id)  # type: ignore[no-any-return]

    def ttl(self, key: str) -> float | None:
        """Seconds before ``key`` expires, ``math.inf`` when it never does,
        ``None`` when it is missing."""
        ms = _native.ttl(self._id, key)
        if ms is None:
            return None
        return math.inf if ms < 0 else ms / 1000

    # -- writing --------------------------------------------------------

    def _put(self, key: str, value: Any, ttl: float | None, only_new: bool) -> int:
        ms = _ttl_ms(ttl)
        status = _native.put(self._id, key, value, ms, only_new)
        return status if status == _OK else _put_other(self._id, status, key, value, ms, only_new)

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def setdefault(self, key: str, value: Any = None) -> Any:
        """Stores ``value`` unless ``key`` exists; returns the stored value."""
        if self._put(key, value, None, True) == _EXISTS:
            return self.get(key, value)
        return value

    def __delitem__(self, key: str) -> None:
        if not _native.delete(self._id, key):
            raise KeyError(key)

    def delete(self, key: str) -> None:
        """Removes ``key``; nothing happens when it is missing."""
        _native.delete(self._id, key)

    def incr(self, key: str, by: int = 1) -> int:
        """Adds ``by`` to the integer under ``key`` atomically (from 0)."""
        return _native.incr(self._id, key, by)  # type: ignore[no-any-return]

    def expire(self, key: str, ttl: float) -> bool:
        ms = _ttl_ms(ttl)
        return _native.expire(self._id, key, ms)  # type: ignore[no-any-return]

    def persist(self, key: str) -> bool:
        return _native.persist(self._id, key)  # type: ignore[no-any-return]

    def clear(self) -> None:
        _native.clear(self._id)

    def destroy(self) -> None:
        """Destroys the dict for everyone; idempotent."""
        _native.destroy(self._id)

    # -- callbacks ------------------------------------------------------

    def register_callback(
        self,
        event: str,
        fn: Callable[[str, Any], Any],
        is_async: bool = False,
        timeout: float | None = None,
        key: str | None = None,
    ) -> int:
        """Calls ``fn(key, value)`` once per ``event`` ("set", "delete",
        "expire", "access"; "get" is "access"), of every key or of ``key``
        only, whichever side caused it (Python, the BEAM, the sweeper).
        Returns the callback's id.

        ``fn`` runs later, on pybridge's callback context, never in the
        writer's call. ``value`` is the value written, deleted, expired or
        read. A coroutine function (``is_async=True``, or any ``fn`` that
        returns an awaitable) is run to completion there. A callback that
        raises, or runs past ``timeout`` seconds, is logged on the BEAM and
        counted in ``Py.SharedDict.stats/1``; the store, the writer and the
        other callbacks never notice."""
        mask = _EVENTS.get(event) if isinstance(event, str) else None
        if mask is None:
            raise ValueError(f"event must be one of 'set', 'delete', 'expire', 'access', not {event!r}")
        if not callable(fn):
            raise TypeError(f"callback must be callable, not {type(fn).__name__}")
        if timeout is not None and not (isinstance(timeout, (int, float)) and timeout > 0):
            raise ValueError(f"timeout must be a number of seconds > 0 or None, not {timeout!r}")
        runner = _Callback(fn, timeout)
        return _native.register_callback(self._id, mask, runner, key, timeout)  # type: ignore[no-any-return]

    def set_callback_enabled(self, callback_id: int, enabled: bool) -> bool:
        """Turns a callback off (its events are skipped) or back on; False
        when there is no such callback."""
        return _native.set_callback_enabled(callback_id, bool(enabled))  # type: ignore[no-any-return]

    def unregister_callback(self, callback_id: int) -> bool:
        """Removes a callback; False when there is no such callback."""
        return _native.unregister_callback(callback_id)  # type: ignore[no-any-return]

    # -- per-key locks --------------------------------------------------

    def lock(self, key: str, timeout: float | None = 1.0, hold: bool = False) -> bool:
        """Takes the per-key lock for this thread, waiting up to ``timeout``
        seconds (``None``: forever) with the GIL released; shared with BEAM
        processes' ``Py.SharedDict.lock/3``. Held until ``unlock``, or until
        the BEAM call running this thread ends (returns, raises or times
        out), unless ``hold=True``: then only ``unlock`` from this thread
        releases it."""
        return _native.lock(self._id, key, threading.get_ident(), timeout, hold)  # type: ignore[no-any-return]

    def unlock(self, key: str) -> bool:
        """Releases this thread's lock on ``key``; False when not held."""
        return _native.unlock(self._id, key, threading.get_ident())  # type: ignore[no-any-return]

    @contextmanager
    def locked(self, key: str, timeout: float | None = None) -> Iterator[None]:
        """``with sd.locked(key):`` holds the lock for the block; raises
        ``TimeoutError`` when it cannot be taken within ``timeout``."""
        if not self.lock(key, timeout):
            raise TimeoutError(f"lock on {key!r} not acquired within {timeout} s")
        try:
            yield
        finally:
            self.unlock(key)


_STATE = "pybridge.state"


def _state() -> SharedDict:
    return SharedDict(_STATE, create=True)


def state_set(key: str, value: Any) -> None:
    """Stores ``value`` under ``key`` in the global State."""
    _state()[key] = value


def state_get(key: str, default: Any = None) -> Any:
    """The State's value of ``key``, or ``default``."""
    return _state().get(key, default)


def state_delete(key: str) -> None:
    """Removes ``key`` from the State (nothing when missing)."""
    _state().delete(key)


def state_keys() -> list[str]:
    """Every key of the State."""
    return _state().keys()


def state_clear() -> None:
    """Removes every key of the State."""
    _state().clear()


def state_incr(key: str, by: int = 1) -> int:
    """Adds ``by`` to the counter ``key`` atomically; returns the new value."""
    return _state().incr(key, by)


def state_decr(key: str, by: int = 1) -> int:
    """Subtracts ``by`` from the counter ``key`` atomically."""
    return _state().incr(key, -by)
