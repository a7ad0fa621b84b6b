"""LiveDict: LiveDict 2.0's API over a pybridge SharedDict.

A program written against LiveDict 2.0 runs after changing its import line
to ``from erlang import LiveDict``. The data lives in a SharedDict, so the
BEAM and every context see it (give it a ``name=`` to reach it from
``Py.SharedDict.lookup/1``); TTLs, events, callbacks and per-key locks are
the SharedDict's. Where LiveDict 2.0.2 misbehaves this face does not (see
guides/shared-dict.md, "LiveDict"): an expiry is exact and happens once per
TTL actually set, an ``expire`` callback receives the value that expired,
and every callback runs exactly once per event.

``work_mode='async'`` makes every method awaitable. The store's operations
take well under a microsecond, so they run at once and return an already
completed awaitable (no executor thread); ``lock`` waits without blocking
the event loop, and locks there belong to the asyncio task, not the thread.

The native library executes this file as ``erlang._livedict`` in every
interpreter, after ``erlang._shared_dict``.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref
from typing import Any, Callable, Generator, Iterator

_shared_dict = sys.modules["erlang._shared_dict"]
_native = sys.modules["erlang._shared_dict_native"]
SharedDict = _shared_dict.SharedDict

__all__ = ["LiveDict"]

# LiveDict's backend names → the SharedDict's, and the SharedDict option
# that takes LiveDict's ``uri``.
_BACKENDS = {"memory": ("memory", None), "sqlite": ("sqlite", "path"),
             "sqlite3": ("sqlite", "path"), "redis": ("redis", "url")}


class _Ready:
    """An awaitable whose result is already known."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def __await__(self) -> Generator[Any, None, Any]:
        return self._value
        yield  # makes this a generator  # pragma: no cover


class CallbackId(int):
    """A callback's id. Awaitable as well, so that ``register_callback``
    works both with and without ``await`` in async mode (LiveDict's own is
    not awaitable)."""

    def __await__(self) -> Generator[Any, None, CallbackId]:
        return self
        yield  # pragma: no cover


# asyncio is imported on first use: every interpreter runs this module.


def _task_holder() -> int:
    # An asyncio task's lock-holder id: odd, so it never equals a thread's
    # ident (an aligned address).
    import asyncio

    task = asyncio.current_task()
    return (id(task) << 1) | 1 if task is not None else threading.get_ident()


def _drop_private(dict_id: int) -> None:
    """Empties, then destroys, a private dict: on a file or server backend
    destroying a named dict only closes it, and a private one must not
    leave its entries behind."""
    try:
        _native.clear(dict_id)
    except Exception:  # already destroyed, or the backend is unreachable
        pass
    _native.destroy(dict_id)


