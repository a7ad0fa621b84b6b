defmodule Py.AsyncTest do
  use ExUnit.Case, async: true

  import Py.TestHelpers

  # Shared by every process (a module, not a namespace); each test uses keys
  # of its own.
  @module_source """
  import asyncio

  cancelled = {}
  finished = {}
  gates = {}

  async def add(a, b):
      await asyncio.sleep(0.001)
      return a + b

  async def fail():
      await asyncio.sleep(0)
      raise ValueError("async boom")

  started = {}

  async def sleeper(key, seconds):
      started[key] = True
      try:
          await asyncio.sleep(seconds)
          finished[key] = True
      except asyncio.CancelledError:
          cancelled[key] = True
          raise

  def gate(key, n):
      gates[key] = {"n": n, "arrived": 0, "event": asyncio.Event()}

  async def arrive(key):
      g = gates[key]
      g["arrived"] += 1
      await g["event"].wait()
      return g["arrived"]

  def arrived(key):
      return gates[key]["arrived"]

  async def release(key):
      gates[key]["event"].set()

  def was_started(key):
      return started.get(key, False)

  def was_cancelled(key):
      return cancelled.get(key, False)

  def plain(x):
      return x * 2

  async def first_step(x):
      # Before its first await a coroutine has its loop and its task, as
      # on the loop's thread, whichever thread runs that step.
      loop = asyncio.get_running_loop()
      task = asyncio.current_task()
      done = loop.create_future()
      done.set_result(x)
      if hasattr(asyncio, "timeout"):
          async with asyncio.timeout(5):
              pass
      return (await done, task is not None and not task.done(), loop.is_running())

  async def fail_at_once():
      raise ValueError("at once")

  async def sync_callback(x):
      import erlang
      return (erlang.call("async_test_reenter", x), erlang.self())
  """

  setup_all do
    :ok = install_module("pybridge_async_test", @module_source)
  end

  @mod :pybridge_async_test

  defp key, do: "k#{System.unique_integer([:positive])}"

  test "Py.call of an async def function awaits it" do
    assert Py.call(@mod, :add, [1, 2]) == {:ok, 3}
    assert {:error, %Py.Error{type: "ValueError", message: "async boom"}} = Py.call(@mod, :fail)
    assert Py.eval("__import__('asyncio').sleep(0, 'from eval')") == {:ok, "from eval"}
  end

  test "async_call returns a task; await gives its result, await_many all in order" do
    task = Py.async_call(@mod, :add, [3, 4])
    assert %Py.Task{} = task
    assert Py.await(task) == {:ok, 7}

    tasks = for n <- 1..20, do: Py.async_call(@mod, :add, [n, 0])
    assert Py.await_many(tasks) == Enum.map(1..20, &{:ok, &1})

    # Functions that are not async run like Py.call.
    assert Py.async_call(@mod, :plain, [21]) |> Py.await() == {:ok, 42}
    assert {:error, %Py.Error{type: "ValueError"}} = Py.async_call(@mod, :fail) |> Py.await()
    assert_raise Py.Error, fn -> Py.async_call(@mod, :fail) |> Py.await!() end
  end

  test "a coroutine that finishes in its first step: its loop, its task, its result or error" do
    for _ <- 1..3 do
      assert Py.call(@mod, :first_step, [7]) == {:ok, {7, true, true}}
      assert Py.async_call(@mod, :first_step, [8]) |> Py.await() == {:ok, {8, true, true}}

      assert {:error, %Py.Error{type: "ValueError", message: "at once"}} =
               Py.async_call(@mod, :fail_at_once) |> Py.await()
    end
  end

  test "a blocking erlang.call in a coroutine's first step may call back into its context" do
    ctx = Py.Context.new(max_workers: 1)

    :ok =
      Py.register_function("async_test_reenter", fn x ->
        {:ok, y} = Py.call(ctx, @mod, :plain, [x])
        y
      end)

    Py.with_context(ctx, fn ->
      # The callback runs in the pool (erlang.self() is None, as on the
      # loop's thread), and its Py.call into the one-thread context is served.
      assert Py.call(@mod, :sync_callback, [5]) == {:ok, {10, nil}}
      assert Py.async_call(@mod, :sync_callback, [6]) |> Py.await() == {:ok, {12, nil}}
    end)

    Py.unregister_function("async_test_reenter")
    Py.Context.close(ctx)
  end

  test "waiting coroutines hold no context thread: 50 overlap on a one-thread context" do
    ctx = Py.Context.new(max_workers: 1)
    k = key()
    n = 50

    Py.with_context(ctx, fn ->
      assert Py.call(@mod, :gate, [k, n]) == {:ok, nil}
      tasks = for _ <- 1..n, do: Py.async_call(@mod, :arrive, [k])

      # Every coroutine reaches the gate and waits there at once: with a
      # thread held per waiting coroutine, the second would never start.
      assert eventually(fn -> Py.call!(@mod, :arrived, [k]) == n end, 5_000)
      # The context's one thread still serves ordinary calls meanwhile.
      assert Py.eval("6 * 7") == {:ok, 42}

      assert Py.call(@mod, :release, [k]) == {:ok, nil}
      assert Py.await_many(tasks) == List.duplicate({:ok, n}, n)
    end)

    Py.Context.close(ctx)
  end

  test "a coroutine whose caller's await times out is cancelled (CancelledError inside)" do
    k = key()
    task = Py.async_call(@mod, :sleeper, [k, 60])
    # Once it runs: a coroutine cancelled before it starts never runs at all.
    assert eventually(fn -> Py.call!(@mod, :was_started, [k]) end, 5_000)
    assert {:error, %Py.Error{type: :timeout}} = Py.await(task, 50)
    assert eventually(fn -> Py.call!(@mod, :was_cancelled, [k]) end, 5_000)
  end

  test "a coroutine past its own timeout: option is cancelled and reported as a timeout" do
    # 1 s lets the coroutine start before its deadline even on a loaded
    # machine (one whose deadline passes before it starts is closed unrun).
    k = key()
    task = Py.async_call(@mod, :sleeper, [k, 60], timeout: 1_000)
    assert {:error, %Py.Error{type: :timeout}} = Py.await(task, 5_000)
    assert eventually(fn -> Py.call!(@mod, :was_cancelled, [k]) end, 5_000)

    k = key()
    assert {:error, %Py.Error{type: :timeout}} = Py.call(@mod, :sleeper, [k, 60], timeout: 1_000)
    assert eventually(fn -> Py.call!(@mod, :was_cancelled, [k]) end, 5_000)
  end

  test "a coroutine whose awaiting caller dies is cancelled" do
    for how <- [:await, :call] do
      k = key()
      test = self()

      caller =
        spawn(fn ->
          case how do
            :await ->
              task = Py.async_call(@mod, :sleeper, [k, 60])
              send(test, :started)
              Py.await(task, :infinity)

            :call ->
              send(test, :started)
              Py.call(@mod, :sleeper, [k, 60], timeout: :infinity)
          end
        end)

      assert_receive :started, 5_000
      # Let the coroutine start on the loop before the caller dies.
      assert eventually(fn -> Py.call!(@mod, :was_started, [k]) end, 5_000)
      Process.exit(caller, :kill)

      assert eventually(fn -> Py.call!(@mod, :was_cancelled, [k]) end, 5_000),
             "#{how}: not cancelled"
    end
  end

  describe "await erlang.async_call(...) from coroutines" do
    setup do
      test = self()
      :ok = Py.register_function("async_test_double", fn x -> x * 2 end)
      :ok = Py.register_function("async_test_fail", fn _ -> raise ArgumentError, "nope" end)

      # Answers only when the test says so: the coroutines wait meanwhile.
      :ok =
        Py.register_function("async_test_gate", fn i ->
          send(test, {:gate, i, self()})

          receive do
            :open -> i
          end
        end)

      on_exit(fn ->
        for name <- ["async_test_double", "async_test_fail", "async_test_gate"],
            do: Py.unregister_function(name)
      end)

      :ok =
        Py.exec("""
        import erlang, asyncio
        async def via_beam(x):
            return await erlang.async_call("async_test_double", x)
        async def fails():
            try:
                await erlang.async_call("async_test_fail", 1)
            except erlang.Error as e:
                return ("caught", e.kind)
        async def unknown():
            try:
                await erlang.async_call("async_test_no_such_function")
            except erlang.UnknownFunction:
                return "unknown"
        async def gated(i):
            return await erlang.async_call("async_test_gate", i)
        """)

      :ok
    end

    test "the result converts back; errors raise erlang.Error" do
      assert Py.call(:__main__, :via_beam, [21]) == {:ok, 42}
      assert Py.call(:__main__, :fails) == {:ok, {"caught", "error"}}
      assert Py.call(:__main__, :unknown) == {:ok, "unknown"}
    end

    test "coroutines waiting for the BEAM hold neither the loop nor a context thread" do
      n = 10
      tasks = for i <- 1..n, do: Py.async_call(:__main__, :gated, [i])

      # All n callbacks are running at once on the BEAM side: every coroutine
      # reached its await while the others waited.
      callers = for _ <- 1..n, do: assert_receive({:gate, _i, pid}, 10_000) && pid
      # Meanwhile the loop runs other coroutines.
      assert Py.call(:__main__, :via_beam, [1]) == {:ok, 2}

      Enum.each(callers, &send(&1, :open))
      assert Py.await_many(tasks, 10_000) == Enum.map(1..n, &{:ok, &1})
    end
  end

  test "bad input" do
    task = Py.async_call(@mod, :add, [1, 1])

    other = Task.async(fn -> catch_error(Py.await(task)) end) |> Task.await()
    assert %ArgumentError{message: "invalid task for Py.await/2" <> _} = other
    assert Py.await(task) == {:ok, 2}

    assert_raise ArgumentError, fn -> Py.await(:not_a_task) end
    assert_raise ArgumentError, fn -> Py.await_many(:nope) end
    assert_raise ArgumentError, fn -> Py.await(task, -1) end

    assert_raise ArgumentError, ~r/unknown option/, fn ->
      Py.async_call(@mod, :add, [1, 1], batch: 3)
    end

    assert {:error, %Py.Error{type: "ModuleNotFoundError"}} =
             Py.async_call(:no_such_mod_x, :f) |> Py.await()
  end

  test "streams and coroutines in a dedicated main-interpreter context" do
    assert Py.StreamAsyncHelpers.check(:main) == Py.StreamAsyncHelpers.expected()
  end

  describe "on the other CPythons" do
    @describetag timeout: 300_000

    for {version, var} <- [
          {"3.12", "PYBRIDGE_TEST_PY312"},
          {"3.14", "PYBRIDGE_TEST_PY314"},
          {"3.14t", "PYBRIDGE_TEST_PY314T"}
        ] do
      test "streams and coroutines on Python #{version}, in sub-interpreters too" do
        python = python!(unquote(var))

        peer = Py.TestHelpers.start_python_peer(python)
        modes = if unquote(version) == "3.14t", do: [:main], else: [:main, :subinterpreter]

        for mode <- modes do
          assert {mode, :peer.call(peer, Py.StreamAsyncHelpers, :check, [mode], 120_000)} ==
                   {mode, Py.StreamAsyncHelpers.expected()}
        end
      end
    end
  end
end
