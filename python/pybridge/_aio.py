"""asyncio support for pybridge: one event loop per interpreter, on a thread of its own.

The native library executes this file as ``pybridge._aio`` the first time a
call in the interpreter returns a coroutine. An executor thread hands the
coroutine over with :func:`submit` and moves on to its next call, so a
coroutine that waits holds no executor thread; the loop's thread (started by
the native library, which then calls :func:`run`) runs every coroutine of the
interpreter, and each one's ``waiter`` sends its result to the BEAM.

Eager start: a coroutine's first step runs at once on the executor thread
that hands it over, when the loop is idle (its thread waits in ``select``):
the thread takes the loop's *drive lock*, which the loop's thread holds at
all other times (see :class:`_DriveSelector`), makes the loop its running
loop, and runs the task's first step as the loop would have. A coroutine
that returns without suspending (the common ``async def`` that awaits
nothing, or only finished futures) is answered from there, and the loop's
thread never wakes up; one that suspends is left to the loop, woken to see
its new work. When the loop is busy, in debug mode or not a selector loop,
the coroutine goes to the loop's thread as a whole.

The ``waiter`` of a coroutine is one native callable: ``waiter(task)`` once
the task is done converts its result and replies (exactly once), and
``waiter()`` is true once its BEAM caller gave up (timed out, died, or
dropped its ``%Py.Task{}``) or its deadline passed. While coroutines are
pending, :func:`_sweep` asks every one every few milliseconds and cancels
those whose caller is gone, so ``CancelledError`` is raised inside them.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from asyncio.events import _get_running_loop, _set_running_loop
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
_pending: dict[asyncio.Task[Any], Callable[..., Any]] = {}
_sweeping = False
#: Held by the loop's thread except while it waits in ``select``; an executor
#: thread that takes it may act as the loop's thread meanwhile (eager start).
_drive = threading.Lock()
#: Eager starts need the GIL to keep other threads off the loop's structures
#: as the loop's own thread would (a free-threaded build hands every
#: coroutine to the loop's thread).
_eager = getattr(sys, "_is_gil_enabled", lambda: True)()
#: The loop an executor thread may borrow for an eager start: set when
#: :func:`loop` makes one and wraps its selector, so :func:`submit` asks
#: once per loop, not per coroutine, whether it can be borrowed.
_drivable: asyncio.AbstractEventLoop | None = None


class _DriveSelector:
    """The loop's selector, letting go of the drive lock while it waits.

    The loop's thread holds :data:`_drive` while it runs callbacks and
    updates its structures, and lets go only inside ``select``, where the
    loop's state is settled until ``select`` returns; so whoever holds the
    lock can use the loop as its own thread would. Everything but ``select``
    is the wrapped selector's.
    """

    __slots__ = ("_selector",)

    def __init__(self, selector: Any) -> None:
        self._selector = selector

    def select(self, timeout: float | None = None) -> Any:
        _drive.release()
        try:
            return self._selector.select(timeout)
        finally:
            _drive.acquire()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._selector, name)


def loop() -> tuple[asyncio.AbstractEventLoop, bool]:
    """The interpreter's loop, and whether it was just made (its thread must be started)."""
    global _loop, _drivable
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            if hasattr(_loop, "_selector") and hasattr(_loop, "_ready"):
                _loop._selector = _DriveSelector(_loop._selector)
                if _eager:
                    _drivable = _loop
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
    waiter: Callable[..., Any],
) -> None:
    """Runs ``coro`` on ``event_loop`` for the calling (executor) thread:
    ``waiter(task)`` runs when it ends, on this thread if it ends in its
    first step (see the module's doc), else on the loop's."""
    task = _start_eagerly(event_loop, coro, waiter)
    if task is None:
        event_loop.call_soon_threadsafe(_start, event_loop, coro, waiter)
    elif task.done():
        waiter(task)


def _start_eagerly(
    event_loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any],
    waiter: Callable[..., Any],
) -> asyncio.Task[Any] | None:
    """The task of ``coro`` after its first step, run on this thread; None
    when the loop cannot be borrowed now (nothing ran then)."""
    if event_loop is not _drivable:
        return None
    if not _drive.acquire(blocking=False):
        return None
    try:
        if not event_loop.is_running() or event_loop.get_debug() or _get_running_loop() is not None:
            return None
        _set_running_loop(event_loop)
        try:
            task = event_loop.create_task(coro)
            # Its first step, just scheduled: run it now, as the loop would.
            ready = event_loop._ready
            step = ready[-1] if ready else None
            if step is not None and getattr(step._callback, "__self__", None) is task:
                ready.pop()
                step._run()
        finally:
            _set_running_loop(None)
        if not task.done():
            _watch(event_loop, task, waiter)
            # The loop's thread waits in select with a timeout computed
            # before: wake it to see the new work.
            event_loop._write_to_self()
        return task
    finally:
        _drive.release()


def _start(
    event_loop: asyncio.AbstractEventLoop,
    coro: Coroutine[Any, Any, Any],
    waiter: Callable[..., Any],
) -> None:
    if waiter():
        coro.close()
        return
    _watch(event_loop, event_loop.create_task(coro), waiter)


def _watch(
    event_loop: asyncio.AbstractEventLoop,
    task: asyncio.Task[Any],
    waiter: Callable[..., Any],
) -> None:
    """Has ``waiter`` called when ``task`` ends, and the task cancelled if
    its caller gives up first. On the loop's thread, or holding the drive lock."""
    global _sweeping
    _pending[task] = waiter
    task.add_done_callback(_forget_task)
    task.add_done_callback(waiter)
    if not _sweeping:
        _sweeping = True
        event_loop.call_later(SWEEP_SECONDS, _sweep, event_loop)


def _forget_task(task: asyncio.Task[Any]) -> None:
    _pending.pop(task, None)


def _sweep(event_loop: asyncio.AbstractEventLoop) -> None:
    global _sweeping
    for task, waiter in list(_pending.items()):
        if not task.done() and waiter():
            task.cancel()
    if _pending:
        event_loop.call_later(SWEEP_SECONDS, _sweep, event_loop)
    else:
        _sweeping = False


def run(event_loop: asyncio.AbstractEventLoop) -> None:
    """Runs ``event_loop`` on the calling thread until :func:`stop`, then cancels what is left."""
    asyncio.set_event_loop(event_loop)
    _drive.acquire()
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
            _drive.release()


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
