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
    ctx = Py.Context.new()
    latch = HardeningHelpers.latch(dir)
    result = Py.eval(ctx, HardeningHelpers.latch_wait(), %{latch: elem(latch, 0)}, timeout: 100)
    assert {:error, %Py.Error{type: :timeout, message: "Python call exceeded 100 ms"}} = result
    assert Py.Context.info(ctx).in_flight == 1

    HardeningHelpers.release(latch)
    assert eventually(fn -> Py.Context.info(ctx).in_flight == 0 end, 10_000)
    assert Py.Context.info(ctx).cancelled_total == 1
  end

  test "timeout interrupts the running Python and frees the context" do
    # One worker: the context can only answer the next call if the endless
    # loop really stopped.
    ctx = Py.Context.new(max_workers: 1)
    assert Py.eval(ctx, "1") == {:ok, 1}

    assert {:error, %Py.Error{type: :timeout}} =
             Py.exec(ctx, "while True:\n    pass\n", timeout: 200)

    assert Py.eval(ctx, "1 + 1", %{}, timeout: 30_000) == {:ok, 2}

    assert eventually(fn -> Py.Context.info(ctx).in_flight == 0 end)
    assert Py.Context.info(ctx).queue_length == 0
  end

  test "timeouts on a call and the bang variant" do
    ctx = Py.Context.new(max_workers: 1)
    :ok = Py.exec(ctx, "def spin():\n    while True:\n        pass\n")

    assert {:error, %Py.Error{type: :timeout}} = Py.call(ctx, :__main__, :spin, [], timeout: 100)

    assert_raise Py.Error, ~r/^timeout: /, fn ->
      Py.call!(ctx, :__main__, :spin, [], timeout: 100)
    end

    assert Py.call(ctx, :math, :sqrt, [4], timeout: 5_000) == {:ok, 2.0}
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

  test "at the deadline a call gets its value or a timeout, exactly one answer" do
    # A context of its own, with a worker per call, so that calls left
    # running by the interrupt (time.sleep only returns to Python code when
    # it is done) do not hold up the next ones.
    ctx = Py.Context.new(max_workers: 64)

    :ok =
      Py.exec(ctx, """
      import time
      finished = []
      def work(i, seconds):
          time.sleep(seconds)
          finished.append(i)
          return i
      """)

    # Durations around a 2 ms deadline, where the reply and the timeout race;
    # every fifth call cannot finish before it.
    results =
      for i <- 1..60 do
        seconds = if rem(i, 5) == 0, do: 0.5, else: rem(i, 5) / 1000
        {i, seconds, Py.call(ctx, :__main__, :work, [i, seconds], timeout: 2)}
      end

    for {i, seconds, result} <- results do
      case result do
        {:ok, ^i} -> assert seconds < 0.5, "call #{i} outlived its deadline and still replied"
        {:error, %Py.Error{type: :timeout, message: "Python call exceeded 2 ms"}} -> :ok
      end
    end

    # The timeout is not a formality: the calls that could not finish timed out.
    assert for({_, 0.5, result} <- results, do: result) ==
             List.duplicate(
               {:error, %Py.Error{type: :timeout, message: "Python call exceeded 2 ms"}},
               12
             )

    # Once they could have finished: they were interrupted (or dropped before
    # they ran) and never got past their sleep, and no reply that lost the
    # race is delivered later.
    Process.sleep(600)
    {:ok, finished} = Py.eval(ctx, "finished")
    assert for({i, 0.5, _} <- results, i in finished, do: i) == []
    {:messages, messages} = Process.info(self(), :messages)
    assert messages == []
  end
end
