"""Tests of the Rust-provided ``erlang`` module, run inside the embedded interpreter."""

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


if __name__ == "__main__":
    unittest.main()
