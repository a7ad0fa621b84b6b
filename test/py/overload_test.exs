defmodule Py.OverloadTest do
  use ExUnit.Case, async: true

  import Py.TestHelpers

  # A dedicated context with one thread, whose worker is held in a Python
  # wait on an event this test sets (from another context: the main
  # interpreter's modules are shared).
  defp blocked_context(opts) do
    ctx = Py.Context.new([max_workers: 1] ++ opts)
    name = "ov_#{System.unique_integer([:positive])}"

    {:ok, nil} =
      Py.eval("setattr(__import__('builtins'), n, __import__('threading').Event())", %{n: name})

    wait = "getattr(__import__('builtins'), n).wait(30)"
    blocker = Task.async(fn -> Py.eval(ctx, wait, %{n: name}, timeout: 30_000) end)
    # Running (not queued): nothing in the queue, one call in flight.
    assert eventually(fn -> match?(%{in_flight: 1, queue_length: 0}, Py.Context.info(ctx)) end)

    release = fn ->
      {:ok, nil} = Py.eval("getattr(__import__('builtins'), n).set()", %{n: name})
    end

    {ctx, blocker, release}
  end

  defp queued(ctx, n) do
    for i <- 1..n do
      task = Task.async(fn -> Py.eval(ctx, "i * 2", %{i: i}, timeout: 30_000) end)
      assert eventually(fn -> Py.Context.info(ctx).queue_length == i end)
      task
    end
  end

  test "beyond max_queue a call is refused at once as :overloaded, and runs again later" do
    {ctx, blocker, release} = blocked_context(max_queue: 2)
    assert %{max_queue: 2, overloaded_total: 0} = Py.Context.info(ctx)
    tasks = queued(ctx, 2)

    assert {:error, %Py.Error{type: :overloaded, message: message}} =
             Py.eval(ctx, "1", %{}, timeout: 30_000)

    assert message =~ "2 calls waiting"
    assert {:error, %Py.Error{type: :overloaded}} = Py.call(ctx, :math, :sqrt, [4])
    # The Erlang facade's reason.
    assert {:error, {:overloaded, _message}} = :py.call(ctx, :math, :sqrt, [4])
    assert %{overloaded_total: 3, queue_length: 2} = Py.Context.info(ctx)

    release.()
    assert Task.await(blocker) == {:ok, true}
    assert Enum.map(tasks, &Task.await/1) == [{:ok, 2}, {:ok, 4}]
    assert Py.eval(ctx, "1") == {:ok, 1}
  end

  test "overload: :wait makes the caller wait for room, up to its timeout" do
    {ctx, blocker, release} = blocked_context(max_queue: 1, overload: :wait)
    [queued] = queued(ctx, 1)

    patient = Task.async(fn -> Py.eval(ctx, "'patient'", %{}, timeout: 30_000) end)
    impatient = Task.async(fn -> Py.eval(ctx, "'impatient'", %{}, timeout: 200) end)
    # Killed while waiting: its wake-up must go to the next waiter.
    dead = spawn(fn -> Py.eval(ctx, "'dead'", %{}, timeout: 30_000) end)
    assert eventually(fn -> Py.Context.info(ctx).overloaded_total == 3 end)
    Process.exit(dead, :kill)

    assert {:error, %Py.Error{type: :overloaded, message: message}} = Task.await(impatient)
    assert message =~ "stayed full"
    # Still waiting: the queue has not moved.
    assert Task.yield(patient, 50) == nil

    release.()
    assert Task.await(blocker) == {:ok, true}
    assert Task.await(queued) == {:ok, 2}
    assert Task.await(patient) == {:ok, "patient"}
    assert %{in_flight: 0} = Py.Context.info(ctx)
  end

  test "many waiting callers all get an answer" do
    {ctx, blocker, release} = blocked_context(max_queue: 3, overload: :wait)

    tasks =
      for i <- 1..200,
          do: Task.async(fn -> Py.eval(ctx, "i", %{i: i}, timeout: 60_000) end)

    assert eventually(fn -> Py.Context.info(ctx).overloaded_total >= 197 end)
    release.()
    assert Task.await(blocker) == {:ok, true}
    assert Enum.map(tasks, &Task.await(&1, 60_000)) == Enum.map(1..200, &{:ok, &1})
  end

  test "closing the context answers the waiting callers with :closed" do
    {ctx, blocker, release} = blocked_context(max_queue: 1, overload: :wait)
    [queued] = queued(ctx, 1)
    waiting = Task.async(fn -> Py.eval(ctx, "1", %{}, timeout: 30_000) end)
    assert eventually(fn -> Py.Context.info(ctx).overloaded_total == 1 end)

    :ok = Py.Context.close(ctx)
    assert {:error, %Py.Error{type: :closed}} = Task.await(waiting, 5_000)
    release.()
    Task.await(blocker)
    Task.await(queued)
  end

  test "options are checked" do
    assert_raise ArgumentError, ~r/:max_queue/, fn -> Py.Context.new(max_queue: 0) end
    assert_raise ArgumentError, ~r/:overload/, fn -> Py.Context.new(overload: :drop) end
    assert %{max_queue: 10_000} = Py.Context.info(Py.context(1))
  end
end
