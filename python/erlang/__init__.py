"""Values of the BEAM, as seen from Python embedded by pybridge.

BEAM pids and references have no Python equivalent. They cross into Python
as ``erlang.Pid`` and ``erlang.Ref``: opaque, immutable and hashable values
holding the term in the BEAM's external term format (what
``:erlang.term_to_binary/1`` gives). They compare equal exactly when the BEAM
terms do, so they work as dict keys and set members, and they go back to the
BEAM as the very same pid or reference.

Only the BEAM makes them: calling ``erlang.Pid(...)`` raises ``TypeError``.
Each carries a seal that the native library computes with a key Python never
sees, and the library takes back only values whose seal matches their term,
so Python code can neither forge a pid nor hand the BEAM bytes it made up;
an instance built by other means (``object.__new__``) is refused on its way
back with a conversion error.

``SharedDict`` and the ``state_*`` functions reach the stores shared with
the BEAM (see ``erlang._shared_dict``).

``call``, ``send`` and ``self`` reach the BEAM: ``erlang.call("name", *args)``,
``erlang.name(*args)`` and ``from erlang import name`` run a function
registered with ``Py.register_function`` (see ``erlang._callback``).

``SharedCall``, ``AsyncSharedCall`` and ``Stats`` coalesce concurrent calls
of the same key into one execution (shared-call-py's API; see
``erlang._shared_call``).

The native library executes this file as the module ``erlang`` in every
interpreter it starts (the main one and each sub-interpreter context), so
each interpreter has classes of its own.
"""

from __future__ import annotations

import struct
import sys
from typing import Any, NoReturn, final

# Request coalescing (python/erlang/_shared_call.py), which the BEAM runs
# as erlang._shared_call before this module.
_shared_call = sys.modules["erlang._shared_call"]
SharedCall = _shared_call.SharedCall
AsyncSharedCall = _shared_call.AsyncSharedCall
Stats = _shared_call.Stats
# shared-call-py's other names, so that its import lines translate one for one.
Result = _shared_call.Result
shared = _shared_call.shared
async_shared = _shared_call.async_shared

# SharedDicts and the State API (python/erlang/_shared_dict.py), run as
# erlang._shared_dict before this module.
_shared_dict = sys.modules["erlang._shared_dict"]
SharedDict = _shared_dict.SharedDict
SharedDictFull = _shared_dict.SharedDictFull
state_set = _shared_dict.state_set
state_get = _shared_dict.state_get
state_delete = _shared_dict.state_delete
state_keys = _shared_dict.state_keys
state_clear = _shared_dict.state_clear
state_incr = _shared_dict.state_incr
state_decr = _shared_dict.state_decr
# LiveDict 2.0's API over a SharedDict (python/erlang/_livedict.py).
LiveDict = sys.modules["erlang._livedict"].LiveDict

# Calling the BEAM (python/erlang/_callback.py), run as erlang._callback
# before this module.
_callback = sys.modules["erlang._callback"]
call = _callback.call
async_call = _callback.async_call
send = _callback.send
self = _callback.self
Error = _callback.Error
ExitError = _callback.ExitError
ThrowError = _callback.ThrowError
UnknownFunction = _callback.UnknownFunction

__all__ = [
    "call",
    "async_call",
    "send",
    "self",
    "Error",
    "ExitError",
    "ThrowError",
    "UnknownFunction",
    "Pid",
    "Ref",
    "SharedCall",
    "AsyncSharedCall",
    "Stats",
    "SharedDict",
    "SharedDictFull",
    "state_set",
    "state_get",
    "state_delete",
    "state_keys",
    "state_clear",
    "state_incr",
    "state_decr",
    "LiveDict",
]


