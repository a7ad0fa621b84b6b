"""erlang.SharedDict and the state_* functions, run inside the embedded interpreter."""

import decimal
import fractions
import math
import threading
import time
import unittest
import uuid

import erlang
from erlang import SharedDict


def in_subinterpreter():
    """Whether this runs in a sub-interpreter (3.12: _xxsubinterpreters, 3.13+: _interpreters)."""
    for name in ("_interpreters", "_xxsubinterpreters"):
        try:
            mod = __import__(name)
        except ImportError:
            continue
        current = mod.get_current()
        return int(current[0] if isinstance(current, tuple) else current) != 0
    return False


def fresh():
    return SharedDict(f"py-test-{uuid.uuid4()}", create=True)


class DictFace(unittest.TestCase):
    def setUp(self):
        self.sd = fresh()

    def tearDown(self):
        self.sd.destroy()

    def test_mapping_operations(self):
        sd = self.sd
        sd["a"] = {"x": [1, 2.5, None, True, b"raw", (1, 2)], "s": {1, 2}}
        self.assertEqual(sd["a"], {"x": [1, 2.5, None, True, b"raw", (1, 2)], "s": {1, 2}})
        self.assertIn("a", sd)
        self.assertNotIn("b", sd)
        self.assertNotIn(1, sd)
        self.assertEqual(len(sd), 1)
        self.assertEqual(list(sd), ["a"])
        self.assertEqual(sd.keys(), ["a"])
        self.assertEqual(sd.items(), [("a", sd["a"])])
        self.assertEqual(sd.values(), [sd["a"]])
        self.assertEqual(sd.get("b"), None)
        self.assertEqual(sd.get("b", 7), 7)
        with self.assertRaises(KeyError):
            sd["b"]
        with self.assertRaises(KeyError):
            del sd["b"]
        sd.delete("b")
        del sd["a"]
        self.assertEqual(len(sd), 0)

    def test_reads_are_copies(self):
        self.sd["l"] = [1, 2]
        got = self.sd["l"]
        got.append(3)
        self.assertEqual(self.sd["l"], [1, 2])

    def test_other_objects_are_pickled_and_come_back_equal(self):
        for value in [decimal.Decimal("1.25"), fractions.Fraction(1, 3), [decimal.Decimal(1)]]:
            self.sd["v"] = value
            self.assertEqual(self.sd["v"], value)
        with self.assertRaises(Exception):
            self.sd["lock"] = threading.Lock()  # cannot be pickled
        self.assertEqual(self.sd["v"], [decimal.Decimal(1)], "a failed put changes nothing")

    def test_keys_must_be_str(self):
        for bad in [1, b"a", None, ("a",)]:
            with self.assertRaises(TypeError):
                self.sd[bad] = 1
            with self.assertRaises(TypeError):
                self.sd.get(bad)

    def test_ttl(self):
        self.sd.set("t", 1, ttl=60)
        self.assertTrue(0 < self.sd.ttl("t") <= 60)
        self.sd["p"] = 1
        self.assertEqual(self.sd.ttl("p"), math.inf)
        self.assertIsNone(self.sd.ttl("missing"))
        with self.assertRaises(ValueError):
            self.sd.set("t", 1, ttl=-1)
        self.sd.set("gone", 1, ttl=0.02)
        deadline = time.monotonic() + 30
        while "gone" in self.sd:
            self.assertLess(time.monotonic(), deadline, "never expired")
        # Once gone, it never comes back, from any read.
        self.assertIsNone(self.sd.get("gone"))
        self.assertNotIn("gone", self.sd.keys())
        self.assertEqual(len(self.sd), 2)

    def test_get_and_set_take_their_arguments_like_python_methods(self):
        sd = self.sd
        sd.set(key="k", value=[1, "a"])
        sd.set("f", 1, 0.5)  # ttl given positionally
        self.assertTrue(0 < sd.ttl("f") <= 0.5)
        sd.set("n", None, ttl=None)
        self.assertEqual(sd.ttl("n"), math.inf)
        self.assertEqual(sd.get(key="k"), [1, "a"])
        self.assertEqual(sd.get("missing", default=3), 3)
        self.assertIsNone(sd.get("n", 5), "a stored None is a value, not a miss")
        for bad_call in [
            lambda: sd.get(),
            lambda: sd.get("k", 1, 2),
            lambda: sd.get("k", nope=1),
            lambda: sd.get("k", key="k"),
            lambda: sd.set("k"),
            lambda: sd.set("k", 1, 1, 1),
            lambda: sd.set("k", 1, tll=1),
        ]:
            with self.assertRaises(TypeError):
                bad_call()
        for bad_ttl in [-1, -0.5, True, "1", float("nan")]:
            with self.assertRaises(ValueError):
                sd.set("k", 2, ttl=bad_ttl)
        self.assertEqual(sd["k"], [1, "a"], "a refused set changes nothing")
        sd.set("d", decimal.Decimal("2.5"), ttl=60)
        self.assertEqual(sd.get("d"), decimal.Decimal("2.5"))
        self.assertTrue(0 < sd.ttl("d") <= 60)

    def test_incr_and_setdefault(self):
        self.assertEqual(self.sd.incr("n"), 1)
        self.sd.incr("n", 2**62)
        self.assertEqual(self.sd.incr("n", 2**62), 2**63 + 1, "grows past 64 bits")
        with self.assertRaises(OverflowError):
            self.sd.incr("n", 2**70)  # the step itself is a 64-bit integer
        self.sd["s"] = "x"
        with self.assertRaises(TypeError):
            self.sd.incr("s")
        self.assertEqual(self.sd.setdefault("d", 1), 1)
        self.assertEqual(self.sd.setdefault("d", 2), 1)

    def test_destroyed(self):
        other = SharedDict(self.sd.name)
        self.sd.destroy()
        self.sd.destroy()
        with self.assertRaises(RuntimeError):
            other["a"]
        with self.assertRaises(KeyError):
            SharedDict(self.sd.name)
        with self.assertRaises(RuntimeError):
            SharedDict(10**15)  # no such dict
        with self.assertRaises(TypeError):
            SharedDict(1.5)


