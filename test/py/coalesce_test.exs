defmodule Py.CoalesceTest do
  # Not async: one test holds 100,000 executions in flight, and the
  # process-count checks need the VM to themselves.
  use ExUnit.Case, async: false

  import Py.TestHelpers

  doctest Py.Coalesce

  @long 30_000

  # An execution that tells the test it started (and from which process),
  # then waits for `:release`, so callers can be made to overlap without
  # relying on timing.
  defp held(test, value) do
    fn ->
      send(test, {:executing, self()})

      receive do
        :release -> value
      end
    end
  end

  defp flight(group, key) do
    case Py.Coalesce.in_flight({group, key}) do
      {:process, pid, _} -> pid
      _ -> nil
    end
  end

  # Waits until the execution of {group, key} has `n` callers: a Python call
  # led by its first caller counts the leader and the waiters it is sure to
  # answer (Py.Coalesce.Leader.callers/1); a flight process monitors each
  # waiter and the helper running an Elixir function (`extra`).
  defp await_waiters(group, key, n, extra \\ 1) do
    assert eventually(fn -> callers_of(group, key, extra) == n end, @long)
  end

  defp callers_of(group, key, extra) do
    case Py.Coalesce.in_flight({group, key}) do
      {:leader, _leader, _joiners} ->
        Py.Coalesce.Leader.callers({group, key})

      {:process, pid, _} ->
        case Process.info(pid, :monitors) do
          {:monitors, monitors} -> length(monitors) - extra
          nil -> nil
        end

      nil ->
        nil
    end
  end

  defp callers(n, fun), do: for(_ <- 1..n, do: Task.async(fun))

  defp group, do: {__MODULE__, make_ref()}

  describe "run/4" do
    test "concurrent callers of one key share one execution and its value" do
      g = group()
      test = self()
      tasks = callers(50, fn -> Py.Coalesce.run(g, :k, held(test, {:ok, make_ref()})) end)
      assert_receive {:executing, executor}, @long
      await_waiters(g, :k, 50)
      send(executor, :release)

      results = Enum.map(tasks, &Task.await(&1, @long))
      assert [{:ok, ref}] = Enum.uniq(results)
      assert is_reference(ref)
      refute_received {:executing, _}
      assert %{misses: 1, hits: 49, errors: 0, active: 0, hit_rate: 0.98} = Py.Coalesce.stats(g)
    end

    test "an error is shared as it is, and counted once" do
      g = group()
      test = self()
      tasks = callers(5, fn -> Py.Coalesce.run(g, :k, held(test, {:error, :nope})) end)
      assert_receive {:executing, executor}, @long
      await_waiters(g, :k, 5)
      send(executor, :release)
      assert Enum.map(tasks, &Task.await/1) == List.duplicate({:error, :nope}, 5)
      assert %{misses: 1, hits: 4, errors: 1} = Py.Coalesce.stats(g)
    end

    test "once an execution finished the key is free: the next caller runs again" do
      g = group()
      counter = :counters.new(1, [])
      count = fn -> :counters.add(counter, 1, 1) && {:ok, :counters.get(counter, 1)} end
      assert Py.Coalesce.run(g, :k, count) == {:ok, 1}
      assert Py.Coalesce.run(g, :k, count) == {:ok, 2}
      assert flight(g, :k) == nil
    end

    test "different keys and different groups do not share" do
      g = group()
      assert Py.Coalesce.run(g, 1, fn -> {:ok, 1} end) == {:ok, 1}
      assert Py.Coalesce.run(g, 1.0, fn -> {:ok, 1.0} end) == {:ok, 1.0}
      assert Py.Coalesce.run(group(), 1, fn -> {:ok, :other} end) == {:ok, :other}
    end

    test "a raise, a throw and an exit reach every waiter as an error naming them" do
      for {fun, message} <- [
            {fn -> raise ArgumentError, "bad" end, ~r/raised ArgumentError: bad$/},
            {fn -> throw(:ball) end, ~r/threw :ball$/},
            {fn -> exit(:gone) end, ~r/exited: :gone$/}
          ] do
        g = group()
        test = self()

        tasks =
          callers(3, fn ->
            Py.Coalesce.run(g, :k, fn ->
              send(test, {:executing, self()})
              receive(do: (:release -> fun.()))
            end)
          end)

        assert_receive {:executing, executor}, @long
        await_waiters(g, :k, 3)
        send(executor, :release)

        results = Enum.map(tasks, &Task.await/1)
        assert [{:error, %Py.Error{type: :coalesce_crashed} = error}] = Enum.uniq(results)
        assert error.message =~ ~r/^the shared execution \(process #PID<[\d.]+>\) /
        assert error.message =~ message
        assert %{errors: 1, active: 0} = Py.Coalesce.stats(g)
        assert flight(g, :k) == nil
      end
    end

    test "an execution whose process is killed gives every waiter an error naming it" do
      g = group()
      test = self()
      tasks = callers(3, fn -> Py.Coalesce.run(g, :k, held(test, {:ok, 1})) end)
      assert_receive {:executing, executor}, @long
      await_waiters(g, :k, 3)
      Process.exit(executor, :kill)

      for result <- Enum.map(tasks, &Task.await/1) do
        assert {:error, %Py.Error{type: :coalesce_crashed, message: message}} = result
        assert message =~ inspect(executor)
        assert message =~ "exited: :killed"
      end

      assert Py.Coalesce.run(g, :k, fn -> {:ok, :again} end) == {:ok, :again}
    end

    test "a killed flight process gives its waiters an error, and the key works again" do
      g = group()
      test = self()
      tasks = callers(3, fn -> Py.Coalesce.run(g, :k, held(test, {:ok, 1})) end)
      assert_receive {:executing, _executor}, @long
      await_waiters(g, :k, 3)
      flight = flight(g, :k)
      Process.exit(flight, :kill)

      for result <- Enum.map(tasks, &Task.await/1) do
        assert {:error, %Py.Error{type: :coalesce_crashed, message: message}} = result
        assert message =~ inspect(flight)
        assert message =~ "killed"
      end

      assert Py.Coalesce.run(g, :k, fn -> {:ok, :again} end) == {:ok, :again}
      assert %{errors: 1, active: 0} = Py.Coalesce.stats(g)
    end

    test "a flight killed after forget/2 is counted once, and active comes back to zero" do
      g = group()
      test = self()
      tasks = callers(2, fn -> Py.Coalesce.run(g, :k, held(test, {:ok, 1})) end)
      assert_receive {:executing, _executor}, @long
      await_waiters(g, :k, 2)
      flight = flight(g, :k)
      :ok = Py.Coalesce.forget(g, :k)
      Process.exit(flight, :kill)

      assert [{:error, %Py.Error{type: :coalesce_crashed}}] =
               Enum.uniq(Enum.map(tasks, &Task.await/1))

      assert %{misses: 1, errors: 1, active: 0} = Py.Coalesce.stats(g)
    end

    test "the caller that started the execution can be killed: the others still get it" do
      g = group()
      test = self()
      leader = spawn(fn -> Py.Coalesce.run(g, :k, held(test, {:ok, :shared})) end)
      assert_receive {:executing, executor}, @long
      await_waiters(g, :k, 1)
      tasks = callers(3, fn -> Py.Coalesce.run(g, :k, fn -> {:ok, :not_shared} end) end)
      await_waiters(g, :k, 4)

      Process.exit(leader, :kill)
      await_waiters(g, :k, 3)
      send(executor, :release)
      assert Enum.map(tasks, &Task.await/1) == List.duplicate({:ok, :shared}, 3)
    end

    test "a waiter killed while waiting leaves the others unaffected" do
      g = group()
      test = self()
      tasks = callers(2, fn -> Py.Coalesce.run(g, :k, held(test, {:ok, :v})) end)
      assert_receive {:executing, executor}, @long
      victim = spawn(fn -> Py.Coalesce.run(g, :k, fn -> {:ok, :not_shared} end) end)
      await_waiters(g, :k, 3)
      Process.exit(victim, :kill)
      await_waiters(g, :k, 2)
      send(executor, :release)
      assert Enum.map(tasks, &Task.await/1) == [ok: :v, ok: :v]
    end

    test "a waiter's timeout ends its own wait only; the execution goes on for the others" do
      g = group()
      test = self()

      patient =
        callers(2, fn -> Py.Coalesce.run(g, :k, held(test, {:ok, :v}), timeout: @long) end)

      assert_receive {:executing, executor}, @long
      await_waiters(g, :k, 2)

      assert {:error, %Py.Error{type: :timeout, message: message}} =
               Py.Coalesce.run(g, :k, fn -> {:ok, :not_shared} end, timeout: 10)

      assert message =~ "coalesced call exceeded 10 ms"
      assert Process.alive?(executor)
      await_waiters(g, :k, 2)
      send(executor, :release)
      assert Enum.map(patient, &Task.await(&1, @long)) == [ok: :v, ok: :v]
      refute_received {:executing, _}
    end

    test "when the last waiter has gone the execution is cancelled" do
      g = group()
      test = self()

      tasks =
        for t <- [10, 20, 30] do
          Task.async(fn -> Py.Coalesce.run(g, :k, held(test, {:ok, :v}), timeout: t) end)
        end

      assert_receive {:executing, executor}, @long
      ref = Process.monitor(executor)
      results = Enum.map(tasks, &Task.await/1)
      assert Enum.all?(results, &match?({:error, %Py.Error{type: :timeout}}, &1))
      assert_receive {:DOWN, ^ref, :process, ^executor, :killed}, @long
      assert eventually(fn -> flight(g, :k) == nil end, @long)
      assert eventually(fn -> Py.Coalesce.stats(g).active == 0 end, @long)
      # The key starts a fresh execution afterwards.
      assert Py.Coalesce.run(g, :k, fn -> {:ok, :fresh} end) == {:ok, :fresh}
    end

    test "forget while callers wait: they get the running result, new callers a new execution" do
      g = group()
      test = self()
      old = callers(2, fn -> Py.Coalesce.run(g, :k, held(test, {:ok, :old})) end)
      assert_receive {:executing, old_executor}, @long
      await_waiters(g, :k, 2)

      assert Py.Coalesce.forget(g, :k) == :ok
      new = callers(2, fn -> Py.Coalesce.run(g, :k, held(test, {:ok, :new})) end)
      assert_receive {:executing, new_executor}, @long
      await_waiters(g, :k, 2)

      send(old_executor, :release)
      assert Enum.map(old, &Task.await/1) == [ok: :old, ok: :old]
      # The old flight's end did not take the new flight's key.
      assert is_pid(flight(g, :k))
      send(new_executor, :release)
      assert Enum.map(new, &Task.await/1) == [ok: :new, ok: :new]
      assert %{misses: 2, hits: 2} = Py.Coalesce.stats(g)
    end

    test "keys are compared exactly: 1 and 1.0 are two executions" do
      g = group()
      test = self()
      int = Task.async(fn -> Py.Coalesce.run(g, 1, held(test, {:ok, :int})) end)
      assert_receive {:executing, int_executor}, @long
      float = Task.async(fn -> Py.Coalesce.run(g, 1.0, held(test, {:ok, :float})) end)
      assert_receive {:executing, float_executor}, @long
      assert {:process, int_flight, 0} = Py.Coalesce.in_flight({g, 1})
      assert {:process, float_flight, 0} = Py.Coalesce.in_flight({g, 1.0})
      assert int_flight != float_flight
      # An equal term built anew is the same key.
      same = Task.async(fn -> Py.Coalesce.run(g, String.to_integer("1"), fn -> :unused end) end)
      await_waiters(g, 1, 2)
      send(int_executor, :release)
      send(float_executor, :release)
      assert Task.await(int, @long) == {:ok, :int}
      assert Task.await(same, @long) == {:ok, :int}
      assert Task.await(float, @long) == {:ok, :float}
      assert %{misses: 2, hits: 1} = Py.Coalesce.stats(g)
      assert Py.Coalesce.in_flight({g, 1}) == nil
    end

    test "forget_all forgets every key of the group and no other group's" do
      g = group()
      other = group()
      test = self()
      a = Task.async(fn -> Py.Coalesce.run(g, :a, held(test, {:ok, :a})) end)
      b = Task.async(fn -> Py.Coalesce.run(other, :b, held(test, {:ok, :b})) end)
      assert_receive {:executing, e1}, @long
      assert_receive {:executing, e2}, @long
      await_waiters(g, :a, 1)
      await_waiters(other, :b, 1)

      assert Py.Coalesce.forget_all(g) == :ok
      assert flight(g, :a) == nil
      assert is_pid(flight(other, :b))
      send(e1, :release)
      send(e2, :release)
      assert Enum.sort([Task.await(a), Task.await(b)]) == [ok: :a, ok: :b]
    end

    test "keys of every shape: an equal term finds its flight, forget_all finds them all" do
      # A string group: its keys take the native key encoder's common path
      # (binaries, floats, small integers, atoms, lists, tuples), the others
      # the general one.
      g = "coalesce-keys-" <> Integer.to_string(System.unique_integer([:positive]))
      test = self()

      keys = [
        {"m", "f", [2.0]},
        {"m", "f", [[1.5, "x"], {}]},
        {"m", "f", [1]},
        {"m", "f", [1.0]},
        {"m", "f", [[1, 2, 3], [1, 300], -5, 70_000, 2 ** 40]},
        {"m", "f", [:a, self(), %{k: 1}]},
        [],
        [[]],
        {"a", <<1::3>>},
        [1.0 | 2.0],
        Tuple.duplicate("y", 300),
        # Atoms: ASCII, Latin-1 past 127 (two UTF-8 bytes each), a name of
        # over 255 UTF-8 bytes, and one that is not Latin-1.
        {:e, true, nil},
        :é,
        String.to_atom(String.duplicate("é", 200)),
        :α
      ]

      tasks = Enum.map(keys, &Task.async(fn -> Py.Coalesce.run(g, &1, held(test, {:ok, &1})) end))
      # One execution per key: none of them shares another's (1 and 1.0 differ).
      executors = for _ <- keys, do: assert_receive({:executing, e}, @long) && e

      for k <- keys do
        copy = :erlang.binary_to_term(:erlang.term_to_binary(k))
        assert is_pid(flight(g, copy)), "no flight for #{inspect(k)}"
      end

      assert Py.Coalesce.forget_all(g) == :ok
      for k <- keys, do: assert(flight(g, k) == nil)
      Enum.each(executors, &send(&1, :release))
      assert Enum.map(tasks, &Task.await/1) == Enum.map(keys, &{:ok, &1})
    end

    test "stats/0 lists every group; reset_stats/1 zeroes the counters but not active" do
      g = group()
      test = self()
      assert Py.Coalesce.run(g, :x, fn -> {:ok, 1} end) == {:ok, 1}
      task = Task.async(fn -> Py.Coalesce.run(g, :k, held(test, {:ok, 2})) end)
      assert_receive {:executing, executor}, @long
      assert %{^g => %{misses: 2, active: 1}} = Py.Coalesce.stats()

      assert Py.Coalesce.reset_stats(g) == :ok
      assert %{misses: 0, hits: 0, errors: 0, active: 1, hit_rate: 0.0} = Py.Coalesce.stats(g)
      send(executor, :release)
      assert Task.await(task) == {:ok, 2}
      assert %{misses: 0, active: 0} = Py.Coalesce.stats(g)
      assert Py.Coalesce.reset_stats(group()) == :ok
    end

    test "named Python groups are listed by stats/0 as {:python, name}" do
      :ok =
        Py.exec("""
        import erlang
        _sc = erlang.SharedCall(name="beam-visible")
        _sc.call("k", lambda: 1)
        _sc.call("j", lambda: 2)
        """)

      assert %{{:python, "beam-visible"} => %{misses: 2, hits: 0, active: 0}} =
               Py.Coalesce.stats()

      assert %{misses: 2} = Py.Coalesce.stats({:python, "beam-visible"})
    end

    @tag timeout: 300_000
    test "SharedCall coalesces in a sub-interpreter context and is listed by the BEAM" do
      python = System.get_env("PYBRIDGE_TEST_PY312")

      unless python && File.exists?(python) do
        flunk(
          "PYBRIDGE_TEST_PY312 is not set to a Python executable: run the suite with `make test`"
        )
      end

      peer =
        start_python_peer(python, num_contexts: 1, pools: [iso: [size: 1, mode: :subinterpreter]])

      call = fn m, f, a -> :peer.call(peer, m, f, a, 60_000) end
      [iso] = call.(Py.Context, :contexts, [:iso])

      code = """
      import erlang, sys, threading, time
      shared = erlang.SharedCall(name="in-sub")
      gate = threading.Event()
      runs = []
      def work():
          runs.append(1)
          gate.wait(30)
          return 42
      out = []
      ts = [threading.Thread(target=lambda: out.append(shared.call("k", work))) for _ in range(4)]
      for t in ts:
          t.start()
      while shared.get_stats().hits < 3:
          time.sleep(0.001)
      gate.set()
      for t in ts:
          t.join()
      sys._coalesce_test = (shared, out, len(runs))
      """

      assert call.(Py, :exec, [iso, code]) == :ok

      assert {:ok, {[42, 42, 42, 42], 1}} =
               call.(Py, :eval, [iso, "__import__('sys')._coalesce_test[1:]"])

      assert %{{:python, "in-sub"} => %{hits: 3, misses: 1}} = call.(Py.Coalesce, :stats, [])
    end

    test "bad input raises ArgumentError before anything runs" do
      assert_raise ArgumentError,
                   ~r/^invalid function for Py.Coalesce.run\/4: expected a 0-arity function/,
                   fn -> Py.Coalesce.run(:g, :k, fn x -> x end) end

      assert_raise ArgumentError, ~r/^invalid :timeout option for Py.Coalesce.run\/4/, fn ->
        Py.Coalesce.run(:g, :k, fn -> :ok end, timeout: -1)
      end

      assert_raise ArgumentError, ~r/^unknown option :ttl for Py.Coalesce.run\/4/, fn ->
        Py.Coalesce.run(:g, :k, fn -> :ok end, ttl: 5)
      end
    end
  end

  describe "coalesce: on Py calls" do
    setup do
      # One worker, so a call held in Python keeps every later call queued;
      # a queue big enough for the 100,000-key test (the default is 10,000).
      ctx = Py.Context.new(max_workers: 1, max_queue: 200_000)

      :ok =
        Py.exec(ctx, """
        import sys, threading, types
        m = types.ModuleType("coalesce_fixture")
        m.runs = 0
        m.gate = threading.Event()
        def work(x, scale=1):
            m.runs += 1
            m.gate.wait()
            return [x * scale, m.runs]
        def spin():
            m.runs += 1
            while True:
                pass
        m.work = work
        m.spin = spin
        sys.modules["coalesce_fixture"] = m
        """)

      on_exit(fn ->
        Py.exec("__import__('sys').modules.pop('coalesce_fixture', None)")
      end)

      %{ctx: ctx}
    end

    # From another context: the fixture's context has one worker, held.
    defp release, do: :ok = Py.exec("__import__('coalesce_fixture').gate.set()")

    defp runs, do: Py.eval!("__import__('coalesce_fixture').runs")

    test "coalesce: true runs one Python call for identical concurrent calls", %{ctx: ctx} do
      Py.Coalesce.reset_stats("coalesce_fixture.work")

      call = fn ->
        Py.call(ctx, :coalesce_fixture, :work, [21], coalesce: true, kwargs: [scale: 2])
      end

      tasks = callers(20, call)
      key = {"coalesce_fixture", "work", [21], %{"scale" => 2}}
      await_waiters("coalesce_fixture.work", key, 20, 0)

      assert {:leader, _, 19} = Py.Coalesce.in_flight({"coalesce_fixture.work", key})
      release()

      assert Enum.uniq(Enum.map(tasks, &Task.await(&1, @long))) == [{:ok, [42, 1]}]
      assert runs() == 1
      assert %{misses: 1, hits: 19, active: 0} = Py.Coalesce.stats("coalesce_fixture.work")
      # Nothing of the execution is left behind: its key is free.
      assert Py.Coalesce.in_flight({"coalesce_fixture.work", key}) == nil
      # Arguments are part of the key: another argument is another execution.
      assert Py.call(ctx, :coalesce_fixture, :work, [1], coalesce: true) == {:ok, [1, 2]}
    end

    test "a Python call's keys are compared exactly: 1 and 1.0 are two leaders", %{ctx: ctx} do
      g = group()
      call = fn key -> Py.call(ctx, :coalesce_fixture, :work, [1], coalesce: key, group: g) end
      int = Task.async(fn -> call.(1) end)
      assert eventually(fn -> match?({:leader, _, 0}, Py.Coalesce.in_flight({g, 1})) end, @long)
      float = Task.async(fn -> call.(1.0) end)
      assert eventually(fn -> match?({:leader, _, 0}, Py.Coalesce.in_flight({g, 1.0})) end, @long)
      assert {:leader, int_leader, 0} = Py.Coalesce.in_flight({g, 1})
      assert {:leader, float_leader, 0} = Py.Coalesce.in_flight({g, 1.0})
      assert {int_leader, float_leader} == {int.pid, float.pid}
      release()
      assert Task.await(int, @long) == {:ok, [1, 1]}
      assert Task.await(float, @long) == {:ok, [1, 2]}
      assert runs() == 2
      assert %{misses: 2, hits: 0, active: 0} = Py.Coalesce.stats(g)
    end

    # Joiners whose timeouts pass while the call ends: each is answered
    # exactly once, with the result (counted as a hit) or its timeout.
    test "joiners timing out as the call ends: each gets one answer, hits count the results",
         %{ctx: ctx} do
      g = group()

      call = fn t ->
        Py.call(ctx, :coalesce_fixture, :work, [3], coalesce: :k, group: g, timeout: t)
      end

      leader = Task.async(fn -> call.(@long) end)
      await_waiters(g, :k, 1, 0)
      joiners = for i <- 1..200, do: Task.async(fn -> call.(rem(i, 40) * 5 + 1) end)

      # Released once every joiner is in or has timed out (none can start a
      # second execution); the rest time out around the release.
      assert eventually(
               fn ->
                 in_flight = Py.Coalesce.Leader.committed({g, :k}) - 1
                 in_flight + Enum.count(joiners, &(not Process.alive?(&1.pid))) >= 200
               end,
               @long
             )

      release()
      assert Task.await(leader, @long) == {:ok, [3, 1]}
      results = Enum.map(joiners, &Task.await(&1, @long))

      {ok, timed_out} =
        Enum.split_with(results, fn
          {:ok, [3, 1]} -> true
          {:error, %Py.Error{type: :timeout}} -> false
        end)

      assert length(ok) + length(timed_out) == 200
      assert %{misses: 1, hits: hits, active: 0} = Py.Coalesce.stats(g)
      assert hits == length(ok)
      assert runs() == 1
      assert Py.Coalesce.in_flight({g, :k}) == nil
    end

    test "eval and exec with a key and a group of one's own", %{ctx: ctx} do
      g = group()
      code = "__import__('coalesce_fixture').work(x)"

      tasks =
        for x <- 1..5 do
          # Different locals, one key: the key given decides what is shared.
          Task.async(fn -> Py.eval(ctx, code, %{x: x}, coalesce: :same, group: g) end)
        end

      await_waiters(g, :same, 5, 0)
      release()
      assert [{:ok, [_x, 1]}] = Enum.uniq(Enum.map(tasks, &Task.await(&1, @long)))
      assert %{misses: 1, hits: 4} = Py.Coalesce.stats(g)

      assert Py.exec("n = 1", coalesce: true) == :ok
      assert %{misses: 1} = Py.Coalesce.stats("exec")
    end

    test "a Python exception is shared by every waiter", %{ctx: ctx} do
      g = group()
      code = "__import__('coalesce_fixture').work(None)"
      tasks = callers(5, fn -> Py.eval(ctx, code, %{}, coalesce: true, group: g) end)
      await_waiters(g, {code, %{}}, 5, 0)
      release()

      assert [{:error, %Py.Error{type: "TypeError"}}] =
               Enum.uniq(Enum.map(tasks, &Task.await(&1, @long)))

      assert %{errors: 1, misses: 1, hits: 4} = Py.Coalesce.stats(g)
    end

    test "a waiter's timeout does not cancel the Python call for the others", %{ctx: ctx} do
      g = group()

      call = fn t ->
        Py.call(ctx, :coalesce_fixture, :work, [3], coalesce: :k, group: g, timeout: t)
      end

      patient = callers(2, fn -> call.(@long) end)
      await_waiters(g, :k, 2, 0)

      assert {:error, %Py.Error{type: :timeout}} = call.(10)
      await_waiters(g, :k, 2, 0)
      release()
      assert Enum.map(patient, &Task.await(&1, @long)) == [ok: [3, 1], ok: [3, 1]]
      assert runs() == 1
    end

    test "the first caller runs the call itself, and its timeout hands it to the others", %{
      ctx: ctx
    } do
      g = group()

      call = fn t ->
        Py.call(ctx, :coalesce_fixture, :work, [4], coalesce: :k, group: g, timeout: t)
      end

      # The leader's timeout must only pass once the others have joined:
      # they join within milliseconds, so 3 s leaves a wide margin.
      leader = Task.async(fn -> call.(3_000) end)
      await_waiters(g, :k, 1, 0)
      # The leader holds the key itself: no process runs the call for it.
      assert {:leader, pid, _joiners} = Py.Coalesce.in_flight({g, :k})
      assert pid == leader.pid

      patient = callers(2, fn -> call.(@long) end)
      await_waiters(g, :k, 3, 0)
      assert {:error, %Py.Error{type: :timeout}} = Task.await(leader, @long)
      release()
      assert Enum.map(patient, &Task.await(&1, @long)) == [ok: [4, 1], ok: [4, 1]]
      assert runs() == 1
      assert %{misses: 1, hits: 2, active: 0, errors: 0} = Py.Coalesce.stats(g)
    end

    test "a killed first caller: the others still get the call's result", %{ctx: ctx} do
      g = group()
      call = fn -> Py.call(ctx, :coalesce_fixture, :work, [5], coalesce: :k, group: g) end
      leader = spawn(call)
      await_waiters(g, :k, 1, 0)
      patient = callers(3, call)
      await_waiters(g, :k, 4, 0)

      Process.exit(leader, :kill)
      # A waiter takes the call over: every waiter ends up watching the
      # process it was handed to (had the call ended just as its leader
      # died, the reply would have been lost with it, and the waiters told
      # so), and the key is free for new callers.
      assert eventually(
               fn ->
                 Enum.all?(patient, fn task ->
                   case Process.info(task.pid, :monitors) do
                     {:monitors, [process: owner]} -> owner != leader
                     _ -> false
                   end
                 end)
               end,
               @long
             )

      assert Py.Coalesce.in_flight({g, :k}) == nil
      release()
      assert Enum.map(patient, &Task.await(&1, @long)) == List.duplicate({:ok, [5, 1]}, 3)
      assert runs() == 1
      assert %{misses: 1, hits: 3, active: 0} = Py.Coalesce.stats(g)
    end

    test "a first caller killed with nobody else waiting: its call is interrupted", %{ctx: ctx} do
      g = group()

      leader =
        spawn(fn ->
          Py.call(ctx, :coalesce_fixture, :spin, [], coalesce: :k, group: g, timeout: :infinity)
        end)

      assert eventually(fn -> runs() == 1 end, @long)
      Process.exit(leader, :kill)

      # The context has one worker: it answers again only if the loop stopped.
      assert Py.eval(ctx, "1 + 1", %{}, timeout: @long) == {:ok, 2}
      assert Py.Coalesce.in_flight({g, :k}) == nil
      assert eventually(fn -> Py.Coalesce.stats(g).active == 0 end, @long)
      # Counted once, as an execution that ended in a crash.
      assert %{misses: 1, errors: 1, hits: 0} = Py.Coalesce.stats(g)
      # The key is free: the next caller runs the call again.
      assert Py.call(ctx, :builtins, :abs, [-2], coalesce: :k, group: g) == {:ok, 2}
    end

    test "print output of a coalesced call reaches its caller's group leader" do
      g = group()

      output =
        ExUnit.CaptureIO.capture_io(fn ->
          assert Py.exec("print('coalesced hello')", coalesce: :k, group: g) == :ok
        end)

      assert output =~ "coalesced hello"
    end

    test "a call answered at once leaves nothing behind: its key is free, its miss counted", %{
      ctx: ctx
    } do
      g = group()
      # Answered inline: the key is free again before the caller dies.
      assert Py.call(ctx, :builtins, :abs, [-3], coalesce: :k, group: g) == {:ok, 3}
      assert Py.Coalesce.in_flight({g, :k}) == nil
      assert %{misses: 1, hits: 0, active: 0} = Py.Coalesce.stats(g)
    end

    test "calls answered at once are counted: stats/1, stats/0 and reset_stats/1 see them",
         %{ctx: ctx} do
      # Uncontended calls are counted in the NIF that ran them (the Stats
      # module adds them in); groups of every kind of term.
      for g <- ["counted-#{System.unique_integer([:positive])}", :counted, {:counted, make_ref()}] do
        Py.Coalesce.reset_stats(g)
        calls_are_counted(ctx, g)
      end
    end

    defp calls_are_counted(ctx, g) do
      call = fn x -> Py.call(ctx, :math, :sqrt, [x], coalesce: true, group: g) end

      assert Enum.map([1.0, 4.0, 9.0], call) == [{:ok, 1.0}, {:ok, 2.0}, {:ok, 3.0}]
      assert {:error, %Py.Error{type: "ValueError"}} = call.(-1.0)
      assert %{misses: 4, hits: 0, errors: 1, active: 0, hit_rate: 0.0} = Py.Coalesce.stats(g)
      assert %{^g => %{misses: 4, errors: 1}} = Py.Coalesce.stats()

      assert Py.Coalesce.reset_stats(g) == :ok
      assert %{misses: 0, errors: 0} = Py.Coalesce.stats(g)
      assert call.(16.0) == {:ok, 4.0}
      assert %{misses: 1, errors: 0} = Py.Coalesce.stats(g)
    end

    test "a coalesced job that is not one raises ArgumentError and frees its key", %{ctx: ctx} do
      g = "not-a-job-#{System.unique_integer([:positive])}"

      assert_raise ArgumentError, ~r/not a Python job/, fn ->
        Py.Coalesce.await(g, :k, {:python, ctx.ref, nil, {:no_such_job}}, 1_000)
      end

      assert Py.Coalesce.in_flight({g, :k}) == nil
      assert Py.call(ctx, :math, :sqrt, [4.0], coalesce: :k, group: g) == {:ok, 2.0}
    end

    test "when every waiter has gone the Python call is interrupted", %{ctx: ctx} do
      g = group()

      tasks =
        for t <- [10, 20, 30] do
          Task.async(fn ->
            Py.call(ctx, :coalesce_fixture, :spin, [], coalesce: :k, group: g, timeout: t)
          end)
        end

      assert Enum.all?(
               Enum.map(tasks, &Task.await(&1, @long)),
               &match?({:error, %Py.Error{type: :timeout}}, &1)
             )

      # The context has one worker: it answers again only if the loop stopped.
      assert Py.eval(ctx, "1 + 1", %{}, timeout: @long) == {:ok, 2}
      assert runs() == 1
      assert eventually(fn -> Py.Coalesce.stats(g).active == 0 end, @long)
    end

    # 100,000 calls through one worker: about 10 s on a quiet machine, over
    # a minute on a loaded one; its own waits are bounded at 120 s each.
    @tag timeout: 600_000
    test "100,000 distinct keys in flight at once, and the memory comes back", %{ctx: ctx} do
      g = group()
      n = 100_000
      # Hold the context's one worker so every coalesced call stays queued.
      holder = Task.async(fn -> Py.call(ctx, :coalesce_fixture, :work, [0], timeout: 120_000) end)
      assert eventually(fn -> runs() == 1 end, @long)
      :erlang.garbage_collect()
      before = :erlang.memory(:total)
      processes = :erlang.system_info(:process_count)

      tasks =
        for i <- 1..n do
          Task.async(fn ->
            Py.call(ctx, :builtins, :abs, [-i], coalesce: true, group: g, timeout: 120_000)
          end)
        end

      assert eventually(fn -> Py.Coalesce.stats(g).active == n end, 120_000)
      assert Py.Native.coalesce_size() >= n
      peak = :erlang.memory(:total)
      release()

      results = Enum.map(tasks, &Task.await(&1, 120_000))
      assert results == Enum.map(1..n, &{:ok, &1})
      assert Task.await(holder, @long) == {:ok, [0, 1]}
      assert %{misses: ^n, hits: 0, active: 0, errors: 0} = Py.Coalesce.stats(g)
      assert Py.Native.coalesce_size() == 0
      assert eventually(fn -> :erlang.system_info(:process_count) <= processes end, @long)
      :erlang.garbage_collect()
      # The flights and waiters took hundreds of MB at the peak; what is left
      # is a small fraction of that.
      assert :erlang.memory(:total) - before < (peak - before) / 4
    end

    test "bad coalescing options raise ArgumentError" do
      assert_raise ArgumentError,
                   ~r/^invalid :coalesce option for Py.call\/4: expected true, false or a coalescing key/,
                   fn -> Py.call(:math, :sqrt, [4], coalesce: nil) end

      assert_raise ArgumentError,
                   ~r/^invalid :group option for Py.eval\/3: expected it together with coalesce:/,
                   fn ->
                     Py.eval("1", %{}, group: :g)
                   end

      assert_raise ArgumentError, ~r/^invalid :group option for Py.exec\/2/, fn ->
        Py.exec("1", group: nil, coalesce: true)
      end

      assert Py.call(:math, :sqrt, [4], coalesce: false) == {:ok, 2.0}
    end
  end
end
