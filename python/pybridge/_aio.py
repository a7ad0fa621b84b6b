"""asyncio support for pybridge: one event loop per interpreter, on a thread of its own.

The native library executes this file as ``pybridge._aio`` the first time a
call in the interpreter returns a coroutine. An executor thread hands the
coroutine over with :func:`submit` and moves on to its next call, so a
coroutine that waits holds no executor thread; the loop's thread (started by
the native library, which then calls :func:`run`) runs every coroutine of the
interpreter, and each one's ``done`` callback sends its result to the BEAM.

Cancellation: each coroutine comes with a ``cancelled`` function, true once
its BEAM caller gave up (timed out, died, or dropped its ``%Py.Task{}``) or its
deadline passed. While coroutines are pending, :func:`_sweep` asks every one
every few milliseconds and cancels those whose caller is gone, so
``CancelledError`` is raised inside them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, AsyncIterator, Callable, Coroutine

__all__ = ["loop", "submit", "run", "stop", "next_batch", "aclose"]

#: How often pending coroutines are checked for a caller that gave up (s).
SWEEP_SECONDS = 0.005
#: A stream batch returns what it has once it has run this long (s), as
#: the native batches do (``limits::STREAM_FLUSH``).
FLUSH_SECONDS = 0.005

_loop: asyncio.AbstractEventLoop | None = None
# Executor threads may ask for the loop at once (free-threaded Python).
_loop_lock = threading.Lock()
_pending: dict[asyncio.Task[Any], Callable[[], bool]] = {}
_sweeping = False


def loop() -> tuple[asyncio.AbstractEventLoop, bool]:
    """The interpreter's loop, and whether it was just made (its thread must be started)."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            return _loop, True
        return _loop, False


def forget(event_loop: asyncio.AbstractEventLoop) -> None:
    """Drops a loop whose thread could not be started."""
    global _loop
    with _loop_lock:
        if _loop is event_loop:
            _loop = None
    event_loop.close()


def submit(
    event_loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any],
    done: Callable[[asyncio.Task[Any]], None],
    cancelled: Callable[[], bool],
) -> None:
    """Schedules ``coro`` on ``event_loop`` from another thread; ``done(task)`` runs when it ends."""
    event_loop.call_soon_threadsafe(_start, event_loop, coro, done, cancelled)


def _start(
    event_loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any],
    done: Callable[[asyncio.Task[Any]], None],
    cancelled: Callable[[], bool],
) -> None:
    global _sweeping
    if cancelled():
        coro.close()
        return
    task = event_loop.create_task(coro)
    _pending[task] = cancelled
    task.add_done_callback(_forget_task)
    task.add_done_callback(done)
    if not _sweeping:
        _sweeping = True
        event_loop.call_later(SWEEP_SECONDS, _sweep, event_loop)


def _forget_task(task: asyncio.Task[Any]) -> None:
    _pending.pop(task, None)


def _sweep(event_loop: asyncio.AbstractEventLoop) -> None:
    global _sweeping
    for task, cancelled in list(_pending.items()):
        if not task.done() and cancelled():
            task.cancel()
    if _pending:
        event_loop.call_later(SWEEP_SECONDS, _sweep, event_loop)
    else:
        _sweeping = False


def run(event_loop: asyncio.AbstractEventLoop) -> None:
    """Runs ``event_loop`` on the calling thread until :func:`stop`, then cancels what is left."""
    asyncio.set_event_loop(event_loop)
    try:
        event_loop.run_forever()
    finally:
        try:
            left = asyncio.all_tasks(event_loop)
            for task in left:
                task.cancel()
            if left:
                event_loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            event_loop.run_until_complete(event_loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            event_loop.close()


def stop() -> None:
    """Stops the interpreter's loop (its context is closing), from any thread."""
    global _loop
    with _loop_lock:
        event_loop, _loop = _loop, None
    if event_loop is not None and not event_loop.is_closed():
        event_loop.call_soon_threadsafe(event_loop.stop)


async def next_batch(agen: AsyncIterator[Any], n: int) -> tuple[list[Any], Any]:
    """Up to ``n`` next items of an async iterator.

    Returns ``(items, end)``: ``end`` is None when more may follow, True when
    the iterator is exhausted, or the exception it raised after ``items``.
    """
    items: list[Any] = []
    started = time.monotonic()
    try:
        while len(items) < n:
            items.append(await agen.__anext__())
            if time.monotonic() - started >= FLUSH_SECONDS:
                break
    except StopAsyncIteration:
        return items, True
    except Exception as exc:  # noqa: BLE001 - handed to the BEAM after the items
        return items, exc
    return items, None


async def aclose(agen: Any) -> None:
    """Closes an async generator (its ``finally`` blocks run)."""
    await agen.aclose()


#: Set last: the native library uses the module only once it has run to here.
_ready = True
