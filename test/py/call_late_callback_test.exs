defmodule Py.CallLateCallbackTest do
  # A callback that runs past its call's deadline (Py.Call.handle/5): the
  # call answers a timeout, the callbacks it makes afterwards never run,
  # and nothing of it is left in the caller's mailbox.
  #
  # Not async: functions are registered node-wide, and one test traces
  # Py.Callback.run_for_call/2 globally.
  use ExUnit.Case, async: false

  import Py.TestHelpers

  @long 30_000
  @job {:call, "late_fixture", "twice", [], %{}}
  @attempts 500

  setup do
    test = self()
    # One worker: a call after the given-up one runs once its job has ended.
    ctx = Py.Context.new(max_workers: 1)
    Py.register_function(:late_first, fn -> send(test, {:ran, :first}) && 1 end)
    Py.register_function(:late_second, fn -> send(test, {:ran, :second}) && 2 end)

    :ok =
      Py.exec(ctx, """
      import erlang, sys, types
      m = types.ModuleType("late_fixture")
      def twice():
          a = erlang.late_first()
          return [a, erlang.late_second()]
      m.twice = twice
      # What the spinning functions met, in order (the test reads it):
      # the exception that ended the spin, then what came of what they
      # did next. The first callback is inside the try, so wherever the
      # interrupt lands once it has answered, the code after runs.
      outcome = []
      m.outcome = outcome
      def spin_then_call():
          del outcome[:]
          a = None
          try:
              a = erlang.late_first()
              # Until the call's cancellation interrupts it.
              while True:
                  pass
          except BaseException as e:
              outcome.append(type(e).__name__)
          try:
              b = erlang.late_second()
          except BaseException as e:
              outcome.append([type(e).__name__, str(e)])
              raise
          outcome.append("second answered")
          return [a, b]
      m.spin_then_call = spin_then_call
      def spin_then_print():
          del outcome[:]
          a = None
          try:
              a = erlang.late_first()
              while True:
                  pass
          except BaseException as e:
              outcome.append(type(e).__name__)
          print("written after the call was cancelled")
          outcome.append("printed")
          return a
      m.spin_then_print = spin_then_print
      sys.modules["late_fixture"] = m
      """)

    on_exit(fn ->
      Py.Context.close(ctx)
      Py.unregister_function(:late_first)
      Py.unregister_function(:late_second)
    end)

    %{ctx: ctx}
  end

  # Submits the job and runs its first callback as Py.Call.measured/5 does,
  # with the call's deadline `deadline` (the first callback's request
  # carries the deadline the Python side keeps: 30 s here).
  defp call_with_deadline(ctx, deadline, job \\ @job) do
    ref = make_ref()
    {:running, handle} = Py.Call.start(ctx.ref, nil, ref, job, @long)
    # start/5 turns a callback handed to it inline into this same message.
    assert_receive {^ref, :callback, {_slot, "late_first", [], _left} = request}, @long
    Py.Call.handle(handle, ref, @long, {:callback, request}, deadline)
  end

  # The worker has ended the job (counted as cancelled while it ran, or
  # as finished), and the context still answers.
  defp assert_ended(ctx, counter, before) do
    assert Py.eval(ctx, "1 + 1") == {:ok, 2}
    assert_eventually(fn -> Py.Context.info(ctx)[counter] >= before + 1 end, @long)
  end

  # Up to @attempts calls, each of whose waits has its own bound (@long):
  # on a loaded machine they take longer than ExUnit's 60 s per test,
  # which would fail the test for the machine's speed alone.
  @tag timeout: :infinity
  test "a callback ending past the deadline while the next callback was handed inline: " <>
         "timeout, the next never runs, nothing leaks",
       %{ctx: ctx} do
    # Which way the answer to the first callback comes back is not up to
    # the test: the NIF waits 20 µs for the call's next step, and only when
    # the call's thread last ran on another core. So what it returned is
    # traced, and the call repeated until the next callback came back
    # inline: at the first try on a quiet machine, within ~130 tries at
    # load 6 on two cores, never while another program holds the second
    # core (nor on one CPU). Every attempt, whichever way, must behave
    # the same; not reaching the branch is reported, not failed, since it
    # depends on the machine's load only.
    tracer = spawn_link(fn -> returns(nil) end)
    mfa = {Py.Callback, :run_for_call, 2}
    :erlang.trace_pattern(mfa, [{:_, [], [{:return_trace}]}], [:global])
    :erlang.trace(self(), true, [:call, {:tracer, tracer}])

    try do
      inline? =
        Enum.reduce_while(1..@attempts, false, fn _attempt, false ->
          cancelled = Py.Context.info(ctx).cancelled_total
          # The deadline has passed by the time the first callback returns.
          deadline = System.monotonic_time(:millisecond)

          assert {{:error, %Py.Error{type: :timeout} = error}, nil} =
                   call_with_deadline(ctx, deadline)

          assert error.message == "Python call exceeded #{@long} ms"
          assert_received {:ran, :first}
          assert_ended(ctx, :cancelled_total, cancelled)
          # The second callback never ran (Python's erlang.call got the
          # call's timeout instead).
          refute_received {:ran, :second}
          # Nothing of the call is left: no request, no reply, no nesting.
          assert Process.info(self(), :messages) == {:messages, []}
          assert Process.get({Py.Callback, :nesting}) == nil

          send(tracer, {:last, self()})
          assert_receive {:last, returned}, @long

          case returned do
            {:callback, _next} -> {:halt, true}
            _ -> {:cont, false}
          end
        end)

      unless inline? do
        IO.puts(
          "\nnote: #{inspect(__MODULE__)}: the inline branch was not reached in " <>
            "#{@attempts} attempts (no free core?); its behaviour was checked on the other path"
        )
      end
    after
      :erlang.trace(self(), false, [:call])
      :erlang.trace_pattern(mfa, false, [:global])
    end
  end

  test "a call that calls back after its cancellation interrupted it: the callback never " <>
         "runs, nothing leaks",
       %{ctx: ctx} do
    job = {:call, "late_fixture", "spin_then_call", [], %{}}

    # The first callback ends past the deadline: the call is cancelled
    # (Py.Call.handle/5, then late/3), which interrupts the loop that
    # follows it.
    cancelled = Py.Context.info(ctx).cancelled_total
    deadline = System.monotonic_time(:millisecond)

    assert {{:error, %Py.Error{type: :timeout}}, nil} = call_with_deadline(ctx, deadline, job)

    assert_received {:ran, :first}
    assert_ended(ctx, :cancelled_total, cancelled)
    refute_received {:ran, :second}
    assert Process.info(self(), :messages) == {:messages, []}
    assert_interrupted_then_refused(ctx)

    # The same through the call's own timeout: the receive Py.Call waits
    # in once a callback has answered in time (Py.Call.await/4, then
    # timed_out/3). The first callback is run with no deadline, so it
    # answers in time however slow the machine; the wait after it is given
    # a deadline that has passed, so its receive times out at once (the
    # spinning call sends nothing meanwhile) and cancels the call. No
    # clock decides which way the call goes, and the Python side's
    # deadline (30 s) is never reached, so only this cancellation
    # interrupts it.
    cancelled = Py.Context.info(ctx).cancelled_total
    ref = make_ref()
    {:running, handle} = Py.Call.start(ctx.ref, nil, ref, job, @long)
    assert_receive {^ref, :callback, {_slot, "late_first", [], _left} = request}, @long
    assert Py.Callback.run_for_call(request, :infinity) == :ok
    assert_received {:ran, :first}

    passed = System.monotonic_time(:millisecond)

    assert {{:error, %Py.Error{type: :timeout} = error}, nil} =
             Py.Call.await(handle, ref, @long, passed)

    assert error.message == "Python call exceeded #{@long} ms"
    assert_ended(ctx, :cancelled_total, cancelled)
    refute_received {:ran, :second}
    assert Process.info(self(), :messages) == {:messages, []}
    assert Process.get({Py.Callback, :nesting}) == nil
    assert_interrupted_then_refused(ctx)
  end

  # The spin of the last spin_then_call ended by the call's interrupt
  # (pybridge.Timeout), and the callback it made afterwards was refused
  # with the call's cancellation: it was made, and never sent.
  defp assert_interrupted_then_refused(ctx) do
    assert {:ok, ["Timeout", ["Timeout", message]]} =
             Py.eval(ctx, "__import__('late_fixture').outcome")

    assert message =~ "late_second"
    assert message =~ "cancelled"
  end

  @tag :capture_log
  test "output written after the call's cancellation is not sent to the caller", %{ctx: ctx} do
    job = {:call, "late_fixture", "spin_then_print", [], %{}}
    cancelled = Py.Context.info(ctx).cancelled_total
    deadline = System.monotonic_time(:millisecond)

    assert {{:error, %Py.Error{type: :timeout}}, nil} = call_with_deadline(ctx, deadline, job)

    assert_received {:ran, :first}
    assert_ended(ctx, :cancelled_total, cancelled)
    # The print ran after the interrupt (it went where output outside a
    # call goes: Py.Output's Logger), and nothing of it reached the caller.
    assert Py.eval(ctx, "__import__('late_fixture').outcome") == {:ok, ["Timeout", "printed"]}
    assert Process.info(self(), :messages) == {:messages, []}
  end

  test "a callback within the deadline lets the call go on to its next callback", %{ctx: ctx} do
    calls = Py.Context.info(ctx).calls_total
    assert {{:ok, [1, 2]}, _timing} = call_with_deadline(ctx, :infinity)
    assert_received {:ran, :first}
    assert_received {:ran, :second}
    assert_ended(ctx, :calls_total, calls)
    assert Process.info(self(), :messages) == {:messages, []}
  end

  # The tracer: keeps what run_for_call/2 last returned.
  defp returns(last) do
    receive do
      {:trace, _pid, :return_from, _mfa, returned} -> returns(returned)
      {:trace, _pid, :call, _mfa} -> returns(last)
      {:last, pid} -> send(pid, {:last, last}) && returns(nil)
    end
  end
end