class LiveDict:
    """LiveDict 2.0's ``LiveDict`` on a SharedDict.

    ``work_mode``: ``'sync'`` or ``'async'`` (every method awaitable).
    ``backend``: ``'memory'``, ``'sqlite'`` with ``uri=`` (the database
    file), or ``'redis'`` with ``uri=`` (a ``redis://`` URL); a backend the SharedDict lacks raises ``ValueError``. ``name``: store in the named SharedDict (made
    when missing) that the BEAM and other contexts reach by name; without
    one, the dict is private to this object and destroyed with it (or by
    ``stop()``). ``prevent_race_condition`` and ``sandbox`` are accepted for
    compatibility: the store is always atomic and callbacks always
    sandboxed.
    """

    def __init__(
        self,
        work_mode: str = "sync",
        backend: str = "memory",
        prevent_race_condition: bool = True,
        sandbox: bool = True,
        uri: str | None = None,
        client: object | None = None,
        name: str | None = None,
    ) -> None:
        mode = (work_mode or "sync").lower()
        if mode not in ("sync", "async"):
            raise ValueError("work_mode must be 'sync' or 'async'")
        chosen = (backend or "memory").lower()
        if chosen not in _BACKENDS:
            raise ValueError(f"Unsupported backend: {chosen}")
        kind, location = _BACKENDS[chosen]
        options: dict[str, Any] = {}
        if location is not None:
            if client is not None:
                raise TypeError(
                    f"client= is not supported: the SharedDict opens the {kind} "
                    "connection itself; pass uri="
                )
            if not uri:
                raise ValueError(f"the {kind} backend requires uri=")
            options[location] = uri
        self._async = mode == "async"
        # Unknown to the SharedDict (a backend it does not have): its
        # ValueError says which it has.
        if name is None:
            private = f"pybridge.livedict.{os.urandom(16).hex()}"
            self._sd = SharedDict(private, create=True, backend=kind, **options)
            self._finalizer: Any = weakref.finalize(self, _drop_private, self._sd._id)
        else:
            self._sd = SharedDict(name, create=True, backend=kind, **options)
            self._finalizer = None
        if not self._async:
            # The SharedDict's own (native) get and set, which take the same
            # arguments and answer the same: no frame of this class per call.
            self.get = self._sd.get
            self.set = self._sd.set

    @property
    def shared_dict(self) -> Any:
        """The SharedDict underneath."""
        return self._sd

    def _out(self, value: Any) -> Any:
        return _Ready(value) if self._async else value

    # -- data -----------------------------------------------------------

    def set(self, key: str, value: Any, ttl: float | None = None) -> Any:
        """Stores ``value``; ``ttl`` seconds makes it expire."""
        self._sd.set(key, value, ttl=ttl)
        return self._out(None)

    def get(self, key: str, default: Any = None) -> Any:
        """The value, or ``default`` (None) when missing or expired."""
        return self._out(self._sd.get(key, default))

    def delete(self, key: str) -> Any:
        """Removes ``key`` (nothing when missing)."""
        self._sd.delete(key)
        return self._out(None)

    def exists(self, key: str) -> Any:
        return self._out(key in self._sd)

    def keys(self) -> Any:
        return self._out(self._sd.keys())

    def items(self) -> Any:
        return self._out(self._sd.items())

    def __contains__(self, key: object) -> bool:
        return key in self._sd

    def __len__(self) -> int:
        return len(self._sd)

    def __iter__(self) -> Iterator[str]:
        return iter(self._sd.keys())

    def __getitem__(self, key: str) -> Any:
        return self._sd[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._sd[key] = value

    def __delitem__(self, key: str) -> None:
        del self._sd[key]

    # -- per-key locks --------------------------------------------------

    def lock(self, key: str, timeout: float | None = None) -> Any:
        """Takes ``key``'s lock, waiting up to ``timeout`` seconds (None:
        forever); True when taken. In async mode it waits without blocking
        the loop, and the lock belongs to the current task."""
        if not self._async:
            return self._sd.lock(key, timeout)
        return self._lock_async(key, timeout)

    async def _lock_async(self, key: str, timeout: float | None) -> bool:
        import asyncio

        holder = _task_holder()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        delay = 0.0005
        while True:
            if _native.lock(self._sd._id, key, holder, 0.0, True):
                return True
            if deadline is not None and loop.time() >= deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)

    def unlock(self, key: str) -> Any:
        """Releases ``key``'s lock if this thread (task, in async mode)
        holds it."""
        if not self._async:
            return self._sd.unlock(key)
        return _Ready(_native.unlock(self._sd._id, key, _task_holder()))

    # -- callbacks ------------------------------------------------------

    def register_callback(
        self,
        event: str,
        fn: Callable[[str, Any], Any],
        key: str | None = None,
        timeout: float | None = 2.0,
        is_async: bool = False,
    ) -> CallbackId:
        """Calls ``fn(key, value)`` once per ``event`` ("set", "get" or
        "access", "delete", "expire"), of ``key`` only or of every key;
        returns the callback's id. See ``SharedDict.register_callback``."""
        cb = self._sd.register_callback(event, fn, is_async=is_async, timeout=timeout, key=key)
        return CallbackId(cb)

    def unregister_callback(self, cbid: int) -> Any:
        return self._out(self._sd.unregister_callback(cbid))

    def set_callback_enabled(self, cbid: int, enabled: bool) -> Any:
        return self._out(self._sd.set_callback_enabled(cbid, enabled))

    def stop(self) -> Any:
        """Destroys a private dict (a named one stays); idempotent."""
        if self._finalizer is not None:
            self._finalizer()
        return self._out(None)
