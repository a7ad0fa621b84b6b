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

  test "a callback request the NIF hands back is run like one sent by message", %{ctx: ctx} do
    # The NIF hands a callback back (`{:callback, handle, request}`) only
    # when the worker makes it within a few microseconds of the submission,
    # which no test can arrange; start/5 (and a call that waited for room)
    # put such a request where a message would be. Here a real request is
    # handed back again, as the NIF would.
    name = "call_test_#{System.unique_integer([:positive])}"
    :ok = Py.register_function(name, fn x -> x + 1 end)
    on_exit(fn -> Py.unregister_function(name) end)
    job = {:eval, "__import__('erlang').call(n, 1) * 10", %{n: name}}
    ref = make_ref()
    namespace = Call.namespace(ctx.ref)

    assert {:running, handle} = Call.start(ctx.ref, namespace, ref, job, 30_000)
    assert_receive {^ref, :callback, request}, 30_000

    assert Call.submitted({:callback, handle, request}, ctx.ref, namespace, ref, job, 30_000) ==
             {:running, handle}

    assert {{:ok, 20}, %{run_us: _}} = Call.wait(handle, ref, 30_000)
    assert Process.info(self(), :messages) == {:messages, []}
  end

  test "a coalesced call returns through the same function, without a timing of its own",
       %{ctx: ctx} do
    key = {__MODULE__, make_ref()}
    job = {:eval, "6 * 7", %{}}
    assert Call.measured(ctx, true, job, 5_000, {:call_test, key}) == {{:ok, 42}, nil}
    assert Call.run(ctx, true, job, 5_000, {:call_test, key}) == {:ok, 42}
  end
end
