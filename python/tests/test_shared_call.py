"""erlang.SharedCall, AsyncSharedCall and Stats, run inside the embedded interpreter.

No test sleeps for a guessed time: executions are held on an Event, and a
test releases them once the counters show every caller has joined.
"""

import asyncio
import threading
import time
import unittest

import erlang
from erlang import AsyncSharedCall, SharedCall, Stats


class Interrupted(BaseException):
    """Stands for an interruption (pybridge.Timeout, KeyboardInterrupt)."""


def until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.001)


class Held:
    """A function that counts its runs and blocks until released."""

    def __init__(self, result=None, error=None):
        self.gate = threading.Event()
        self.runs = 0
        self.result = result
        self.error = error

    def __call__(self, *args, **kwargs):
        self.runs += 1
        self.gate.wait(30)
        if self.error is not None:
            raise self.error
        return self.result if self.result is not None else (args, kwargs)


def threads(n, target):
    out = [None] * n

    def run(i):
        try:
            out[i] = ("ok", target())
        except BaseException as error:  # noqa: B902 - recorded for the test
            out[i] = ("raised", error)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    return ts, out


def join(ts):
    for t in ts:
        t.join(30)
        assert not t.is_alive()


class SharedCallTest(unittest.TestCase):
    def test_exported_from_erlang(self):
        self.assertIs(erlang.SharedCall, SharedCall)
        self.assertIn("SharedCall", erlang.__all__)

    def test_concurrent_callers_share_one_execution(self):
        shared = SharedCall()
        fn = Held(result=42)
        ts, out = threads(8, lambda: shared.call("k", fn))
        until(lambda: shared.get_stats().hits == 7)
        fn.gate.set()
        join(ts)
        self.assertEqual(out, [("ok", 42)] * 8)
        self.assertEqual(fn.runs, 1)
        self.assertEqual(shared.get_stats(), Stats(hits=7, misses=1, errors=0, active=0))
        self.assertAlmostEqual(shared.get_stats().hit_rate, 7 / 8)

    def test_the_exception_is_shared_and_counted_once(self):
        shared = SharedCall()
        error = ValueError("boom")
        fn = Held(error=error)
        ts, out = threads(5, lambda: shared.call("k", fn))
        until(lambda: shared.get_stats().hits == 4)
        fn.gate.set()
        join(ts)
        self.assertEqual([kind for kind, _ in out], ["raised"] * 5)
        self.assertTrue(all(e is error for _, e in out))
        self.assertEqual(shared.get_stats().errors, 1)
        self.assertEqual(fn.runs, 1)

    def test_a_finished_key_is_free_again(self):
        shared = SharedCall()
        runs = []
        self.assertEqual(shared.call("k", lambda: runs.append(1) or len(runs)), 1)
        self.assertEqual(shared.call("k", lambda: runs.append(1) or len(runs)), 2)

    def test_an_interrupted_executing_caller_makes_a_waiter_run_it_again(self):
        shared = SharedCall()
        first = Held(error=Interrupted())
        second = Held(result="second")
        calls = iter([first, second])
        lock = threading.Lock()

        def fn():
            with lock:
                f = next(calls)
            return f()

        ts, out = threads(4, lambda: shared.call("k", fn))
        until(lambda: shared.get_stats().hits == 3)
        first.gate.set()
        # Of the three waiters, one runs the call again; the others join it.
        until(lambda: second.runs == 1)
        until(lambda: shared.get_stats().hits == 5)
        second.gate.set()
        join(ts)
        kinds = sorted(kind for kind, _ in out)
        self.assertEqual(kinds, ["ok", "ok", "ok", "raised"])
        self.assertTrue(all(v == "second" for kind, v in out if kind == "ok"))
        self.assertTrue(all(isinstance(v, Interrupted) for kind, v in out if kind == "raised"))
        self.assertEqual(shared.get_stats().errors, 0)
        self.assertEqual(shared.get_stats().misses, 2)

    def test_a_waiters_timeout_leaves_the_others_waiting(self):
        shared = SharedCall()
        fn = Held(result="v")
        ts, out = threads(2, lambda: shared.call("k", fn))
        until(lambda: shared.get_stats().hits == 1)
        with self.assertRaises(TimeoutError):
            shared.call_within(0.01, "k", fn)
        fn.gate.set()
        join(ts)
        self.assertEqual(out, [("ok", "v")] * 2)
        self.assertEqual(fn.runs, 1)

    def test_forget_while_waiting(self):
        shared = SharedCall()
        old = Held(result="old")
        new = Held(result="new")
        ts_old, out_old = threads(2, lambda: shared.call("k", old))
        until(lambda: shared.get_stats().hits == 1)
        shared.forget("k")
        ts_new, out_new = threads(1, lambda: shared.call("k", new))
        until(lambda: new.runs == 1)
        old.gate.set()
        join(ts_old)
        self.assertEqual(out_old, [("ok", "old")] * 2)
        new.gate.set()
        join(ts_new)
        self.assertEqual(out_new, [("ok", "new")])
        shared.forget_all()
        self.assertEqual(shared.get_stats().active, 0)

    def test_decorator_default_key_and_key_fn(self):
        shared = SharedCall()
        runs = []

        @shared.group()
        def double(x, scale=2):
            runs.append(x)
            return x * scale

        self.assertEqual(double(2), 4)
        self.assertEqual(double(2, scale=3), 6)
        self.assertEqual(double.__name__, "double")

        @shared.group(key_fn=lambda user_id, *a, **k: f"user:{user_id}")
        def fetch(user_id, details=False):
            return (user_id, details)

        self.assertEqual(fetch(1, details=True), (1, True))
        # call with no key makes the default one (shared-call-py does the same).
        self.assertEqual(shared.call(None, lambda x: x * 2, 5), 10)
        self.assertEqual(shared.get_stats().in_flight, 0)
        # A function that calls itself with its own key is told so instead
        # of waiting for itself forever.
        with self.assertRaisesRegex(RuntimeError, "would wait for itself"):
            shared.call(None, double, 5)

    def test_bad_keys_and_failing_key_fn(self):
        shared = SharedCall()
        with self.assertRaisesRegex(TypeError, "coalescing key .* is not hashable"):
            shared.call(["list"], lambda: 1)

        @shared.group()
        def f(x):
            return x

        with self.assertRaisesRegex(TypeError, "arguments are not hashable.*key_fn"):
            f([1, 2])

        @shared.group(key_fn=lambda x: 1 / 0)
        def g(x):
            return x

        with self.assertRaises(ZeroDivisionError):
            g(1)
        self.assertEqual(shared.get_stats(), Stats())
        with self.assertRaises(ValueError):
            SharedCall(timeout=-1)

    def test_stats_reset_and_named_groups(self):
        shared = SharedCall(name="test-named")
        shared.call("k", lambda: 1)
        rows = dict((r[0], r[1:]) for r in erlang._shared_call._named_stats())
        self.assertEqual(rows["test-named"], (0, 1, 0, 0))
        shared.reset_stats()
        self.assertEqual(shared.get_stats(), Stats())
        self.assertEqual(Stats().hit_rate, 0.0)

    def test_many_threads_one_execution(self):
        shared = SharedCall()
        fn = Held(result=1)
        ts, out = threads(64, lambda: shared.call("k", fn))
        until(lambda: shared.get_stats().hits == 63)
        fn.gate.set()
        join(ts)
        self.assertEqual(fn.runs, 1)
        self.assertEqual(out, [("ok", 1)] * 64)


