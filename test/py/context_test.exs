defmodule Py.ContextTest do
  # Pools are only read here; bindings live in each test's own process, and
  # tests that count bindings or watch a context's statistics use a dedicated
  # context of their own, so the module can run concurrently with others.
  use ExUnit.Case, async: true

  import Py.TestHelpers

  @info_keys [
    :pool,
    :index,
    :mode,
    :bound_processes,
    :calls_total,
    :errors_total,
    :cancelled_total,
    :in_flight,
    :queue_length,
    :busy_us,
    :compiles_total,
    :namespaces,
    :workers,
    :idle_workers,
    :max_queue,
    :overloaded_total
  ]

  describe "pools" do
    test "the default pool has the configured number of contexts" do
      expected = Application.get_env(:pybridge, :num_contexts, System.schedulers_online())
      assert Py.Context.num_contexts() == expected
      assert Py.Context.num_contexts(:default) == expected
      contexts = Py.Context.contexts(:default)
      assert length(contexts) == expected
      assert Enum.map(contexts, & &1.index) == Enum.to_list(1..expected)
      assert Enum.all?(contexts, &match?(%Py.Context{pool: :default}, &1))
      assert Py.Context.contexts() == contexts
    end

    test "pool_started?/1 and pools/0" do
      assert Py.Context.pool_started?(:default)
      refute Py.Context.pool_started?(:no_such_pool)
      assert [:default | _] = Py.Context.pools()
    end

    test "extra pools from config are started" do
      for {pool, spec} <- Application.get_env(:pybridge, :pools, []) do
        size = if is_integer(spec), do: spec, else: Keyword.fetch!(spec, :size)
        assert Py.Context.pool_started?(pool)
        assert Py.Context.num_contexts(pool) == size
        ctx = Py.context(pool, size)
        assert Py.eval(ctx, "1 + 1") == {:ok, 2}
        assert %Py.Context{pool: ^pool} = Py.context(pool)
      end
    end

    test "contexts are distinct executors" do
      for ctx <- Py.Context.contexts(:default) do
        assert Py.eval(ctx, "40 + 2") == {:ok, 42}
      end
    end
  end

  describe "Py.context/0,1,2" do
    test "context(n) is 1-based and context(pool, n) names the pool" do
      n = Py.Context.num_contexts()
      assert %Py.Context{pool: :default, index: 1} = Py.context(1)
      assert %Py.Context{pool: :default, index: ^n} = Py.context(n)
      assert Py.context(:default, 1) == Py.context(1)
    end

    test "out of range index and unknown pool raise ArgumentError" do
      n = Py.Context.num_contexts()
      in_range = "expected an index in 1..#{n} (pool :default has #{n} contexts)"

      assert_raise ArgumentError,
                   "invalid context index for Py.context/2: #{in_range}, got: 0",
                   fn -> Py.context(0) end

      assert_raise ArgumentError,
                   "invalid context index for Py.context/2: #{in_range}, got: #{n + 1}",
                   fn -> Py.context(n + 1) end

      assert_raise ArgumentError,
                   "invalid context index for Py.context/2: #{in_range}, got: -1",
                   fn -> Py.context(:default, -1) end

      unknown =
        "invalid context pool: expected one of the started pools [:default, :io], got: :nope"

      assert_raise ArgumentError, unknown, fn -> Py.context(:nope, 1) end
      assert_raise ArgumentError, unknown, fn -> Py.context(:nope) end

      assert_raise ArgumentError, unknown, fn ->
        Py.Context.contexts(:nope)
      end

      assert_raise ArgumentError, unknown, fn ->
        Py.Context.num_contexts(:nope)
      end

      assert_raise ArgumentError, fn -> Py.context("1") end
      assert_raise ArgumentError, fn -> Py.context(:default, "1") end
    end

    test "routing is sticky per process" do
      ctx = Py.context()
      assert Enum.all?(1..100, fn _ -> Py.context() == ctx end)
      assert Py.context(:default) == ctx

      :ok = Py.exec("routed_state = 7")
      assert Py.eval("routed_state") == {:ok, 7}
      assert Py.eval(ctx, "routed_state") == {:ok, 7}
    end

    test "routing spreads processes over the pool" do
      n = Py.Context.num_contexts()

      indices =
        1..200
        |> Enum.map(fn _ -> Task.async(fn -> {Py.context().index, Py.context().index} end) end)
        |> Enum.map(&Task.await/1)

      assert Enum.all?(indices, fn {a, b} -> a == b end)
      used = indices |> Enum.map(&elem(&1, 0)) |> Enum.uniq()
      assert Enum.all?(used, &(&1 in 1..n))
      if n > 1, do: assert(length(used) > 1)
    end
  end

  describe "binding" do
    test "bind routes the process's calls to the context until unbind" do
      n = Py.Context.num_contexts()
      target = Py.context(n)
      assert Py.Context.bound() == nil
      assert Py.Context.bind(target) == :ok
      assert Py.Context.bound() == target
      assert Py.context() == target

      :ok = Py.exec("bound_state = 'here'")
      assert Py.eval(target, "bound_state") == {:ok, "here"}

      assert Py.Context.unbind() == :ok
      assert Py.Context.bound() == nil
      assert Py.context().pool == :default
      # unbinding twice is fine
      assert Py.Context.unbind() == :ok
    end

    test "bind rejects non-contexts" do
      assert_raise ArgumentError, ~r/Py.Context/, fn -> Py.Context.bind(:default) end
    end

    test "bound_processes counts live bound processes" do
      ctx = Py.Context.new()
      assert Py.Context.info(ctx).bound_processes == 0

      :ok = Py.Context.bind(ctx)
      assert Py.Context.info(ctx).bound_processes == 1
      # binding again to the same context is not counted twice
      :ok = Py.Context.bind(ctx)
      assert Py.Context.info(ctx).bound_processes == 1

      parent = self()

      binder =
        spawn(fn ->
          :ok = Py.Context.bind(ctx)
          send(parent, :bound)
          receive do: (:stop -> :ok)
        end)

      assert_receive :bound, 5_000
      assert Py.Context.info(ctx).bound_processes == 2

      # rebinding to another context moves the count
      second = Py.Context.new()
      :ok = Py.Context.bind(second)
      assert Py.Context.info(ctx).bound_processes == 1
      assert Py.Context.info(second).bound_processes == 1

      :ok = Py.Context.unbind()
      assert Py.Context.info(second).bound_processes == 0

      send(binder, :stop)
      assert eventually(fn -> Py.Context.info(ctx).bound_processes == 0 end)
    end

    test "dead binders are cleaned up, however they die" do
      ctx = Py.Context.new()
      parent = self()

      binders =
        for _ <- 1..3 do
          spawn(fn ->
            :ok = Py.Context.bind(ctx)
            send(parent, {:bound, self()})

            receive do
              :crash -> exit(:boom)
              :stop -> :ok
            end
          end)
        end

      for pid <- binders, do: assert_receive({:bound, ^pid}, 5_000)
      assert Py.Context.info(ctx).bound_processes == 3

      [killed, crashed, normal] = binders
      Process.exit(killed, :kill)
      assert eventually(fn -> Py.Context.info(ctx).bound_processes == 2 end)
      send(crashed, :crash)
      assert eventually(fn -> Py.Context.info(ctx).bound_processes == 1 end)
      send(normal, :stop)
      assert eventually(fn -> Py.Context.info(ctx).bound_processes == 0 end)
    end

    test "with_context/2 binds for the duration of the function" do
      ctx = Py.context(1)

      result =
        Py.with_context(ctx, fn ->
          assert Py.Context.bound() == ctx
          :ok = Py.exec("scoped = sum(range(10))")
          Py.eval("scoped")
        end)

      assert result == {:ok, 45}
      assert Py.Context.bound() == nil
      assert Py.eval(ctx, "scoped") == {:ok, 45}
    end

    test "with_context/1 binds the routed context" do
      routed = Py.context()
      assert Py.with_context(fn -> Py.Context.bound() end) == routed
      assert Py.Context.bound() == nil
    end

    test "with_context restores the previous binding, even on raise, throw and exit" do
      first = Py.Context.new()
      second = Py.Context.new()
      :ok = Py.Context.bind(first)

      assert_raise RuntimeError, "inside", fn ->
        Py.with_context(second, fn ->
          assert Py.context() == second
          raise "inside"
        end)
      end

      assert Py.Context.bound() == first
      assert catch_throw(Py.with_context(second, fn -> throw(:out) end)) == :out
      assert Py.Context.bound() == first
      assert catch_exit(Py.with_context(second, fn -> exit(:out) end)) == :out
      assert Py.Context.bound() == first

      nested =
        Py.with_context(second, fn ->
          inner = Py.with_context(first, fn -> Py.context() end)
          {inner, Py.context()}
        end)

      assert nested == {first, second}
      assert Py.Context.bound() == first
      assert Py.Context.info(second).bound_processes == 0
      assert Py.Context.info(first).bound_processes == 1

      :ok = Py.Context.unbind()

      assert_raise RuntimeError, fn -> Py.with_context(second, fn -> raise "again" end) end
      assert Py.Context.bound() == nil
      assert Py.Context.info(second).bound_processes == 0
    end

    test "with_context validates its arguments" do
      assert_raise ArgumentError, fn -> Py.with_context(:nope, fn -> :ok end) end
      assert_raise FunctionClauseError, fn -> Py.with_context(fn _ -> :ok end) end
    end
  end

  describe "dedicated contexts" do
    test "new/1 gives a working context of its own" do
      ctx = Py.Context.new(max_workers: 2)
      assert %Py.Context{pool: :dedicated} = ctx
      assert Py.exec(ctx, "mine = 1") == :ok
      assert Py.eval(ctx, "mine") == {:ok, 1}
      assert Py.Context.info(ctx).pool == :dedicated
      refute ctx in Py.Context.contexts(:default)
    end

    test "new/1 validates its options" do
      assert_raise ArgumentError, ~r/unknown option :bogus/, fn -> Py.Context.new(bogus: 1) end

      assert_raise ArgumentError,
                   "invalid :max_workers option for Py.Context.new/1: expected a positive integer, got: 0",
                   fn -> Py.Context.new(max_workers: 0) end

      assert_raise ArgumentError,
                   "invalid :mode option for Py.Context.new/1: expected :main or :subinterpreter, got: :isolated",
                   fn -> Py.Context.new(mode: :isolated) end

      assert_raise ArgumentError, ~r/keyword list/, fn -> Py.Context.new(%{}) end
    end

    test "is closed when its owner exits" do
      parent = self()

      owner =
        spawn(fn ->
          ctx = Py.Context.new()
          {:ok, 2} = Py.eval(ctx, "1 + 1")
          send(parent, {:ctx, ctx})
          receive do: (:exit -> :ok)
        end)

      assert_receive {:ctx, ctx}, 5_000
      assert Py.eval(ctx, "1 + 1") == {:ok, 2}
      send(owner, :exit)

      assert eventually(fn -> match?({:error, %Py.Error{type: :closed}}, Py.eval(ctx, "1")) end)
      refute ctx in Py.Context.Registry.dedicated()
    end

    test "an owner dying while others are bound to its context" do
      parent = self()

      owner =
        spawn(fn ->
          send(parent, {:ctx, Py.Context.new()})
          receive do: (:exit -> :ok)
        end)

      assert_receive {:ctx, ctx}, 5_000
      :ok = Py.Context.bind(ctx)
      assert Py.eval("1 + 1") == {:ok, 2}
      send(owner, :exit)

      # The bound process gets clear errors, not a hang ...
      assert eventually(fn -> match?({:error, %Py.Error{type: :closed}}, Py.eval("1")) end)
      assert {:error, %Py.Error{type: :closed}} = Py.call(:math, :sqrt, [4], timeout: 1_000)
      # ... and recovers by unbinding.
      :ok = Py.Context.unbind()
      assert Py.eval("1 + 1") == {:ok, 2}
      assert Py.Context.info(ctx).bound_processes == 0
    end

    test "all/0 lists the live contexts: every pool's, then the dedicated ones" do
      ctx = Py.Context.new()
      all = Py.Context.all()
      pooled = Enum.flat_map(Py.Context.pools(), &Py.Context.contexts/1)
      assert Enum.take(all, length(pooled)) == pooled
      assert ctx in all
      assert Enum.all?(all, &match?(%Py.Context{}, &1))
      :ok = Py.Context.close(ctx)
      refute ctx in Py.Context.all()
    end

    test "close/1 closes it early; pool contexts cannot be closed" do
      ctx = Py.Context.new()
      assert ctx in Py.Context.Registry.dedicated()
      assert Py.Context.close(ctx) == :ok
      assert {:error, %Py.Error{type: :closed}} = Py.eval(ctx, "1")
      assert Py.Context.close(ctx) == :ok
      assert_raise ArgumentError, ~r/dedicated/, fn -> Py.Context.close(Py.context(1)) end
    end
  end

  describe "info/1" do
    test "reports exactly the keys listed here" do
      for ctx <- Py.Context.contexts(:default) do
        info = Py.Context.info(ctx)
        assert Enum.sort(Map.keys(info)) == Enum.sort(@info_keys)
        assert info.pool == :default
        assert info.index == ctx.index
        assert info.mode in [:main, :subinterpreter]
        assert info.workers >= 1

        for key <- @info_keys -- [:pool, :index, :mode] do
          assert is_integer(info[key]) and info[key] >= 0, "#{key}: #{inspect(info[key])}"
        end
      end
    end

    test "its doc describes every key it returns" do
      {:docs_v1, _, _, _, _, _, docs} = Code.fetch_docs(Py.Context)

      [doc] = for {{:function, :info, 1}, _, _, %{"en" => doc}, _} <- docs, do: doc

      for key <- Map.keys(Py.Context.info(Py.context(1))) do
        assert doc =~ "`#{inspect(key)}`", "info/1's doc does not describe #{inspect(key)}"
      end
    end

    @tag :tmp_dir
    test "counts calls, errors, namespaces and in-flight calls", %{tmp_dir: dir} do
      ctx = Py.Context.new()
      before = Py.Context.info(ctx)
      assert {:ok, 2} = Py.eval(ctx, "1 + 1")
      assert :ok = Py.exec(ctx, "x = 1")
      assert {:error, _} = Py.eval(ctx, "1 / 0")

      info = Py.Context.info(ctx)
      assert info.calls_total >= before.calls_total + 3
      assert info.errors_total >= before.errors_total + 1
      assert info.namespaces >= 1

      # The call blocks until released: running for at least the 300 ms the
      # test waits once it has seen it blocked.
      latch = Py.HardeningHelpers.latch(dir)
      wait = Py.HardeningHelpers.latch_wait()
      task = Task.async(fn -> Py.eval(ctx, wait, %{latch: elem(latch, 0)}) end)
      assert eventually(fn -> Py.HardeningHelpers.waiting?(latch) end, 30_000)
      assert Py.Context.info(ctx).in_flight == 1
      Process.sleep(300)
      Py.HardeningHelpers.release(latch)
      assert Task.await(task, 30_000) == {:ok, "go"}
      assert eventually(fn -> Py.Context.info(ctx).in_flight == 0 end)
      assert Py.Context.info(ctx).busy_us >= 300_000
    end
  end

  describe "pool configuration" do
    test "is validated" do
      queue = %{max_queue: Py.Limits.default_max_queue(), overload: :error}
      main = Map.merge(%{max_workers: 4, mode: :main}, queue)

      assert [
               {:default, 2, ^main},
               {:io, 3, ^main},
               {:big, 5, %{max_workers: 9, mode: :main, max_queue: 10, overload: :wait}},
               {:iso, 2, %{max_workers: 4, mode: :subinterpreter, max_queue: 10_000}}
             ] =
               Py.Context.Pools.config!(
                 num_contexts: 2,
                 max_workers: 4,
                 pools: [
                   io: 3,
                   big: [size: 5, max_workers: 9, max_queue: 10, overload: :wait],
                   iso: [size: 2, mode: :subinterpreter]
                 ]
               )

      # The global settings apply where a pool sets none.
      assert [{:default, 1, %{max_queue: 20, overload: :wait}}, {:io, 1, %{max_queue: 5}}] =
               Py.Context.Pools.config!(
                 num_contexts: 1,
                 max_queue: 20,
                 overload: :wait,
                 pools: [io: [size: 1, max_queue: 5]]
               )

      iso = Map.merge(%{max_workers: 4, mode: :subinterpreter}, queue)

      assert [{:default, 1, ^iso}, {:io, 1, ^iso}, {:main, 1, ^main}] =
               Py.Context.Pools.config!(
                 num_contexts: 1,
                 max_workers: 4,
                 context_mode: :subinterpreter,
                 pools: [io: 1, main: [size: 1, mode: :main]]
               )

      bad = [
        [num_contexts: 0],
        [num_contexts: :many],
        [max_workers: -1],
        [pools: :io],
        [pools: [io: 0]],
        [pools: [default: 2]],
        [pools: [dedicated: 2]],
        [pools: [io: 2, io: 3]],
        [pools: [io: [size: 2, color: :red]]],
        [pools: [io: [max_workers: 2]]],
        [pools: [io: [size: 2, mode: :isolated]]],
        [context_mode: :threads],
        [pools: [{"io", 2}]],
        [max_queue: 0],
        [overload: :drop],
        [pools: [io: [size: 2, max_queue: -1]]],
        [pools: [io: [size: 2, overload: :later]]]
      ]

      for opts <- bad do
        assert_raise ArgumentError, fn -> Py.Context.Pools.config!(opts) end
      end
    end
  end
end
