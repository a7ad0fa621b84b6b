defmodule Py.ContextProcessTest do
  # The process standing for each context (Py.Context.pid/1), pool routing
  # (Py.Context.register_pool/2,3) and stopping/starting the pools: what the
  # Erlang facade hands out as erlang_python's context pids builds on these.
  use ExUnit.Case, async: false

  describe "pid/1 and from_pid/1" do
    test "every pool context has its own live process, which maps back to it" do
      contexts = Py.Context.contexts(:default) ++ Py.Context.contexts(:io)
      pids = Enum.map(contexts, &Py.Context.pid/1)
      assert Enum.all?(pids, &Process.alive?/1)
      assert length(Enum.uniq(pids)) == length(contexts)

      for ctx <- contexts, do: assert(Py.Context.from_pid(Py.Context.pid(ctx)) == ctx)
      assert Py.Context.from_pid(self()) == nil
    end

    test "a dedicated context's process exits with :shutdown when it is closed" do
      ctx = Py.Context.new()
      pid = Py.Context.pid(ctx)
      assert Py.Context.from_pid(pid) == ctx
      mref = Process.monitor(pid)
      :ok = Py.Context.close(ctx)
      assert_receive {:DOWN, ^mref, :process, ^pid, :shutdown}, 5_000
      assert Py.Context.from_pid(pid) == nil
    end

    test "... and when its owner exits" do
      test = self()

      owner =
        spawn(fn ->
          send(test, {:ctx, Py.Context.new()})
          receive do: (:stop -> :ok)
        end)

      assert_receive {:ctx, ctx}, 5_000
      pid = Py.Context.pid(ctx)
      mref = Process.monitor(pid)
      send(owner, :stop)
      assert_receive {:DOWN, ^mref, :process, ^pid, :shutdown}, 5_000
      assert Py.Context.from_pid(pid) == nil
    end

    test "killing a dedicated context's process does not close it" do
      ctx = Py.Context.new()
      registry = Process.whereis(Py.Context.Registry)
      Process.exit(Py.Context.pid(ctx), :kill)
      assert Py.eval(ctx, "1 + 1") == {:ok, 2}
      assert Process.whereis(Py.Context.Registry) == registry
      :ok = Py.Context.close(ctx)
    end

    test "calls do not go through the process" do
      ctx = Py.context(1)
      pid = Py.Context.pid(ctx)
      true = :erlang.suspend_process(pid)

      try do
        assert Py.eval(ctx, "1 + 1") == {:ok, 2}
      after
        true = :erlang.resume_process(pid)
      end
    end
  end

  describe "register_pool/2,3" do
    setup do
      :ok = Py.exec(Py.context(), "def where():\n    return 'default'\n")
      :ok = Py.exec(Py.context(:io), "def where():\n    return 'io'\n")

      on_exit(fn ->
        Py.Context.unregister_pool(:__main__)
        Py.Context.unregister_pool(:__main__, :where)
      end)
    end

    test "routes a module's routed calls to the pool" do
      assert Py.Context.pool_for(:__main__, :where) == :default
      assert Py.call(:__main__, :where) == {:ok, "default"}

      :ok = Py.Context.register_pool(:io, :__main__)
      assert Py.Context.pool_for(:__main__, :where) == :io
      assert Py.Context.pool_for("__main__", "other") == :io
      assert Py.call(:__main__, :where) == {:ok, "io"}
      assert Py.call("__main__", "where", [], timeout: 5_000) == {:ok, "io"}
      # An explicit context wins.
      assert Py.call(Py.context(), :__main__, :where) == {:ok, "default"}

      :ok = Py.Context.unregister_pool("__main__")
      assert Py.call(:__main__, :where) == {:ok, "default"}
    end

    test "a function's registration takes precedence over its module's" do
      :ok = Py.Context.register_pool(:io, :__main__, :where)
      assert Py.Context.pool_for(:__main__, :where) == :io
      assert Py.Context.pool_for(:__main__, :other) == :default
      assert Py.call(:__main__, :where) == {:ok, "io"}

      :ok = Py.Context.register_pool(:default, :__main__, :where)
      :ok = Py.Context.register_pool(:io, :__main__)
      assert Py.Context.pool_for(:__main__, :where) == :default
      :ok = Py.Context.unregister_pool(:__main__, :where)
      assert Py.Context.pool_for(:__main__, :where) == :io
    end

    test "bad pools and names raise" do
      assert_raise ArgumentError, ~r/^invalid context pool: .*, got: :no_such_pool$/, fn ->
        Py.Context.register_pool(:no_such_pool, :json)
      end

      assert_raise ArgumentError,
                   ~r/^invalid module for Py.Context.register_pool: .*got: 42$/,
                   fn ->
                     Py.Context.register_pool(:io, 42)
                   end

      assert_raise ArgumentError, ~r/^invalid module .*\(it is empty\)/, fn ->
        Py.Context.unregister_pool("")
      end
    end
  end

  test "subinterpreters_supported?/0 follows the Python version" do
    %{version_info: version} = Py.Runtime.info()
    assert Py.Context.subinterpreters_supported?() == version >= {3, 12, 0}
  end

  test "stop_pools/0 and start_pools/1" do
    old = Py.Context.contexts(:default)
    mrefs = Enum.map(old, &Process.monitor(Py.Context.pid(&1)))

    # Running pools stay as they are.
    assert Py.Context.Supervisor.start_pools(num_contexts: 1) == {:ok, old}

    :ok = Py.Context.Supervisor.stop_pools()

    try do
      refute Py.Context.pool_started?(:default)
      for mref <- mrefs, do: assert_receive({:DOWN, ^mref, :process, _, :shutdown}, 5_000)
      assert Py.Context.from_pid(Py.Context.pid(hd(old))) == nil
      assert :ok = Py.Context.Supervisor.stop_pools()

      assert {:ok, [ctx]} = Py.Context.Supervisor.start_pools(num_contexts: 1)
      assert Py.eval(ctx, "1 + 1") == {:ok, 2}

      # Killing a context's process leaves the context and its pool working.
      pools = Process.whereis(Py.Context.Pools)
      Process.exit(Py.Context.pid(ctx), :kill)
      assert Py.eval(ctx, "2 + 2") == {:ok, 4}
      assert Process.whereis(Py.Context.Pools) == pools
      assert Py.call(:math, :sqrt, [4]) == {:ok, 2.0}
      :ok = Py.Context.Supervisor.stop_pools()
    after
      {:ok, new} = Py.Context.Supervisor.start_pools([])
      assert length(new) == length(old)
    end

    assert Py.Context.pool_started?(:io)
  end
end