class SeedExamplesTest(unittest.TestCase):
    """shared-call-py's documented examples, with only the import line changed."""

    def test_async_examples(self):
        from erlang import AsyncSharedCall

        class Db:
            async def get_user(self, user_id):
                await asyncio.sleep(0)
                return {"id": user_id}

        db = Db()

        async def main():
            shared = AsyncSharedCall()

            @shared.group()
            async def fetch_user(user_id: int):
                return await db.get_user(user_id)

            @shared.group(key_fn=lambda x, y: f"{x}")
            async def compute(x: int, y: int):
                return x + y

            async def fetch_from_db(user_id):
                return await db.get_user(user_id)

            self.assertEqual(await fetch_user(1), {"id": 1})
            self.assertEqual(await compute(1, 2), 3)
            result = await shared.call("user:42", fetch_from_db, user_id=42)
            self.assertEqual(result, {"id": 42})
            stats = await shared.get_stats()
            self.assertEqual(f"Efficiency: {stats.hit_rate:.1%}", "Efficiency: 0.0%")
            self.assertEqual(f"Coalesced: {stats.hits} Executed: {stats.misses} In-flight: {stats.active}", "Coalesced: 0 Executed: 3 In-flight: 0")
            await shared.reset_stats()
            await shared.forget("user:42")
            await shared.forget_all()

        asyncio.run(main())

    def test_sync_key_fn_and_global_examples(self):
        import uuid

        from erlang import SharedCall, async_shared, shared

        class Db:
            def get_user(self, user_id):
                return {"id": user_id}

        db = Db()
        own = SharedCall()

        @own.group()
        def fetch_user(user_id: int):
            return db.get_user(user_id)

        @own.group(key_fn=lambda user_id, *args, **kwargs: f"user:{user_id}")
        def fetch_user_details(user_id: int, include_details: bool = False):
            return (user_id, include_details)

        @own.group(key_fn=lambda org, repo: f"{org}/{repo}")
        def get_github_repo(org: str, repo: str):
            return f"{org}/{repo}"

        @own.group(key_fn=lambda: str(uuid.uuid4()))
        def no_coalesce():
            return "ran"

        results = [fetch_user(42) for _ in range(100)]
        self.assertEqual(results, [{"id": 42}] * 100)
        self.assertEqual(fetch_user_details(7, include_details=True), (7, True))
        self.assertEqual(get_github_repo("a", "b"), "a/b")
        self.assertEqual(no_coalesce(), "ran")
        self.assertEqual(own.call("user:42", lambda user_id: user_id, user_id=42), 42)

        @shared.group()
        def sync_function():
            return "sync"

        @async_shared.group()
        async def async_function():
            return "async"

        self.assertEqual(sync_function(), "sync")
        self.assertEqual(asyncio.run(async_function()), "async")


