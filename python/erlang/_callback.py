"""Calling the BEAM from Python: ``erlang.call``, ``erlang.send``, ``erlang.self``.

Functions registered on the BEAM side (``Py.register_function/2``,
``py:register_function/2,3``) are called by name::

    erlang.call("lookup", 42)        # by name
    erlang.lookup(42)                # as an attribute of the erlang module
    from erlang import lookup        # imported
    lookup(42)

Arguments and the result convert like the arguments and result of a
``Py.call``, in the other direction. During a call from the BEAM the
function runs in the very BEAM process that made the call (it waits for the
call anyway), so it sees that process's state, and a ``Py.call`` it makes
runs in the same context and namespace. From a thread Python started
itself it runs in a process of pybridge's callback pool.

A function that raises, exits or throws makes ``erlang.call`` raise
``Error`` (``ExitError``, ``ThrowError``) with the reason as a Python value
in ``.reason``; an unregistered name raises ``UnknownFunction``. A callback
still unanswered when the call it runs in times out raises
``pybridge.Timeout``, like any code running past the call's timeout.

``start`` is the asynchronous primitive: it sends the request to the
callback pool and returns a ``Pending`` whose ``wait`` gives the result.
Coroutines ``await erlang.async_call(name, *args)``, built on it.

The native library executes this file as ``erlang._callback`` in every
interpreter, after making ``erlang._callback_native`` there.
"""

from __future__ import annotations

import sys
from typing import Any, Callable

_native = sys.modules["erlang._callback_native"]

_VALUE = _native.VALUE
_RAISED = _native.RAISED
_UNKNOWN = _native.UNKNOWN
_TIMEOUT = _native.TIMEOUT

__all__ = [
    "call",
    "async_call",
    "send",
    "self",
    "start",
    "function",
    "Pending",
    "Error",
    "ExitError",
    "ThrowError",
    "UnknownFunction",
]


class Error(Exception):
    """A BEAM callback failed: it raised (``kind == "error"``), exited
    (``"exit"``) or threw (``"throw"``), or could not be made.

    ``reason`` is the BEAM's reason converted to Python (an Elixir exception
    arrives as a dict of its fields), ``None`` when it cannot cross or there
    is none; ``name`` is the function's name.
    """

    def __init__(self, message: str, *, name: str = "", kind: str = "error", reason: Any = None):
        super().__init__(message)
        self.name = name
        self.kind = kind
        self.reason = reason


class ExitError(Error):
    """The callback exited (``exit/1``)."""


class ThrowError(Error):
    """The callback threw (``throw/1``)."""


class UnknownFunction(Error, LookupError):
    """No BEAM function is registered under the name."""


# Shown as erlang.Error etc. (the classes are erlang's public names).
for _cls in (Error, ExitError, ThrowError, UnknownFunction):
    _cls.__module__ = "erlang"
del _cls

_RAISED_CLASSES = {"error": Error, "exit": ExitError, "throw": ThrowError}


def _timeout(message: str) -> BaseException:
    support = sys.modules.get("pybridge")
    timeout = getattr(support, "Timeout", None) if support is not None else None
    if isinstance(timeout, type) and issubclass(timeout, BaseException):
        return timeout(message)
    return TimeoutError(message)


def _result(name: str, answer: tuple) -> Any:
    if answer[0] == _VALUE:
        return answer[1]
    status = answer[0]
    if status == _RAISED:
        _, kind, reason, message = answer
        raise _RAISED_CLASSES.get(kind, Error)(message, name=name, kind=kind, reason=reason)
    if status == _UNKNOWN:
        raise UnknownFunction(answer[1], name=name, kind="error", reason="undef")
    if status == _TIMEOUT:
        raise _timeout(f"erlang.call({name!r}): {answer[1]}")
    raise Error(f"erlang.call({name!r}) failed: {answer[1]}", name=name, kind="error")


def call(name: str, *args: Any) -> Any:
    """Runs the BEAM function registered as ``name`` with ``args`` and
    returns its result. The thread waits without holding the GIL."""
    return _result(name, _native.call(name, args))


# The callables `function` made, by name: `erlang.name` in a loop looks
# its callable up instead of making one each time.
_functions: dict[str, Callable[..., Any]] = {}


def function(name: str) -> Callable[..., Any]:
    """The BEAM function ``name`` as a Python callable (what ``erlang.name``
    and ``from erlang import name`` give). Whether a function is registered
    under the name is checked when it is called."""
    made = _functions.get(name)
    if made is not None:
        return made
    native_call = _native.call

    def callback(*args: Any) -> Any:
        return _result(name, native_call(name, args))

    callback.__name__ = callback.__qualname__ = name
    callback.__doc__ = f"Calls the BEAM function registered as {name!r}."
    if len(_functions) < 10_000:
        _functions[name] = callback
    return callback


