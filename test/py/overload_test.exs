defmodule Py.OverloadTest do
  use ExUnit.Case, async: true

  import Py.TestHelpers

  # A bound that only catches "never" on a loaded machine: every wait here
  # is for something the test has arranged to happen.
  @long 30_000

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
    assert eventually(
             fn -> match?(%{in_flight: 1, queue_length: 0}, Py.Context.info(ctx)) end,
             @long
           )

    release = fn ->
      {:ok, nil} = Py.eval("getattr(__import__('builtins'), n).set()", %{n: name})
    end

    {ctx, blocker, release}
  end

  defp queued(ctx, n) do
    for i <- 1..n do
      task = Task.async(fn -> Py.eval(ctx, "i * 2", %{i: i}, timeout: 30_000) end)
      assert eventually(fn -> Py.Context.info(ctx).queue_length == i end, @long)
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
    assert Task.await(blocker, @long) == {:ok, true}
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
    assert eventually(fn -> Py.Context.info(ctx).overloaded_total == 3 end, @long)
    Process.exit(dead, :kill)

    assert {:error, %Py.Error{type: :overloaded, message: message}} = Task.await(impatient, @long)
    assert message =~ "stayed full"
    # Still waiting: the queue has not moved.
    assert Task.yield(patient, 50) == nil

    release.()
    assert Task.await(blocker, @long) == {:ok, true}
    assert Task.await(queued, @long) == {:ok, 2}
    assert Task.await(patient, @long) == {:ok, "patient"}
    assert %{in_flight: 0} = Py.Context.info(ctx)
  end

  # A Python threading.Event in the main interpreter: the code that waits
  # on it (for a call), and a function that sets it.
  defp event do
    name = "ov_event_#{System.unique_integer([:positive])}"

    {:ok, nil} =
      Py.eval("setattr(__import__('builtins'), n, __import__('threading').Event())", %{n: name})

    {"getattr(__import__('builtins'), '#{name}').wait(30)",
     fn -> {:ok, nil} = Py.eval("getattr(__import__('builtins'), n).set()", %{n: name}) end}
  end

  # A call that appends `who` to a Python list named `log`, in run order.
  defp logged(ctx, log, who) do
    Py.eval(ctx, "getattr(__import__('builtins'), log).append(who) or who", %{log: log, who: who},
      timeout: 30_000
    )
  end

  defp python_log do
    log = "ov_log_#{System.unique_integer([:positive])}"
    {:ok, nil} = Py.eval("setattr(__import__('builtins'), n, [])", %{n: log})
    log
  end

  defp logged_order(log), do: Py.eval("getattr(__import__('builtins'), n)", %{n: log})

  # Behind the blocker, a second call (held on an event) is queued and a
  # waiter (a process of its own, answering `{:waiter, result}`) waits for
  # room. The waiter is suspended before the blocker is released, so it
  # cannot submit again when woken: the worker takes the second call and
  # the place it frees stays free, or kept, until the test resumes it.
  defp waiter_behind_second_call(ctx, log, release_blocker, before_release) do
    parent = self()
    {second_wait, second_release} = event()
    second = Task.async(fn -> Py.eval(ctx, second_wait, %{}, timeout: 30_000) end)
    assert eventually(fn -> Py.Context.info(ctx).queue_length == 1 end, @long)
    waiter = spawn(fn -> send(parent, {:waiter, logged(ctx, log, "waiter")}) end)
    assert eventually(fn -> Py.Context.info(ctx).overloaded_total == 1 end, @long)
    before = before_release.()
    :erlang.suspend_process(waiter)
    release_blocker.()
    assert eventually(fn -> Py.Context.info(ctx).queue_length == 0 end, @long)
    {second, second_release, waiter, before}
  end

  test "overload: :wait hands a freed place to the first waiter: a newcomer cannot take it" do
    {ctx, blocker, release} = blocked_context(max_queue: 1, overload: :wait)
    log = python_log()

    {second, second_release, waiter, nil} =
      waiter_behind_second_call(ctx, log, release, fn -> nil end)

    assert Task.await(blocker, @long) == {:ok, true}

    # The place is kept for the woken waiter: the newcomer waits behind it.
    newcomer = Task.async(fn -> logged(ctx, log, "newcomer") end)
    assert eventually(fn -> Py.Context.info(ctx).overloaded_total == 2 end, @long)
    assert %{queue_length: 0} = Py.Context.info(ctx)

    # The waiter takes its place without waiting again.
    :erlang.resume_process(waiter)
    assert eventually(fn -> Py.Context.info(ctx).queue_length == 1 end, @long)
    second_release.()
    assert Task.await(second, @long) == {:ok, true}
    assert_receive {:waiter, {:ok, "waiter"}}, 30_000
    assert Task.await(newcomer, @long) == {:ok, "newcomer"}
    assert logged_order(log) == {:ok, ["waiter", "newcomer"]}
    assert %{overloaded_total: 2, in_flight: 0} = Py.Context.info(ctx)
  end

  test "a call that waited for room and calls back: the callback runs in the caller, " <>
         "the call answers, nothing of it is left" do
    {ctx, blocker, release} = blocked_context(max_queue: 1, overload: :wait)
    [queued] = queued(ctx, 1)
    parent = self()
    name = "ov_callback_#{System.unique_integer([:positive])}"

    :ok =
      Py.register_function(name, fn x -> send(parent, {:called_back, self(), x}) && x * 10 end)

    on_exit(fn -> Py.unregister_function(name) end)

    waiter =
      spawn(fn ->
        result = Py.eval(ctx, "__import__('erlang').call(n, 4) + 1", %{n: name}, timeout: 30_000)
        send(parent, {:waiter, result, Process.info(self(), :messages)})
      end)

    assert eventually(fn -> Py.Context.info(ctx).overloaded_total == 1 end, @long)
    # Held until the context is idle, so that its submission with the
    # place kept for it finds the home worker free: the NIF then waits
    # inline and is handed the callback when the worker makes it in time
    # (else the request comes by message). Either way the caller runs it
    # from the receive of a call that waited for room (Py.Call.by_message).
    :erlang.suspend_process(waiter)
    release.()
    assert Task.await(blocker, @long) == {:ok, true}
    assert Task.await(queued, @long) == {:ok, 2}

    assert eventually(
             fn -> match?(%{in_flight: 0, queue_length: 0}, Py.Context.info(ctx)) end,
             @long
           )

    :erlang.resume_process(waiter)

    assert_receive {:waiter, {:ok, 41}, {:messages, []}}, 30_000
    assert_received {:called_back, ^waiter, 4}
    assert %{overloaded_total: 1, in_flight: 0} = Py.Context.info(ctx)
  end

  test "a waiter that dies once woken passes the place kept for it on" do
    {ctx, blocker, release} = blocked_context(max_queue: 1, overload: :wait)
    log = python_log()

    # The newcomer registers behind the waiter before the place is freed.
    {second, second_release, waiter, newcomer} =
      waiter_behind_second_call(ctx, log, release, fn ->
        newcomer = Task.async(fn -> logged(ctx, log, "newcomer") end)
        assert eventually(fn -> Py.Context.info(ctx).overloaded_total == 2 end, @long)
        newcomer
      end)

    assert Task.await(blocker, @long) == {:ok, true}

    # Woken (the place is kept for it), it dies before submitting again.
    monitor = Process.monitor(waiter)
    Process.exit(waiter, :kill)
    assert_receive {:DOWN, ^monitor, :process, ^waiter, :killed}
    assert eventually(fn -> Py.Context.info(ctx).queue_length == 1 end, @long)
    second_release.()
    assert Task.await(second, @long) == {:ok, true}
    assert Task.await(newcomer, @long) == {:ok, "newcomer"}
    assert logged_order(log) == {:ok, ["newcomer"]}
  end

  test "many waiting callers all get an answer" do
    {ctx, blocker, release} = blocked_context(max_queue: 3, overload: :wait)

    tasks =
      for i <- 1..200,
          do: Task.async(fn -> Py.eval(ctx, "i", %{i: i}, timeout: 60_000) end)

    assert eventually(fn -> Py.Context.info(ctx).overloaded_total >= 197 end, @long)
    release.()
    assert Task.await(blocker, @long) == {:ok, true}
    assert Enum.map(tasks, &Task.await(&1, 60_000)) == Enum.map(1..200, &{:ok, &1})
  end

  test "closing the context answers the waiting callers with :closed" do
    {ctx, blocker, release} = blocked_context(max_queue: 1, overload: :wait)
    [queued] = queued(ctx, 1)
    waiting = Task.async(fn -> Py.eval(ctx, "1", %{}, timeout: 30_000) end)
    assert eventually(fn -> Py.Context.info(ctx).overloaded_total == 1 end, @long)

    :ok = Py.Context.close(ctx)
    assert {:error, %Py.Error{type: :closed}} = Task.await(waiting, @long)
    release.()
    Task.await(blocker, @long)
    Task.await(queued, @long)
  end

  test "options are checked" do
    assert_raise ArgumentError, ~r/:max_queue/, fn -> Py.Context.new(max_queue: 0) end
    assert_raise ArgumentError, ~r/:overload/, fn -> Py.Context.new(overload: :drop) end
    assert %{max_queue: 10_000} = Py.Context.info(Py.context(1))
  end
end
