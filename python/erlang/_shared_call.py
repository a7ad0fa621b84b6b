"""Request coalescing inside Python: ``SharedCall`` and ``AsyncSharedCall``.

Concurrent callers of the same key while one call is in flight wait for it
and share its outcome: its return value, or the exception it raised. Once it
has finished the key is free again; nothing is cached.

The API is shared-call-py's (``group(key_fn=None)``, ``call(key, fn, *args,
**kwargs)``, ``get_stats()``, ``reset_stats()``, ``forget(key)``,
``forget_all()``, ``Stats``), so code written for it runs after changing its
import line to ``from erlang import SharedCall, AsyncSharedCall, Stats``.
What differs, on purpose:

* a caller that executes and is interrupted rather than failing (a
  ``BaseException`` that is not an ``Exception``: ``asyncio.CancelledError``,
  ``pybridge.Timeout``, ``KeyboardInterrupt``) does not hand its waiters
  ``None`` or its interruption: one of them runs the call again, and the
  others wait for that one;
* ``call_within(timeout, key, fn, ...)`` bounds one caller's wait
  (``TimeoutError``) without affecting the others; ``SharedCall(timeout=...)``
  and ``group(timeout=...)`` set it for every call;
* the default key is the function's module and qualified name with the
  arguments themselves, compared by equality: two different argument lists
  never share a result, even when their hashes collide;
* ``SharedCall(name="...")`` reports its statistics to the BEAM, where
  ``Py.Coalesce.stats()`` lists them as ``{:python, name}``.

The BEAM runs this file as the module ``erlang._shared_call`` in every
interpreter it starts; the ``erlang`` module re-exports it.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import weakref
from threading import get_ident
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, Hashable, List, Optional, Tuple

__all__ = ["SharedCall", "AsyncSharedCall", "Stats", "Result", "shared", "async_shared"]


@dataclass
class Stats:
    """Counters of one SharedCall or AsyncSharedCall.

    ``hits``: calls that shared another's execution; ``misses``: executions;
    ``errors``: executions that raised (counted once, however many callers
    shared them); ``active``: executions in flight now.
    """

    hits: int = 0
    misses: int = 0
    errors: int = 0
    active: int = 0

    @property
    def in_flight(self) -> int:
        """``active``, under shared-call-py 0.1.2's name for it."""
        return self.active

    @property
    def hit_rate(self) -> float:
        """``hits / (hits + misses)``, 0.0 before any call."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


@dataclass
class Result:
    """An execution's outcome: its value, or the exception it raised."""

    value: Any = None
    error: Optional[BaseException] = None

    def is_success(self) -> bool:
        return self.error is None

    def is_error(self) -> bool:
        return self.error is not None

    def unwrap(self) -> Any:
        """The value, or raises the error."""
        if self.error is not None:
            raise self.error
        return self.value


class _Flight:
    """One execution in flight. ``done`` (an Event) is made by the first
    waiter only, so a call nobody joins costs no Event."""

    __slots__ = ("done", "value", "error", "retry", "owner")

    # value, error and retry (set when the executing caller was interrupted:
    # waiters start over) are set when the flight finishes, before anyone
    # reads them.
    def __init__(self) -> None:
        self.done: Any = None

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class _Set:
    """Stands for the Event of a finished flight: waiting returns at once."""

    __slots__ = ()

    def wait(self, timeout: Optional[float] = None) -> bool:
        return True

    def is_set(self) -> bool:
        return True


_SET = _Set()


def _interrupted(error: BaseException) -> bool:
    return not isinstance(error, Exception)


def _default_key(fn: Callable[..., Any], args: tuple, kwargs: dict) -> Hashable:
    name = f"{getattr(fn, '__module__', None)}:{getattr(fn, '__qualname__', repr(fn))}"
    key = (name, args, tuple(sorted(kwargs.items())))
    try:
        hash(key)
    except TypeError as error:
        raise TypeError(
            f"cannot coalesce calls of {name}: its arguments are not hashable ({error}); "
            "pass group(key_fn=...) to make a key from them"
        ) from None
    return key


def _unhashable(key: Any, error: TypeError) -> TypeError:
    return TypeError(f"coalescing key {key!r} is not hashable ({error}); use a str, int or tuple")


def _check_key(key: Any) -> None:
    try:
        hash(key)
    except TypeError as error:
        raise _unhashable(key, error) from None


def _call_key(key: Any, fn: Callable[..., Any], args: tuple, kwargs: dict) -> Hashable:
    # None or "" asks for the default key, as in shared-call-py. Other keys
    # are checked where they are first hashed (the table lookup).
    if key is None or key == "":
        return _default_key(fn, args, kwargs)
    return key


