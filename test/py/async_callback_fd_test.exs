defmodule Py.AsyncCallbackFdTest do
  # Counts the process's open file descriptors: not async, so no other test
  # opens or closes many meanwhile.
  use ExUnit.Case, async: false

  # `await erlang.async_call(...)` wakes its loop through a pipe the answers
  # write to. A coroutine cancelled while it waits must leave nothing of that
  # behind: no descriptor open once its loop closes, and no byte written by
  # the late answer into whatever descriptor reuses the number.

  setup do
    test = self()

    # Answers when released, from a process the test can wait for.
    :ok =
      Py.register_function("fd_test_hold", fn ->
        send(test, {:held, self()})

        receive do
          :release -> :late
        end
      end)

    on_exit(fn -> Py.unregister_function("fd_test_hold") end)

    :ok =
      Py.exec("""
      import asyncio, erlang, gc, os, socket

      def fd_count():
          return len(os.listdir("/proc/self/fd"))

      async def cancel_one():
          task = asyncio.ensure_future(erlang.async_call("fd_test_hold"))
          await asyncio.sleep(0)  # it has sent the request and waits
          task.cancel()
          try:
              await task
          except asyncio.CancelledError:
              pass

      kept = []

      def cancelled_in_loops(n, keep):
          kept.clear()
          for _ in range(n):
              loop = asyncio.new_event_loop()
              loop.run_until_complete(cancel_one())
              loop.close()
              if keep:
                  kept.append(loop)
          gc.collect()
          return len(kept)

      # Socket pairs: a byte written to either end shows at the other.
      spares = []

      def open_spares(n):
          for _ in range(n):
              a, b = socket.socketpair()
              a.setblocking(False)
              b.setblocking(False)
              spares.append((a, b))

      def bytes_in_spares():
          got = 0
          for pair in spares:
              for end in pair:
                  try:
                      got += len(end.recv(4096))
                  except BlockingIOError:
                      pass
                  end.close()
          spares.clear()
          return got
      """)

    :ok
  end

  # Waits for `n` held callbacks, answers them all, and waits until every
  # answer has been delivered (each runs in a process that ends after).
  defp release_held(n) do
    pids = for _ <- 1..n, do: assert_receive({:held, pid}, 10_000) && pid
    refs = Enum.map(pids, &Process.monitor/1)
    Enum.each(pids, &send(&1, :release))
    for ref <- refs, do: assert_receive({:DOWN, ^ref, :process, _, _}, 10_000)
  end

  defp assert_fds_near(before) do
    {:ok, now} = Py.call(:__main__, :fd_count)
    assert now - before < 20, "#{now - before} more descriptors open than before"
  end

  test "1,000 loops closed after a cancelled callback each leave no descriptor open" do
    {:ok, before} = Py.call(:__main__, :fd_count)
    # The closed loops are kept, as a program may keep them.
    assert Py.call(:__main__, :cancelled_in_loops, [1_000, true], timeout: 120_000) ==
             {:ok, 1_000}

    # A pipe left per loop would be 2,000 descriptors more. The count is the
    # whole OS process's, which the runtime's own threads (a reconnecting
    # Redis follower, a lazily made epoll) may move by one or two meanwhile:
    # allow that, not a descriptor per loop.
    assert_fds_near(before)
    # Their answers come after all; still nothing is left open.
    release_held(1_000)
    assert_fds_near(before)
    Py.exec!("kept.clear()")
  end

  test "the late answer of a cancelled callback writes to no descriptor" do
    assert Py.call(:__main__, :cancelled_in_loops, [50, false]) == {:ok, 0}
    # New descriptors take the numbers the loops' pipes had.
    assert Py.call(:__main__, :open_spares, [20]) == {:ok, nil}
    release_held(50)
    assert Py.call(:__main__, :bytes_in_spares) == {:ok, 0}
  end
end
