defmodule Py.AsyncTest do
  use ExUnit.Case, async: true

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
  """

  setup_all do
    :ok =
      Py.exec("""
      import sys, types
      if "pybridge_async_test" not in sys.modules:
          _m = types.ModuleType("pybridge_async_test")
          exec(#{inspect(@module_source)}, _m.__dict__)
          sys.modules["pybridge_async_test"] = _m
      """)

    :ok
  end

  @mod :pybridge_async_test

  defp key, do: "k#{System.unique_integer([:positive])}"

  defp eventually(fun, tries \\ 500) do
    cond do
      fun.() -> true
      tries == 0 -> false
      true -> Process.sleep(10) && eventually(fun, tries - 1)
    end
  end

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

  test "waiting coroutines hold no context thread: 50 overlap on a one-thread context" do
    ctx = Py.Context.new(max_workers: 1)
    k = key()
    n = 50

    Py.with_context(ctx, fn ->
      assert Py.call(@mod, :gate, [k, n]) == {:ok, nil}
      tasks = for _ <- 1..n, do: Py.async_call(@mod, :arrive, [k])

      # Every coroutine reaches the gate and waits there at once: with a
      # thread held per waiting coroutine, the second would never start.
      assert eventually(fn -> Py.call!(@mod, :arrived, [k]) == n end)
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
    assert eventually(fn -> Py.call!(@mod, :was_started, [k]) end)
    assert {:error, %Py.Error{type: :timeout}} = Py.await(task, 50)
    assert eventually(fn -> Py.call!(@mod, :was_cancelled, [k]) end)
  end

  test "a coroutine past its own timeout: option is cancelled and reported as a timeout" do
    # 1 s lets the coroutine start before its deadline even on a loaded
    # machine (one whose deadline passes before it starts is closed unrun).
    k = key()
    task = Py.async_call(@mod, :sleeper, [k, 60], timeout: 1_000)
    assert {:error, %Py.Error{type: :timeout}} = Py.await(task, 5_000)
    assert eventually(fn -> Py.call!(@mod, :was_cancelled, [k]) end)

    k = key()
    assert {:error, %Py.Error{type: :timeout}} = Py.call(@mod, :sleeper, [k, 60], timeout: 1_000)
    assert eventually(fn -> Py.call!(@mod, :was_cancelled, [k]) end)
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
      assert eventually(fn -> Py.call!(@mod, :was_started, [k]) end)
      Process.exit(caller, :kill)
      assert eventually(fn -> Py.call!(@mod, :was_cancelled, [k]) end), "#{how}: not cancelled"
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
        python = System.get_env(unquote(var))

        unless python && File.exists?(python) do
          flunk(
            "#{unquote(var)} is not set to a Python executable: run the suite with `make test`"
          )
        end

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
