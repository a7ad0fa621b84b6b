defmodule Py.TimeoutTest do
  # Not async: these tests burn CPU in Python on purpose.
  use ExUnit.Case, async: false

  import Py.TestHelpers
  alias Py.HardeningHelpers

  @tag :tmp_dir
  test "a timed-out call returns {:error, %Py.Error{type: :timeout}} while Python still runs",
       %{tmp_dir: dir} do
    # The call blocks in C until the latch is released, which happens only
    # after the caller has its error: the caller did not wait for Python.
    # The wait of Py.eval/4 (Py.Call's receive) is entered only once the
    # call is known to be blocked there, and with no time left, so the
    # timeout comes while Python runs however slow the machine is (a 100
    # ms timeout could end the call before a loaded machine started it).
    ctx = Py.Context.new()
    latch = HardeningHelpers.latch(dir)
    job = {:eval, HardeningHelpers.latch_wait(), %{latch: elem(latch, 0)}}
    ref = make_ref()
    {:running, handle} = Py.Call.start(ctx.ref, Py.Call.namespace(ctx.ref), ref, job, 30_000)
    assert eventually(fn -> HardeningHelpers.waiting?(latch) end, 30_000)

    assert {{:error, %Py.Error{type: :timeout, message: "Python call exceeded 0 ms"}}, nil} =
             Py.Call.wait(handle, ref, 0)

    assert Py.Context.info(ctx).in_flight == 1

    HardeningHelpers.release(latch)
    assert eventually(fn -> Py.Context.info(ctx).in_flight == 0 end, 30_000)
    assert Py.Context.info(ctx).cancelled_total == 1
    assert Process.info(self(), :messages) == {:messages, []}
  end

  test "timeout interrupts the running Python and frees the context" do
    # One worker: the context can only answer the next call if the endless
    # loop really stopped. The loop records that it started: a timeout that
    # came before it ran (a loaded machine may not start the call within
    # the timeout) proves nothing, so the call is made again with a longer
    # timeout until its loop ran and was interrupted. Every attempt must
    # time out and leave the context free.
    ctx = Py.Context.new(max_workers: 1)
    assert Py.eval(ctx, "1") == {:ok, 1}
    :ok = Py.exec(ctx, "spun = []")

    spun? =
      Enum.find_value([200, 800, 3_200, 12_800, 30_000], false, fn timeout ->
        assert {:error, %Py.Error{type: :timeout}} =
                 Py.exec(ctx, "spun.append(1)\nwhile True:\n    pass\n", timeout: timeout)

        assert Py.eval(ctx, "1 + 1", %{}, timeout: 30_000) == {:ok, 2}
        Py.eval(ctx, "len(spun) > 0", %{}, timeout: 30_000) == {:ok, true}
      end)

    assert spun?, "the loop never started within a 30 s timeout"
    assert eventually(fn -> Py.Context.info(ctx).in_flight == 0 end, 30_000)
    assert Py.Context.info(ctx).queue_length == 0
  end

  test "timeouts on a call and the bang variant" do
    ctx = Py.Context.new(max_workers: 1)
    :ok = Py.exec(ctx, "def spin():\n    while True:\n        pass\n")

    assert {:error, %Py.Error{type: :timeout}} = Py.call(ctx, :__main__, :spin, [], timeout: 100)

    assert_raise Py.Error, ~r/^timeout: /, fn ->
      Py.call!(ctx, :__main__, :spin, [], timeout: 100)
    end

    assert Py.call(ctx, :math, :sqrt, [4], timeout: 30_000) == {:ok, 2.0}
  end

  @tag :tmp_dir
  test "a caller that exits mid-call leaves nothing stuck", %{tmp_dir: dir} do
    ctx = Py.Context.new(max_workers: 1)
    latch = HardeningHelpers.latch(dir)
    parent = self()

    caller =
      spawn(fn ->
        send(parent, :calling)
        Py.eval(ctx, HardeningHelpers.latch_wait(), %{latch: elem(latch, 0)})
      end)

    assert_receive :calling
    assert eventually(fn -> HardeningHelpers.waiting?(latch) end, 30_000)
    Process.exit(caller, :kill)
    HardeningHelpers.release(latch)

    assert eventually(fn -> Py.Context.info(ctx).in_flight == 0 end, 10_000)
    assert Py.eval(ctx, "1 + 1") == {:ok, 2}
  end

  @tag :tmp_dir
  test "at the deadline a call gets its value or a timeout, exactly one answer",
       %{tmp_dir: dir} do
    # A context of its own, with a worker per call, so that calls left
    # running by the interrupt (a blocking C call only returns to Python
    # code when it is done) do not hold up the next ones.
    ctx = Py.Context.new(max_workers: 64)
    latch = HardeningHelpers.latch(dir)

    :ok =
      Py.exec(ctx, """
      import os, time
      finished = []
      def work(i, seconds):
          time.sleep(seconds)
          finished.append(i)
          return i
      def held(i, latch):
          # Blocked until the test releases the latch, after every call
          # has its answer: this call cannot finish before its deadline.
          fd = os.open(latch, os.O_RDWR)
          try:
              os.read(fd, 2)
          finally:
              os.close(fd)
          finished.append(i)
          return i
      """)

    # Durations around a 2 ms deadline, where the reply and the timeout race;
    # every fifth call is held until all have answered, so it cannot finish
    # before its deadline however slow the machine is.
    results =
      for i <- 1..60 do
        if rem(i, 5) == 0 do
          {i, :held, Py.call(ctx, :__main__, :held, [i, elem(latch, 0)], timeout: 2)}
        else
          seconds = rem(i, 5) / 1000
          {i, seconds, Py.call(ctx, :__main__, :work, [i, seconds], timeout: 2)}
        end
      end

    for {i, seconds, result} <- results do
      case result do
        {:ok, ^i} -> assert seconds != :held, "call #{i} outlived its deadline and still replied"
        {:error, %Py.Error{type: :timeout, message: "Python call exceeded 2 ms"}} -> :ok
      end
    end

    # The timeout is not a formality: the calls that could not finish timed out.
    assert for({_, :held, result} <- results, do: result) ==
             List.duplicate(
               {:error, %Py.Error{type: :timeout, message: "Python call exceeded 2 ms"}},
               12
             )

    # Released, the held calls could finish now: they were interrupted (or
    # dropped before they ran) and never got past their wait, and no reply
    # that lost the race is delivered later. (A held call that the
    # interrupt reached before its wait leaves its release unread.)
    for _ <- 1..12, do: HardeningHelpers.release(latch)
    assert eventually(fn -> Py.Context.info(ctx).in_flight == 0 end, 30_000)
    {:ok, finished} = Py.eval(ctx, "finished")
    assert for({i, :held, _} <- results, i in finished, do: i) == []
    {:messages, messages} = Process.info(self(), :messages)
    assert messages == []
  end
end
