defmodule Py.TimeoutTest do
  # Not async: these tests burn CPU in Python on purpose and measure how long
  # things take, and one changes the :timeout application setting.
  use ExUnit.Case, async: false

  import Py.TestHelpers

  test "a timed-out call returns {:error, %Py.Error{type: :timeout}} quickly" do
    {ms, result} = timed(fn -> Py.eval("__import__('time').sleep(1)", %{}, timeout: 100) end)
    assert {:error, %Py.Error{type: :timeout, message: "Python call exceeded 100 ms"}} = result
    assert ms < 800
  end

  test "timeout interrupts the running Python and frees the context" do
    # One worker: the context can only answer the next call if the loop
    # really stopped.
    ctx = Py.Context.new(max_workers: 1)
    assert Py.eval(ctx, "1") == {:ok, 1}

    {ms, result} = timed(fn -> Py.exec(ctx, "while True:\n    pass\n", timeout: 200) end)
    assert {:error, %Py.Error{type: :timeout}} = result
    assert ms < 1_000

    {ms, result} = timed(fn -> Py.eval(ctx, "1 + 1", %{}, timeout: 5_000) end)
    assert result == {:ok, 2}
    assert ms < 1_000

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

  test "a caller that exits mid-call leaves nothing stuck" do
    ctx = Py.Context.new(max_workers: 1)
    parent = self()

    caller =
      spawn(fn ->
        send(parent, :calling)
        Py.exec(ctx, "import time\ntime.sleep(0.3)")
      end)

    assert_receive :calling
    assert eventually(fn -> Py.Context.info(ctx).in_flight == 1 end)
    Process.exit(caller, :kill)

    assert eventually(fn -> Py.Context.info(ctx).in_flight == 0 end)
    assert Py.eval(ctx, "1 + 1") == {:ok, 2}
  end

  test "a reply arriving at the deadline is still delivered" do
    # Whatever the race between the reply and the timeout, the result is either
    # the value or a timeout error, and no stray reply is left in the mailbox.
    for _ <- 1..50 do
      case Py.eval("__import__('time').sleep(0.002) or 7", %{}, timeout: 2) do
        {:ok, 7} -> :ok
        {:error, %Py.Error{type: :timeout}} -> :ok
      end
    end

    Process.sleep(50)
    {:messages, messages} = Process.info(self(), :messages)
    assert messages == []
  end
end