def _check_timeout(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"timeout must be None or a non-negative number of seconds, got {timeout!r}")
    return float(timeout)


class _Base:
    """What both kinds share: counters, the in-flight table, the registry."""

    def __init__(self, name: Optional[str] = None, timeout: Optional[float] = None) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
        self.name = name
        self._timeout = _check_timeout(timeout)
        self._flights: Dict[Hashable, _Flight] = {}
        self._hits = self._misses = self._errors = self._active = 0
        if name is not None:
            _register(self)

    def _snapshot(self) -> Stats:
        return Stats(self._hits, self._misses, self._errors, self._active)

    def _zero(self) -> None:
        self._hits = self._misses = self._errors = 0

    def _key(self, key_fn: Optional[Callable[..., Any]], fn: Callable[..., Any], args: tuple, kwargs: dict) -> Hashable:
        if key_fn is None:
            return _default_key(fn, args, kwargs)
        key = key_fn(*args, **kwargs)
        _check_key(key)
        return key


class SharedCall(_Base):
    """Coalesces concurrent calls of plain functions from any number of threads.

    Thread-safe, free-threaded Python included: one lock guards the in-flight
    table and the counters, and waiters block on a ``threading.Event``. The
    caller that starts an execution runs it in its own thread.
    """

    def __init__(self, name: Optional[str] = None, timeout: Optional[float] = None) -> None:
        super().__init__(name, timeout)
        self._lock = threading.Lock()

    def group(self, key_fn: Optional[Callable[..., Any]] = None, timeout: Optional[float] = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: calls of the function with the same key are coalesced."""
        timeout = _check_timeout(timeout)

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                key = self._key(key_fn, fn, args, kwargs)
                return self._run(key, fn, args, kwargs, self._timeout if timeout is None else timeout)

            return wrapper

        return decorate

    def call(self, key: Hashable, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, or the outcome of the call of ``key`` in flight."""
        key = _call_key(key, fn, args, kwargs)
        return self._run(key, fn, args, kwargs, self._timeout)

    def call_within(self, timeout: Optional[float], key: Hashable, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Like ``call``; a caller that waits gives up after ``timeout`` seconds."""
        key = _call_key(key, fn, args, kwargs)
        return self._run(key, fn, args, kwargs, _check_timeout(timeout))

    def _run(self, key: Hashable, fn: Callable[..., Any], args: tuple, kwargs: dict, timeout: Optional[float]) -> Any:
        lock = self._lock
        done = None
        while True:
            with lock:
                try:
                    flight = self._flights.get(key)
                except TypeError as error:
                    raise _unhashable(key, error) from None
                if flight is None:
                    flight = self._flights[key] = _Flight()
                    flight.owner = get_ident()
                    self._misses += 1
                    self._active += 1
                else:
                    if flight.owner == get_ident():
                        raise RuntimeError(
                            f"coalesced call {key!r} would wait for itself: the function "
                            "calls itself with the same key"
                        )
                    self._hits += 1
                    done = flight.done
                    if done is None:
                        done = flight.done = threading.Event()
            if done is None:
                try:
                    value = fn(*args, **kwargs)
                except BaseException as error:
                    self._finish(key, flight, None, error)
                    raise
                self._finish(key, flight, value, None)
                return value
            if not done.wait(timeout):
                raise TimeoutError(f"coalesced call {key!r} did not finish within {timeout} s")
            if not flight.retry:
                return flight.outcome()
            # The executing caller was interrupted: start over (one of the
            # waiters becomes the new executing caller).
            done = None

    def _finish(self, key: Hashable, flight: _Flight, value: Any, error: Optional[BaseException]) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
            self._active -= 1
            flight.value = value
            flight.error = error
            flight.retry = False
            if error is not None:
                if _interrupted(error):
                    flight.retry = True
                else:
                    self._errors += 1
            done = flight.done
            # A waiter arriving from now on makes its own Event, which nobody
            # would set: mark the flight as finished with a set one.
            flight.done = _SET
        if done is not None:
            done.set()

    def get_stats(self) -> Stats:
        """The counters (a copy)."""
        with self._lock:
            return self._snapshot()

    def reset_stats(self) -> None:
        """Zeroes hits, misses and errors (``active`` counts what still runs)."""
        with self._lock:
            self._zero()

    def forget(self, key: Hashable) -> None:
        """Callers of ``key`` from now on start a new execution; those waiting
        still get the running one's outcome."""
        with self._lock:
            self._flights.pop(key, None)

    def forget_all(self) -> None:
        """``forget`` for every key."""
        with self._lock:
            self._flights.clear()


class AsyncSharedCall(_Base):
    """Coalesces concurrent awaits of coroutine functions on one event loop.

    Asyncio-safe: the table is only touched between awaits, and waiters wait
    on an ``asyncio.Event``, so cancelling a waiter cancels nobody else. The
    caller that starts an execution awaits it in its own task.
    """

    def group(self, key_fn: Optional[Callable[..., Any]] = None, timeout: Optional[float] = None) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
        """Decorator: awaits of the function with the same key are coalesced."""
        timeout = _check_timeout(timeout)

        def decorate(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            @functools.wraps(fn)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                key = self._key(key_fn, fn, args, kwargs)
                return await self._run(key, fn, args, kwargs, self._timeout if timeout is None else timeout)

            return wrapper

        return decorate

    async def call(self, key: Hashable, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """``await fn(*args, **kwargs)``, or the outcome of the call of ``key`` in flight."""
        key = _call_key(key, fn, args, kwargs)
        return await self._run(key, fn, args, kwargs, self._timeout)

    async def call_within(self, timeout: Optional[float], key: Hashable, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Like ``call``; a caller that waits gives up after ``timeout`` seconds."""
        key = _call_key(key, fn, args, kwargs)
        return await self._run(key, fn, args, kwargs, _check_timeout(timeout))

    async def _run(self, key: Hashable, fn: Callable[..., Awaitable[Any]], args: tuple, kwargs: dict, timeout: Optional[float]) -> Any:
        # One coroutine for the whole call: each extra await layer costs as
        # much as the bookkeeping itself.
        flights = self._flights
        while True:
            try:
                flight = flights.get(key)
            except TypeError as error:
                raise _unhashable(key, error) from None
            if flight is None:
                flight = flights[key] = _Flight()
                self._misses += 1
                self._active += 1
                try:
                    value = await fn(*args, **kwargs)
                except BaseException as error:
                    self._finish(key, flight, None, error)
                    raise
                # _finish(key, flight, value, None), inlined.
                if flights.get(key) is flight:
                    del flights[key]
                self._active -= 1
                flight.value = value
                flight.error = None
                flight.retry = False
                done = flight.done
                flight.done = _SET
                if done is not None:
                    done.set()
                return value
            self._hits += 1
            done = flight.done
            if done is None:
                done = flight.done = asyncio.Event()
            if not done.is_set():
                try:
                    await asyncio.wait_for(done.wait(), timeout)
                except asyncio.TimeoutError:
                    raise TimeoutError(f"coalesced call {key!r} did not finish within {timeout} s") from None
            if not flight.retry:
                return flight.outcome()

    def _finish(self, key: Hashable, flight: _Flight, value: Any, error: Optional[BaseException]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]
        self._active -= 1
        flight.value = value
        flight.error = error
        flight.retry = False
        if error is not None:
            if _interrupted(error):
                flight.retry = True
            else:
                self._errors += 1
        done = flight.done
        flight.done = _SET
        if done is not None:
            done.set()

    async def get_stats(self) -> Stats:
        """The counters (a copy)."""
        return self._snapshot()

    async def reset_stats(self) -> None:
        """Zeroes hits, misses and errors (``active`` counts what still runs)."""
        self._zero()

    async def forget(self, key: Hashable) -> None:
        """Callers of ``key`` from now on start a new execution; those waiting
        still get the running one's outcome."""
        self._flights.pop(key, None)

    async def forget_all(self) -> None:
        """``forget`` for every key."""
        self._flights.clear()


# Named instances, for Py.Coalesce.stats() on the BEAM side.
_registry_lock = threading.Lock()
_registry: "weakref.WeakSet[_Base]" = weakref.WeakSet()


def _register(instance: _Base) -> None:
    with _registry_lock:
        _registry.add(instance)


def _named_stats() -> List[Tuple[str, int, int, int, int]]:
    """``[(name, hits, misses, errors, active)]``, summed per name, for the BEAM."""
    with _registry_lock:
        instances = list(_registry)
    totals: Dict[str, List[int]] = {}
    for instance in instances:
        stats = instance._snapshot()
        row = totals.setdefault(instance.name or "", [0, 0, 0, 0])
        row[0] += stats.hits
        row[1] += stats.misses
        row[2] += stats.errors
        row[3] += stats.active
    return [(name, *row) for name, row in sorted(totals.items())]  # type: ignore[misc]


shared = SharedCall()
async_shared = AsyncSharedCall()
