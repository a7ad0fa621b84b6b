"""Tests of the ``erlang`` module (python/erlang), run inside the embedded interpreter."""

from __future__ import annotations

import copy
import pickle
import unittest

import erlang
import fixtures


class PidTest(unittest.TestCase):
    def test_pids_from_the_beam_are_erlang_pids(self) -> None:
        self.assertIsInstance(fixtures.VALUES["pid"], erlang.Pid)

    def test_equal_pids_compare_and_hash_equal(self) -> None:
        a, b = fixtures.VALUES["pid"], fixtures.VALUES["same_pid"]
        self.assertIsNot(a, b)
        self.assertEqual(a, b)
        self.assertEqual(hash(a), hash(b))
        self.assertEqual(len({a, b}), 1)

    def test_different_pids_differ(self) -> None:
        self.assertNotEqual(fixtures.VALUES["pid"], fixtures.VALUES["other_pid"])

    def test_bytes_is_the_external_term_format(self) -> None:
        self.assertEqual(bytes(fixtures.VALUES["pid"])[:1], b"\x83")

    def test_copies_are_equal(self) -> None:
        pid = fixtures.VALUES["pid"]
        self.assertEqual(copy.copy(pid), pid)
        self.assertEqual(copy.deepcopy({"p": pid})["p"], pid)

    def test_repr_names_the_type(self) -> None:
        self.assertIn("erlang.Pid", repr(fixtures.VALUES["pid"]))


class RefTest(unittest.TestCase):
    def test_refs_are_opaque_and_comparable(self) -> None:
        ref = fixtures.VALUES["ref"]
        self.assertIsInstance(ref, erlang.Ref)
        self.assertEqual(ref, fixtures.VALUES["same_ref"])
        self.assertNotEqual(ref, fixtures.VALUES["other_ref"])

    def test_refs_cannot_be_pickled_silently_into_something_else(self) -> None:
        with self.assertRaises(Exception):
            pickle.dumps(fixtures.VALUES["ref"])


# :erlang.term_to_binary(self()) on OTP 25, `nonode@nohost`, <0.9.0>.
PID = bytes(
    [131, 88, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115, 116]
    + [0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0]
)
# :erlang.term_to_binary(make_ref()) on OTP 25.
REF = bytes(
    [131, 90, 0, 3, 100, 0, 13, 110, 111, 110, 111, 100, 101, 64, 110, 111, 104, 111, 115]
    + [116, 0, 0, 0, 0, 0, 2, 30, 239, 11, 128, 0, 2, 104, 102, 59, 192]
)


def unsealed(cls: type, etf: bytes) -> object:
    """An instance built behind the classes' back, as hostile code could."""
    obj = object.__new__(cls)
    erlang._Term.__dict__["_etf"].__set__(obj, etf)
    return obj


class TermTest(unittest.TestCase):
    def test_python_cannot_call_the_classes(self) -> None:
        for cls in (erlang.Pid, erlang.Ref):
            with self.assertRaisesRegex(TypeError, "come only from the BEAM"):
                cls(PID)
            with self.assertRaises(TypeError):
                cls()

    def test_repr_shows_the_beam_notation(self) -> None:
        self.assertRegex(repr(fixtures.VALUES["pid"]), r"^<erlang\.Pid \d+\.\d+ @ \S+@\S+>$")
        self.assertRegex(repr(fixtures.VALUES["ref"]), r"^<erlang\.Ref \d+(\.\d+)+ @ \S+@\S+>$")
        self.assertEqual(repr(unsealed(erlang.Pid, PID)), "<erlang.Pid 9.0 @ nonode@nohost>")
        self.assertEqual(
            repr(unsealed(erlang.Ref, REF)),
            "<erlang.Ref 1751530432.192937986.138991 @ nonode@nohost>",
        )

    def test_unparsable_terms_show_their_bytes(self) -> None:
        self.assertEqual(repr(unsealed(erlang.Pid, b"\x01\x02\x03")), "<erlang.Pid 010203>")
        self.assertEqual(repr(unsealed(erlang.Pid, PID[:10])), f"<erlang.Pid {PID[:10].hex()}>")
        self.assertTrue(repr(unsealed(erlang.Ref, bytes(30))).endswith("...>"))

    def test_pids_and_refs_are_immutable_and_final(self) -> None:
        pid = fixtures.VALUES["pid"]
        with self.assertRaises(AttributeError):
            pid._etf = b""  # type: ignore[misc]
        with self.assertRaises(AttributeError):
            pid._seal = 0  # type: ignore[misc]
        with self.assertRaises(AttributeError):
            pid.other = 1  # type: ignore[attr-defined]
        with self.assertRaises(TypeError):
            type("MyPid", (erlang.Pid,), {})

    def test_a_pid_never_equals_a_ref_with_the_same_bytes(self) -> None:
        pid = unsealed(erlang.Pid, PID)
        ref = unsealed(erlang.Ref, PID)
        self.assertNotEqual(pid, ref)
        self.assertEqual(len({pid, ref, unsealed(erlang.Pid, PID)}), 2)


if __name__ == "__main__":
    unittest.main()
