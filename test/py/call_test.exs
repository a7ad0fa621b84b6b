defmodule Py.CallTest do
  # Py.Call is internal; these tests pin what later layers (telemetry) rely
  # on: measured/4 hands back the worker's timing of each call next to the
  # result that run/4 (the path of Py.eval/exec/call) returns.
  use ExUnit.Case, async: true

  alias Py.Call

  setup do
    # A dedicated context: nothing else queues on it.
    {:ok, ctx: Py.Context.new()}
  end

  test "a call's result comes with how long it queued and ran", %{ctx: ctx} do
    assert {{:ok, 2}, %{queue_us: queue_us, run_us: run_us}} =
             Call.measured(ctx, true, {:eval, "1 + 1", %{}}, 5_000)

    assert is_integer(queue_us) and queue_us >= 0
    assert is_integer(run_us) and run_us >= 0

    :ok = Py.exec(ctx, "import time")

    assert {{:ok, nil}, %{run_us: run_us}} =
             Call.measured(ctx, true, {:eval, "time.sleep(0.1)", %{}}, 5_000)

    assert run_us >= 100_000
  end

  test "errors are timed too, and run/4 returns the same result without the timing",
       %{ctx: ctx} do
    job = {:eval, "1 / 0", %{}}

    assert {{:error, %Py.Error{type: "ZeroDivisionError"}}, %{run_us: _}} =
             Call.measured(ctx, true, job, 5_000)

    assert {:error, %Py.Error{type: "ZeroDivisionError"}} = Call.run(ctx, true, job, 5_000)
  end

  test "a call no worker answered has no timing", %{ctx: ctx} do
    assert {{:error, %Py.Error{type: :timeout}}, nil} =
             Call.measured(ctx, true, {:eval, "__import__('time').sleep(5)", %{}}, 50)

    :ok = Py.Context.close(ctx)

    assert {{:error, %Py.Error{type: :closed}}, nil} =
             Call.measured(ctx, true, {:eval, "1", %{}}, 5_000)
  end

  test "a coalesced call returns through the same function, without a timing of its own",
       %{ctx: ctx} do
    key = {__MODULE__, make_ref()}
    job = {:eval, "6 * 7", %{}}
    assert Call.measured(ctx, true, job, 5_000, {:call_test, key}) == {{:ok, 42}, nil}
    assert Call.run(ctx, true, job, 5_000, {:call_test, key}) == {:ok, 42}
  end
end