class Concurrency(unittest.TestCase):
    def test_eight_threads_incrementing_lose_nothing(self):
        sd = fresh()
        sd["locked"] = 0

        def work():
            for _ in range(1_000):
                sd.incr("incr")
                with sd.locked("locked"):
                    sd["locked"] = sd["locked"] + 1

        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sd["incr"], 8_000)
        self.assertEqual(sd["locked"], 8_000)
        sd.destroy()

    def test_lock_excludes_other_threads_and_times_out(self):
        sd = fresh()
        self.assertTrue(sd.lock("k"))
        got = []
        t = threading.Thread(target=lambda: got.append(sd.lock("k", timeout=0.01)))
        t.start()
        t.join()
        self.assertEqual(got, [False])
        self.assertTrue(sd.unlock("k"))
        self.assertFalse(sd.unlock("k"))
        sd.destroy()


    def test_threads_python_starts_read_and_write_values(self):
        # In a sub-interpreter too: the bridge finds the thread's interpreter.
        sd = fresh()
        sd["a"] = [1, {"b": (2, None)}]
        got = []

        def work():
            got.append(sd["a"])
            sd["from_thread"] = {"in_sub": in_subinterpreter()}

        t = threading.Thread(target=work)
        t.start()
        t.join()
        self.assertEqual(got, [[1, {"b": (2, None)}]])
        self.assertEqual(sd["from_thread"], {"in_sub": in_subinterpreter()})
        sd.destroy()


class State(unittest.TestCase):
    def test_state_functions(self):
        erlang.state_set("py_state_test", {"a": 1})
        self.assertEqual(erlang.state_get("py_state_test"), {"a": 1})
        self.assertIn("py_state_test", erlang.state_keys())
        erlang.state_delete("py_state_test")
        self.assertIsNone(erlang.state_get("py_state_test"))
        self.assertEqual(erlang.state_get("py_state_test", 0), 0)
        self.assertEqual(erlang.state_incr("py_state_counter", 5), 5)
        self.assertEqual(erlang.state_decr("py_state_counter", 5), 0)
        erlang.state_delete("py_state_counter")


if __name__ == "__main__":
    unittest.main()