class AsyncSharedCallTest(unittest.TestCase):
    def run_async(self, coro):
        return asyncio.run(coro)

    def test_concurrent_awaits_share_one_execution(self):
        async def main():
            shared = AsyncSharedCall()
            gate = asyncio.Event()
            runs = []

            @shared.group()
            async def fetch(user_id):
                runs.append(user_id)
                await gate.wait()
                return {"id": user_id}

            tasks = [asyncio.ensure_future(fetch(42)) for _ in range(10)]
            while (await shared.get_stats()).hits < 9:
                await asyncio.sleep(0)
            gate.set()
            results = await asyncio.gather(*tasks)
            self.assertEqual(results, [{"id": 42}] * 10)
            self.assertEqual(runs, [42])
            stats = await shared.get_stats()
            self.assertEqual((stats.hits, stats.misses, stats.active), (9, 1, 0))

        self.run_async(main())

    def test_the_seed_error_example(self):
        async def main():
            shared = AsyncSharedCall()

            @shared.group()
            async def may_fail():
                await asyncio.sleep(0)
                raise ValueError("Failed!")

            tasks = [may_fail() for _ in range(10)]
            with self.assertRaises(ValueError):
                await asyncio.gather(*tasks)
            stats = await shared.get_stats()
            self.assertEqual(stats.errors, 1)

        self.run_async(main())

    def test_a_cancelled_executing_task_makes_a_waiter_run_it_again(self):
        async def main():
            shared = AsyncSharedCall()
            gate = asyncio.Event()
            runs = []

            async def fn():
                runs.append(1)
                if len(runs) == 1:
                    await asyncio.Event().wait()  # never set: cancelled below
                await gate.wait()
                return "value"

            leader = asyncio.ensure_future(shared.call("k", fn))
            await asyncio.sleep(0)
            followers = [asyncio.ensure_future(shared.call("k", fn)) for _ in range(3)]
            while (await shared.get_stats()).hits < 3:
                await asyncio.sleep(0)
            leader.cancel()
            while len(runs) < 2:
                await asyncio.sleep(0)
            gate.set()
            self.assertEqual(await asyncio.gather(*followers), ["value"] * 3)
            with self.assertRaises(asyncio.CancelledError):
                await leader
            self.assertEqual(len(runs), 2)

        self.run_async(main())

    def test_cancelling_or_timing_out_a_waiter_leaves_the_others(self):
        async def main():
            shared = AsyncSharedCall()
            gate = asyncio.Event()
            runs = []

            async def fn():
                runs.append(1)
                await gate.wait()
                return "v"

            tasks = [asyncio.ensure_future(shared.call("k", fn)) for _ in range(3)]
            while (await shared.get_stats()).hits < 2:
                await asyncio.sleep(0)
            tasks[1].cancel()
            with self.assertRaises(TimeoutError):
                await shared.call_within(0.01, "k", fn)
            gate.set()
            self.assertEqual(await tasks[0], "v")
            self.assertEqual(await tasks[2], "v")
            self.assertEqual(runs, [1])
            await shared.forget("k")
            await shared.forget_all()
            await shared.reset_stats()
            self.assertEqual((await shared.get_stats()).hits, 0)

        self.run_async(main())


if __name__ == "__main__":
    unittest.main()