class Pending:
    """A callback sent with ``start``, its answer still to come."""

    __slots__ = ("_id", "name")

    def __init__(self, id: int, name: str):
        self._id = id
        self.name = name

    def done(self) -> bool:
        """True once the answer is there."""
        return _native.done(self._id)

    def wait(self, timeout: float | None = None) -> Any:
        """The result (or the exception raised), waiting up to ``timeout``
        seconds (for ever when None) without the GIL; raises
        ``TimeoutError`` if the answer did not come in time (it may still
        come: call ``wait`` again)."""
        answer = _native.wait(self._id, timeout)
        if answer is None:
            raise TimeoutError(f"erlang callback {self.name!r} not answered within {timeout} s")
        return _result(self.name, answer)

    def set_wakeup_fd(self, fd: int) -> None:
        """Has one byte written to ``fd`` when the answer arrives (at once
        if it is there), e.g. to wake an asyncio loop."""
        _native.wakeup_fd(self._id, fd)

    def __del__(self) -> None:
        forget = getattr(_native, "forget", None)
        if forget is not None:
            forget(self._id)


def start(name: str, *args: Any) -> Pending:
    """Sends ``name(*args)`` to the BEAM's callback pool and returns at once;
    ``Pending.wait`` gives the result."""
    return Pending(_native.start(name, args), name)


class _LoopWaker:
    """One wake-up pipe per asyncio loop for the callbacks awaited in it: the
    native side writes a byte to it when an answer arrives (``set_wakeup_fd``),
    and the loop's reader wakes the coroutines whose answers are there.

    The pipe is closed when the loop lets go of its reader (the loop closed,
    or was collected), not later: a program that keeps its closed loops keeps
    no descriptor of theirs. A request whose coroutine stops waiting (it was
    cancelled) is detached from the pipe first, and so are those still
    waiting when it closes, so a late answer never writes to a closed (or
    reused) descriptor.
    """

    def __init__(self, loop: Any) -> None:
        import os

        self._os = os
        self.read_fd, self.write_fd = os.pipe()
        self.closed = False
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.waiting: dict[Pending, Any] = {}
        loop.add_reader(self.read_fd, _WakerReader(self))

    def _wake(self) -> None:
        try:
            while self._os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass
        for pending, future in list(self.waiting.items()):
            if pending.done():
                del self.waiting[pending]
                if not future.done():
                    future.set_result(None)

    def close(self) -> None:
        """Detaches the requests still waiting and closes the pipe."""
        if self.closed:
            return
        self.closed = True
        for pending in list(self.waiting):
            try:
                pending.set_wakeup_fd(-1)
            except Exception:  # noqa: BLE001 - forgotten already
                pass
        for fd in (self.read_fd, self.write_fd):
            try:
                self._os.close(fd)
            except OSError:
                pass

    def __del__(self) -> None:
        self.close()


class _WakerReader:
    """A waker's reader callback, held by its loop only: when the loop lets
    go of it (closing, or collected), the waker closes its pipe."""

    __slots__ = ("_waker",)

    def __init__(self, waker: _LoopWaker) -> None:
        self._waker = waker

    def __call__(self) -> None:
        self._waker._wake()

    def __del__(self) -> None:
        self._waker.close()


# The waker of each running loop (a loop going away takes its waker along).
_wakers: Any = None


async def async_call(name: str, *args: Any) -> Any:
    """``await erlang.async_call(name, *args)``: like ``call``, for
    coroutines. The coroutine waits for the BEAM's answer without holding
    its event loop's thread, so other coroutines run meanwhile; the function
    runs in a process of the callback pool. Cancelling the coroutine stops
    the wait (the BEAM function still runs to its end)."""
    global _wakers
    import asyncio
    import weakref

    pending = start(name, *args)
    if not pending.done():
        loop = asyncio.get_running_loop()
        if _wakers is None:
            _wakers = weakref.WeakKeyDictionary()
        waker = _wakers.get(loop)
        if waker is None or waker.closed:
            waker = _wakers[loop] = _LoopWaker(loop)
        future = loop.create_future()
        waker.waiting[pending] = future
        pending.set_wakeup_fd(waker.write_fd)
        try:
            await future
        finally:
            waker.waiting.pop(pending, None)
            if not pending.done():
                # Cancelled: the answer may come after the pipe is closed.
                pending.set_wakeup_fd(-1)
    return pending.wait(0)


def send(pid: Any, message: Any) -> None:
    """Sends ``message`` to the BEAM process ``pid`` (an ``erlang.Pid``).
    Raises ``Error`` (reason ``"noproc"``) when no such process is alive."""
    status, why = _native.send(pid, message)
    if status == _native.NO_PROCESS:
        raise Error(f"erlang.send: {why}", kind="error", reason="noproc")
    if status != _native.SENT:
        raise Error(f"erlang.send: {why}", kind="error")


def self() -> Any:
    """The pid of the BEAM process whose call is running on this thread
    (an ``erlang.Pid``), or None outside a call from the BEAM."""
    return _native.self_pid()
