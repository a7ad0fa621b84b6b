defmodule Py.CoalesceFlightsTest do
  # Coalescing branches beside the common path (Py.CoalesceTest has that):
  # a Python leader whose call calls back into the BEAM (or the process
  # its call was handed to), forget/2 of a Python leader's flight, and a
  # flight process found dead in the table.
  #
  # Not async: functions are registered node-wide, and the fixture module
  # lives in the shared main interpreter.
  use ExUnit.Case, async: false

  import Py.TestHelpers

  @long 30_000

  setup do
    # One worker: a call held in Python keeps every later call queued.
    ctx = Py.Context.new(max_workers: 1)

    :ok =
      Py.exec(ctx, """
      import erlang, sys, threading, types
      m = types.ModuleType("flights_fixture")
      m.runs = 0
      m.gate = threading.Event()
      def with_callback(x):
          # Counted before the callback: the callback runs once per execution.
          m.runs += 1
          return [erlang.flights_cb(x), m.runs]
      def held(x):
          m.runs += 1
          n = m.runs
          m.gate.wait()
          return [x, n]
      def gated_callback(x):
          m.runs += 1
          m.gate.wait()
          return [erlang.flights_cb(x), m.runs]
      m.with_callback = with_callback
      m.gated_callback = gated_callback
      m.held = held
      sys.modules["flights_fixture"] = m
      """)

    on_exit(fn ->
      Py.unregister_function(:flights_cb)
      Py.exec("__import__('sys').modules.pop('flights_fixture', None)")
      Py.Context.close(ctx)
    end)

    %{ctx: ctx}
  end

  defp group, do: {__MODULE__, make_ref()}

  # From another context: the fixture's context has one worker, held.
  defp release, do: :ok = Py.exec("__import__('flights_fixture').gate.set()")

  defp runs, do: Py.eval!("__import__('flights_fixture').runs")

  # Waits until the Python call in flight for {g, k} has `n` callers (its
  # leader and the joiners sure to be answered).
  defp await_callers(g, k, n) do
    assert_eventually(fn -> Py.Coalesce.Leader.callers({g, k}) == n end, @long)
  end

  describe "a Python leader's call that calls back into the BEAM" do
    test "runs the callback once, in the leader, and every joiner gets the leader's result",
         %{ctx: ctx} do
      g = group()
      test = self()

      # The callback holds the call until the test lets it go, so the
      # joiners come in while it runs.
      Py.register_function(:flights_cb, fn x ->
        send(test, {:in_callback, self(), x})

        receive do
          :go -> x * 10
        end
      end)

      call = fn -> Py.call(ctx, :flights_fixture, :with_callback, [7], coalesce: :k, group: g) end
      leader = Task.async(call)
      assert_receive {:in_callback, runner, 7}, @long
      # The leader runs the call itself, and so its callbacks.
      assert runner == leader.pid
      assert {:leader, leader_pid, 0} = Py.Coalesce.in_flight({g, :k})
      assert leader_pid == leader.pid

      joiners = for _ <- 1..5, do: Task.async(call)
      await_callers(g, :k, 6)
      send(runner, :go)

      assert Enum.map([leader | joiners], &Task.await(&1, @long)) ==
               List.duplicate({:ok, [70, 1]}, 6)

      # One execution, one callback.
      refute_received {:in_callback, _, _}
      assert runs() == 1
      assert %{misses: 1, hits: 5, errors: 0, active: 0} = Py.Coalesce.stats(g)
      assert Py.Coalesce.in_flight({g, :k}) == nil
      assert Process.info(self(), :messages) == {:messages, []}
    end

    test "a callback that raises is one shared Python exception, its callback run once",
         %{ctx: ctx} do
      g = group()
      test = self()

      Py.register_function(:flights_cb, fn x ->
        send(test, {:in_callback, self(), x})

        receive do
          :go -> raise ArgumentError, "no #{x}"
        end
      end)

      call = fn -> Py.call(ctx, :flights_fixture, :with_callback, [8], coalesce: :k, group: g) end
      leader = Task.async(call)
      assert_receive {:in_callback, runner, 8}, @long
      joiners = for _ <- 1..3, do: Task.async(call)
      await_callers(g, :k, 4)
      send(runner, :go)

      results = Enum.map([leader | joiners], &Task.await(&1, @long))
      assert [{:error, %Py.Error{type: "Error", message: message}}] = Enum.uniq(results)
      assert message =~ "no 8"
      refute_received {:in_callback, _, _}
      assert runs() == 1
      assert %{misses: 1, hits: 3, errors: 1, active: 0} = Py.Coalesce.stats(g)
    end
  end

  describe "a Python call handed over by its killed leader" do
    test "calls back into the process that took it over; every joiner gets its result",
         %{ctx: ctx} do
      g = group()
      test = self()

      Py.register_function(:flights_cb, fn x ->
        send(test, {:in_callback, self(), x})
        x * 10
      end)

      call = fn ->
        Py.call(ctx, :flights_fixture, :gated_callback, [9], coalesce: :k, group: g)
      end

      leader = spawn(call)
      await_callers(g, :k, 1)
      joiners = for _ <- 1..3, do: Task.async(call)
      await_callers(g, :k, 4)
      assert_eventually(fn -> runs() == 1 end, @long)

      Process.exit(leader, :kill)
      # A waiter takes the call over: every joiner ends up watching the
      # process it was handed to.
      assert_eventually(
        fn ->
          Enum.all?(joiners, fn task ->
            match?(
              {:monitors, [process: owner]} when owner != leader,
              Process.info(task.pid, :monitors)
            )
          end)
        end,
        @long
      )

      {:monitors, [process: owner]} = Process.info(hd(joiners).pid, :monitors)
      # The call calls back only now: its callback runs in that process.
      release()
      assert_receive {:in_callback, runner, 9}, @long
      assert runner == owner
      refute runner in [leader | Enum.map(joiners, & &1.pid)]

      assert Enum.map(joiners, &Task.await(&1, @long)) == List.duplicate({:ok, [90, 1]}, 3)
      refute_received {:in_callback, _, _}
      assert runs() == 1
      assert %{misses: 1, hits: 3, errors: 0, active: 0} = Py.Coalesce.stats(g)
      assert Py.Coalesce.in_flight({g, :k}) == nil
    end
  end

  describe "forget/2 of a Python leader's flight" do
    test "its callers still get its result; callers after it start a new execution",
         %{ctx: ctx} do
      g = group()
      call = fn -> Py.call(ctx, :flights_fixture, :held, [3], coalesce: :k, group: g) end

      old_leader = Task.async(call)
      await_callers(g, :k, 1)
      old_joiners = for _ <- 1..2, do: Task.async(call)
      await_callers(g, :k, 3)
      # The old execution is running (it holds the context's one worker).
      assert_eventually(fn -> runs() == 1 end, @long)

      assert Py.Coalesce.forget(g, :k) == :ok
      assert Py.Coalesce.in_flight({g, :k}) == nil

      # New callers lead and join a new flight (its call queued behind the
      # old one, on the one worker).
      new_leader = Task.async(call)
      assert_eventually(fn -> match?({:leader, _, 0}, Py.Coalesce.in_flight({g, :k})) end, @long)
      assert {:leader, pid, 0} = Py.Coalesce.in_flight({g, :k})
      assert pid == new_leader.pid
      new_joiner = Task.async(call)
      await_callers(g, :k, 2)

      # The old execution ends first; the new one runs after it.
      release()

      assert Enum.map([old_leader | old_joiners], &Task.await(&1, @long)) ==
               List.duplicate({:ok, [3, 1]}, 3)

      assert Enum.map([new_leader, new_joiner], &Task.await(&1, @long)) ==
               List.duplicate({:ok, [3, 2]}, 2)

      assert runs() == 2
      assert %{misses: 2, hits: 3, errors: 0, active: 0} = Py.Coalesce.stats(g)
      assert Py.Coalesce.in_flight({g, :k}) == nil
    end
  end

  describe "a flight process found in the table but already dead" do
    test "the next caller clears it and runs a fresh execution" do
      g = group()
      test = self()

      # A caller whose Elixir function runs in a flight process; the
      # function holds until released.
      first =
        spawn(fn ->
          result =
            Py.Coalesce.run(g, :k, fn ->
              send(test, {:executing, self()})

              receive do
                :release -> {:ok, :first}
              end
            end)

          send(test, {:first, result})
        end)

      assert_receive {:executing, executor}, @long
      assert {:process, flight, 0} = Py.Coalesce.in_flight({g, :k})

      # The first caller is suspended, so it cannot clean up after the
      # flight (its DOWN stays unread); the flight is killed holding the key.
      true = :erlang.suspend_process(first)
      flight_ref = Process.monitor(flight)
      Process.exit(flight, :kill)
      assert_receive {:DOWN, ^flight_ref, :process, ^flight, :killed}, @long
      assert Py.Coalesce.in_flight({g, :k}) == {:process, flight, 0}

      # The next caller finds the dead flight (its monitor answers
      # :noproc), clears its entry and runs the key afresh.
      assert Py.Coalesce.run(g, :k, fn -> {:ok, :fresh} end) == {:ok, :fresh}
      assert Py.Coalesce.in_flight({g, :k}) == nil
      assert Py.Coalesce.run(g, :k, fn -> {:ok, :again} end) == {:ok, :again}

      # The first caller, resumed, sees its flight's death as a crash.
      true = :erlang.resume_process(first)
      assert_receive {:first, {:error, %Py.Error{type: :coalesce_crashed} = error}}, @long
      assert error.message =~ inspect(flight)
      assert error.message =~ "killed"
      # The function's helper, orphaned, ends when released.
      executor_ref = Process.monitor(executor)
      send(executor, :release)
      assert_receive {:DOWN, ^executor_ref, :process, ^executor, _}, @long

      # The killed execution is counted once, as an error.
      assert %{misses: 3, errors: 1, active: 0} = Py.Coalesce.stats(g)
      assert Py.Coalesce.in_flight({g, :k}) == nil
    end
  end
end
