defmodule Py.CallbackTest do
  # Not async: functions are registered node-wide, and some tests fill
  # every context of the default pool.
  use ExUnit.Case, async: false

  setup do
    on_exit(fn -> Enum.each(Py.registered_functions(), &Py.unregister_function/1) end)
    :ok
  end

  defp erl(code, locals \\ %{}, opts \\ []),
    do: Py.eval("__import__('erlang')." <> code, locals, opts)

  describe "registering" do
    test "register, list, unregister; names are atoms or strings" do
      assert :ok = Py.register_function(:twice, &(&1 * 2))
      assert :ok = Py.register_function("thrice", &(&1 * 3))
      assert "twice" in Py.registered_functions()
      assert "thrice" in Py.registered_functions()
      assert :ok = Py.unregister_function("twice")
      refute "twice" in Py.registered_functions()
      assert :ok = Py.unregister_function(:never_registered)
    end

    test "{module, function} is called with the arguments spread" do
      Py.register_function(:max2, {Kernel, :max})
      assert {:ok, 7} = erl("max2(3, 7)")
    end

    test "bad names and functions raise ArgumentError" do
      assert_raise ArgumentError, fn -> Py.register_function(123, fn -> 1 end) end
      assert_raise ArgumentError, fn -> Py.register_function(:x, :not_a_fun) end
      assert_raise ArgumentError, fn -> Py.register_function("", fn -> 1 end) end
    end
  end

  describe "calling from Python" do
    test "erlang.call, erlang.name and from erlang import name" do
      Py.register_function(:add, fn a, b -> a + b end)
      assert {:ok, 42} = erl("call('add', 40, 2)")
      assert {:ok, 3} = erl("add(1, 2)")
      :ok = Py.exec("from erlang import add\ndef f(): return add(1, 1) + add(2, 2)")
      assert {:ok, 6} = Py.eval("f()")
    end

    test "arguments and results convert like a call's" do
      Py.register_function(:echo, fn x -> x end)

      Py.register_function(:shape, fn ->
        %{"list" => [1, 2.5], "tuple" => {1, "a"}, "none" => nil}
      end)

      assert {:ok, true} =
               erl("echo({'a': [1, (2, 3)], 'b': None}) == {'a': [1, (2, 3)], 'b': None}")

      assert {:ok, %{"list" => [1, 2.5], "tuple" => {1, "a"}, "none" => nil}} = erl("shape()")
    end

    test "the callback runs in the calling process: its dictionary, its pid" do
      Py.register_function(:whoami, fn -> {self(), Process.get(:marker)} end)
      Process.put(:marker, :here)
      me = self()
      assert {:ok, {^me, "here"}} = erl("whoami()")
      assert {:ok, ^me} = erl("self()")
    end

    test "erlang.self() is None outside a call" do
      :ok =
        Py.exec("""
        import threading, erlang
        seen = []
        t = threading.Thread(target=lambda: seen.append(erlang.self()))
        t.start(); t.join()
        """)

      assert {:ok, [nil]} = Py.eval("seen")
    end

    test "several sequential erlang.call in one function each run exactly once" do
      me = self()
      Py.register_function(:tick, fn n -> send(me, {:tick, n}) && n end)

      :ok =
        Py.exec("""
        import erlang
        def three():
            return [erlang.tick(1), erlang.tick(2), erlang.call('tick', 3)]
        """)

      assert {:ok, [1, 2, 3]} = Py.eval("three()")
      assert_received {:tick, 1}
      assert_received {:tick, 2}
      assert_received {:tick, 3}
      refute_received {:tick, _}
    end

    test "after a callback the result, and output before it, come back in order; nothing is left" do
      Py.register_function(:seven, fn -> 7 end)

      :ok =
        Py.exec("""
        import erlang
        def after_callbacks(n):
            total = 0
            for i in range(n):
                total += erlang.seven()
                print("after", i)
            return total
        def quick_after_callback():
            return erlang.seven() + 1
        """)

      for _ <- 1..50, do: assert(Py.eval("quick_after_callback()") == {:ok, 8})

      out =
        ExUnit.CaptureIO.capture_io(fn ->
          assert Py.eval("after_callbacks(3)") == {:ok, 21}
        end)

      assert out == "after 0\nafter 1\nafter 2\n"
      assert Process.info(self(), :message_queue_len) == {:message_queue_len, 0}
    end

    test "the asynchronous primitive: start, then wait" do
      Py.register_function(:add, fn a, b -> a + b end)

      assert {:ok, {false, 5}} =
               Py.eval("""
               (lambda p: (False, p.wait(5)))(__import__('erlang')._callback.start('add', 2, 3))
               """)
    end
  end

  describe "failures become Python exceptions" do
    test "raise, exit and throw carry their reason" do
      Py.register_function(:raises, fn -> raise ArgumentError, "bad" end)
      Py.register_function(:exits, fn -> exit({:shutdown, 7}) end)
      Py.register_function(:throws, fn -> throw(:ball) end)

      :ok =
        Py.exec("""
        import erlang
        def catch(name):
            try:
                erlang.call(name)
            except erlang.Error as e:
                return (type(e).__name__, e.kind, e.reason, str(e))
        """)

      assert {:ok, {"Error", "error", reason, message}} = Py.eval("catch('raises')")
      assert reason["message"] == "bad"
      assert reason["__struct__"] == "Elixir.ArgumentError"
      assert message =~ "ArgumentError"
      assert {:ok, {"ExitError", "exit", {"shutdown", 7}, _}} = Py.eval("catch('exits')")
      assert {:ok, {"ThrowError", "throw", "ball", _}} = Py.eval("catch('throws')")
    end

    test "an uncaught failure fails the call with the Python exception" do
      Py.register_function(:boom, fn -> raise "boom" end)
      assert {:error, %Py.Error{type: "Error", message: message}} = erl("boom()")
      assert message =~ "boom"
    end

    test "an unknown name raises erlang.UnknownFunction (a LookupError)" do
      assert {:error, %Py.Error{type: "UnknownFunction"}} = erl("nope()")

      assert {:ok, true} =
               Py.eval("""
               (lambda e: issubclass(e.UnknownFunction, (e.Error, LookupError)))(__import__('erlang'))
               """)
    end

    test "a result that cannot cross raises erlang.Error" do
      Py.register_function(:fun, fn -> fn -> 1 end end)
      assert {:error, %Py.Error{type: "Error", message: message}} = erl("fun()")
      assert message =~ "cannot cross"
    end

    test "a function unregistered while a call to it is in flight finishes; later calls fail" do
      Py.register_function(:once, fn ->
        Py.unregister_function(:once)
        :done
      end)

      assert {:ok, "done"} = erl("once()")
      assert {:error, %Py.Error{type: "UnknownFunction"}} = erl("once()")
    end

    test "a huge result crosses" do
      Py.register_function(:big, fn ->
        {List.duplicate(7, 1_000_000), :binary.copy("x", 20_000_000)}
      end)

      assert {:ok, {1_000_000, 20_000_000}} =
               Py.eval("(lambda r: (len(r[0]), len(r[1])))(__import__('erlang').big())")
    end

    test "huge arguments and a huge message to the caller cross" do
      Py.register_function(:count, &length/1)
      assert {:ok, 1_000_000} = erl("count(list(range(1_000_000)))")

      assert {:ok, nil} =
               erl(
                 "send(erlang.self(), list(range(1_000_000)))"
                 |> String.replace("erlang.", "__import__('erlang').")
               )

      assert_received list when length(list) == 1_000_000
    end

    test "a caller killed while its callback runs: Python gets erlang.Error, not a hang" do
      me = self()
      Py.register_function(:die, fn -> Process.exit(self(), :kill) end)

      spawn(fn ->
        :ok =
          Py.exec("""
          import erlang
          def try_die(pid):
              try:
                  erlang.die()
              except erlang.Error as e:
                  erlang.send(pid, ('caught', str(e)))
          """)

        Py.eval("try_die(pid)", %{pid: me})
      end)

      assert_receive {"caught", message}, 10_000
      assert message =~ "exited without answering"
    end

    test "endless recursion ends at the depth limit with a clear error" do
      Py.register_function(:forever, fn -> Py.eval!("__import__('erlang').forever()") end)
      assert {:error, %Py.Error{message: message}} = erl("forever()")
      assert message =~ "depth limit"
    end
  end

  describe "reentrancy" do
    test "a Py call inside a callback runs in the same namespace" do
      Py.register_function(:peek, fn -> Py.eval!("secret * 2") end)
      :ok = Py.exec("secret = 21")
      assert {:ok, 42} = erl("peek()")
    end

    test "nested to depth 25" do
      Py.register_function(:down, fn n ->
        if n == 0, do: 0, else: 1 + Py.eval!("__import__('erlang').down(n - 1)", %{n: n})
      end)

      assert {:ok, 25} = erl("down(25)")
    end

    test "a context with one worker serves the call a callback makes into it" do
      ctx = Py.Context.new(max_workers: 1)
      Py.register_function(:inner, fn -> Py.eval!(ctx, "40 + 2") end)
      assert {:ok, 42} = Py.eval(ctx, "__import__('erlang').inner()", %{}, timeout: 10_000)
      Py.Context.close(ctx)
    end

    test "depth-20 chains in every context of the pool at once" do
      Py.register_function(:chain, fn n ->
        if n == 0, do: :bottom, else: Py.eval!("__import__('erlang').chain(n - 1)", %{n: n})
      end)

      results =
        Py.Context.contexts()
        |> Enum.flat_map(&[&1, &1])
        |> Enum.map(fn ctx ->
          Task.async(fn ->
            Py.Context.bind(ctx)
            Py.eval("__import__('erlang').chain(20)", %{}, timeout: 60_000)
          end)
        end)
        |> Task.await_many(70_000)

      assert Enum.all?(results, &(&1 == {:ok, "bottom"}))
    end

    test "a coalesced call can call back" do
      Py.register_function(:add, fn a, b -> a + b end)
      assert {:ok, 5} = erl("add(2, 3)", %{}, coalesce: true)
    end

    test "a task's callbacks run in the process that awaits it, each once" do
      me = self()
      Py.register_function(:tick, fn x -> send(me, {:tick, self(), x}) && x + 1 end)

      :ok =
        Py.exec("""
        import erlang
        def callback_task_ticks(n):
            x = 0
            for _ in range(n):
                x = erlang.tick(x)
            return x
        """)

      for n <- [1, 3] do
        task = Py.async_call(:__main__, :callback_task_ticks, [n])
        assert {:ok, ^n} = Py.await(task, 10_000)
        for x <- 0..(n - 1), do: assert_received({:tick, ^me, ^x})
        refute_received {:tick, _, _}
      end
    end
  end

  describe "threads" do
    test "a threading.Thread's callback runs in the callback pool" do
      me = self()
      Py.register_function(:where, fn -> send(me, {:ran_in, self()}) && :ok end)

      :ok =
        Py.exec("""
        import threading, erlang
        out = []
        t = threading.Thread(target=lambda: out.append(erlang.where()))
        t.start(); t.join()
        """)

      assert {:ok, ["ok"]} = Py.eval("out")
      assert_received {:ran_in, pid}
      assert pid != me
    end

    test "32 ThreadPoolExecutor workers call erlang.call concurrently" do
      Py.register_function(:square, fn x -> x * x end)

      :ok =
        Py.exec("""
        import erlang
        from concurrent.futures import ThreadPoolExecutor
        def squares(n):
            with ThreadPoolExecutor(max_workers=32) as ex:
                return list(ex.map(lambda i: erlang.square(i), range(n)))
        """)

      assert {:ok, squares} = Py.eval("squares(2000)", %{}, timeout: 60_000)
      assert squares == Enum.map(0..1999, &(&1 * &1))
    end

    test "erlang.call from a thread while the pool is withdrawn (shutdown) fails clearly" do
      Py.register_function(:add, fn a, b -> a + b end)
      dispatcher = Process.whereis(Py.Callback.Pool.Dispatcher)
      :ok = Py.Native.callback_setup([])

      try do
        :ok =
          Py.exec("""
          import threading, erlang
          out = []
          def attempt():
              try:
                  out.append(erlang.add(1, 2))
              except erlang.Error as e:
                  out.append(str(e))
          t = threading.Thread(target=attempt); t.start(); t.join()
          """)

        assert {:ok, [message]} = Py.eval("out")
        assert message =~ "not running"
      after
        :ok = Py.Native.callback_setup([dispatcher])
      end
    end
  end

  describe "erlang.send" do
    test "sends a term to a process" do
      assert {:ok, nil} = erl("send(pid, ('hello', [1, 2]))", %{pid: self()})
      assert_received {"hello", [1, 2]}
    end

    test "a dead pid raises erlang.Error with reason noproc" do
      pid = spawn(fn -> :ok end)
      ref = Process.monitor(pid)
      assert_receive {:DOWN, ^ref, _, _, _}

      :ok =
        Py.exec("""
        import erlang
        def send_to_dead(pid):
            try:
                erlang.send(pid, 1)
            except erlang.Error as e:
                return e.reason
        """)

      assert {:ok, "noproc"} = Py.eval("send_to_dead(pid)", %{pid: pid})
    end
  end

  describe "timeouts" do
    test "a callback not answered within the caller's timeout raises in Python" do
      me = self()

      Py.register_function(:slow, fn ->
        # Runs in the caller: wait until Python reports the timeout it got.
        receive do
          {"python_saw", name} -> send(me, {:python_saw, name})
        after
          10_000 -> :gave_up
        end
      end)

      :ok =
        Py.exec("""
        import erlang
        def wait_slow(pid):
            try:
                erlang.slow()
            except BaseException as e:
                erlang.send(pid, ('python_saw', type(e).__name__))
                raise
        """)

      assert {:error, %Py.Error{type: :timeout}} =
               Py.eval("wait_slow(pid)", %{pid: self()}, timeout: 300)

      assert_received {:python_saw, "Timeout"}
    end

    test "the outer call's timeout caps a call made inside a callback" do
      me = self()

      Py.register_function(:sleepy, fn ->
        result = Py.eval("__import__('time').sleep(30)")
        send(me, {:inner, result})
        :ok
      end)

      assert {:error, %Py.Error{type: :timeout}} = erl("sleepy()", %{}, timeout: 300)
      assert_received {:inner, {:error, %Py.Error{type: :timeout}}}
    end
  end

  describe "the Erlang facade" do
    test "py:register_function/2 gets the arguments as one list, in erlang_python's values" do
      me = self()
      :ok = :py.register_function(:erl_args, fn args -> send(me, {:args, args}) && :none end)
      assert {:ok, nil} = erl("erl_args(1, None)")
      assert_received {:args, [1, :none]}
      :ok = :py.unregister_function(:erl_args)
      refute "erl_args" in Py.registered_functions()
    end

    test "py:register_function/3 calls Module:Function(Args)" do
      :ok = :py.register_function(:erl_len, :erlang, :length)
      assert {:ok, 3} = erl("erl_len(1, 2, 3)")
    end
  end
end
