"""Python side of request coalescing (issue 13): the cost of a call through
erlang.SharedCall / AsyncSharedCall against shared-call-py 0.1.2 itself and
against a plain lock + dict + Event implementation, in the same run.

Run by bench/coalesce.exs with a Python that has shared-call-py installed
(it needs Python >= 3.12):

    python bench/shared_call.py python/erlang/_shared_call.py

It prints one line per variant: its name and the nanoseconds per call (the
median of 15 interleaved rounds).
pybridge's module is pure Python, so it is loaded here from its file and
timed in the same interpreter as the others.
"""

import asyncio
import importlib.util
import sys
import threading
import time

import shared_call_py

spec = importlib.util.spec_from_file_location("erlang._shared_call", sys.argv[1])
ours = importlib.util.module_from_spec(spec)
sys.modules["erlang._shared_call"] = ours
spec.loader.exec_module(ours)


class PlainShared:
    """The textbook version: one lock, a dict of Events, results beside them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.flights = {}

    def call(self, key, fn, *args, **kwargs):
        with self.lock:
            flight = self.flights.get(key)
            leader = flight is None
            if leader:
                flight = self.flights[key] = [threading.Event(), None, None]
        if leader:
            try:
                flight[1] = fn(*args, **kwargs)
            except Exception as error:
                flight[2] = error
            finally:
                with self.lock:
                    del self.flights[key]
                flight[0].set()
        else:
            flight[0].wait()
        if flight[2] is not None:
            raise flight[2]
        return flight[1]


class PlainAsyncShared:
    def __init__(self):
        self.flights = {}

    async def call(self, key, fn, *args, **kwargs):
        flight = self.flights.get(key)
        if flight is None:
            flight = self.flights[key] = [asyncio.Event(), None, None]
            try:
                flight[1] = await fn(*args, **kwargs)
            except Exception as error:
                flight[2] = error
            finally:
                del self.flights[key]
                flight[0].set()
        else:
            await flight[0].wait()
        if flight[2] is not None:
            raise flight[2]
        return flight[1]


N = 20_000
ROUNDS = 15


def work(x):
    return x


async def awork(x):
    return x


def time_sync(call):
    t0 = time.perf_counter_ns()
    for i in range(N):
        call("k", work, i)
    return (time.perf_counter_ns() - t0) / N


def time_async(call):
    async def loop():
        t0 = time.perf_counter_ns()
        for i in range(N):
            await call("k", awork, i)
        return (time.perf_counter_ns() - t0) / N

    return asyncio.run(loop())


# Every round times each variant once, in turn, so all of them see the same
# moments of a shared machine; each figure is the median of its rounds.
variants = {
    "sync_bare": lambda: time_sync(lambda k, f, x: f(x)),
    "sync_ours": lambda: time_sync(ours.SharedCall().call),
    "sync_theirs": lambda: time_sync(shared_call_py.SharedCall().call),
    "sync_plain": lambda: time_sync(PlainShared().call),
    "async_bare": lambda: time_async(lambda k, f, x: f(x)),
    "async_ours": lambda: time_async(ours.AsyncSharedCall().call),
    "async_theirs": lambda: time_async(shared_call_py.AsyncSharedCall().call),
    "async_plain": lambda: time_async(PlainAsyncShared().call),
}
times = {name: [] for name in variants}
for _ in range(ROUNDS):
    for name, run in variants.items():
        times[name].append(run())

print(f"python {sys.version.split()[0]}")
for name, ts in times.items():
    print(f"{name} {sorted(ts)[ROUNDS // 2]:.1f}")