class _Term:
    """Common base of Pid and Ref: an immutable wrapper of term bytes.

    The native library fills the slots of each instance it makes: ``_etf``,
    the term, and ``_seal``, which proves that the library made it.
    """

    __slots__ = ("_etf", "_seal")
    _etf: bytes
    _seal: int

    def __new__(cls, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError(
            f"erlang.{cls.__name__} values come only from the BEAM: pass one in "
            "from Elixir or Erlang instead of building it"
        )

    def __setattr__(self, name: str, value: Any) -> NoReturn:
        raise AttributeError(f"{type(self).__qualname__} objects are immutable")

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"{type(self).__qualname__} objects are immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._etf == other._etf  # type: ignore[attr-defined, no-any-return]

    def __hash__(self) -> int:
        return hash((type(self).__qualname__, self._etf))

    def __bytes__(self) -> bytes:
        """The term in the BEAM's external term format."""
        return self._etf

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            f"cannot pickle {type(self).__qualname__}: it only means something "
            "to the BEAM that made it"
        )

    def __copy__(self) -> _Term:
        return self

    def __deepcopy__(self, memo: object) -> _Term:
        return self


@final
class Pid(_Term):
    """A BEAM process identifier. Converts back to the same pid."""

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> NoReturn:
        raise TypeError("erlang.Pid cannot be subclassed")

    def __repr__(self) -> str:
        parsed = _parse_pid(self._etf)
        if parsed is None:
            return f"<erlang.Pid {_hex_prefix(self._etf)}>"
        node, ident, serial = parsed
        return f"<erlang.Pid {ident}.{serial} @ {node}>"


@final
class Ref(_Term):
    """An opaque BEAM reference. Converts back to the same reference."""

    __slots__ = ()

    def __init_subclass__(cls, **kwargs: Any) -> NoReturn:
        raise TypeError("erlang.Ref cannot be subclassed")

    def __repr__(self) -> str:
        parsed = _parse_ref(self._etf)
        if parsed is None:
            return f"<erlang.Ref {_hex_prefix(self._etf)}>"
        node, ids = parsed
        # Like the BEAM's #Ref<0.C.B.A>: most significant word first.
        return f"<erlang.Ref {'.'.join(str(i) for i in reversed(ids))} @ {node}>"


def _hex_prefix(data: bytes, shown: int = 24) -> str:
    """The first bytes of ``data`` in hex, for terms that do not parse."""
    return data[:shown].hex() + ("..." if len(data) > shown else "")


class _Reader:
    """A bounds-checked reader over external-term-format bytes."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("truncated term")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def atom(self) -> str:
        tag = self.u8()
        if tag in (100, 118):  # ATOM_EXT, ATOM_UTF8_EXT
            length = self.u16()
        elif tag in (115, 119):  # SMALL_ATOM_EXT, SMALL_ATOM_UTF8_EXT
            length = self.u8()
        else:
            raise ValueError("not an atom")
        return self.take(length).decode("utf-8", "replace")


def _parse_pid(etf: bytes) -> tuple[str, int, int] | None:
    """``(node, id, serial)`` of a pid, or None if ``etf`` is not one."""
    try:
        r = _Reader(etf)
        if r.u8() != 131 or r.u8() not in (88, 103):  # NEW_PID_EXT, PID_EXT
            return None
        return r.atom(), r.u32(), r.u32()
    except ValueError:
        return None


def _parse_ref(etf: bytes) -> tuple[str, list[int]] | None:
    """``(node, id words)`` of a reference, or None if ``etf`` is not one."""
    try:
        r = _Reader(etf)
        if r.u8() != 131:
            return None
        tag = r.u8()
        if tag not in (90, 114):  # NEWER_REFERENCE_EXT, NEW_REFERENCE_EXT
            return None
        words = r.u16()
        node = r.atom()
        r.take(4 if tag == 90 else 1)  # creation
        return node, [r.u32() for _ in range(words)]
    except ValueError:
        return None


def __getattr__(name: str) -> Any:
    """``erlang.name`` and ``from erlang import name``: the BEAM function
    registered as ``name``, as a callable (whether it is registered is
    checked when it is called). Private and dunder names are not looked up."""
    if name.startswith("_"):
        raise AttributeError(f"module 'erlang' has no attribute {name!r}")
    return _callback.function(name)
