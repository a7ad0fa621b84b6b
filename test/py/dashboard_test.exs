defmodule Py.DashboardTest do
  use ExUnit.Case, async: false

  import Py.TestHelpers

  doctest Py.Dashboard

  test "contexts: every context with its counters and a busy percentage" do
    ctx = Py.Context.new()
    # Busy for 300 ms of the time since the context started.
    :ok = Py.exec(ctx, "import time; time.sleep(0.3)")
    {:error, _} = Py.eval(ctx, "1 / 0")

    snapshot = Py.Dashboard.snapshot()
    assert snapshot.node == node()
    assert is_integer(snapshot.taken_at)

    pools = snapshot.contexts |> Enum.map(&{&1.pool, &1.index})
    assert pools == Enum.map(Py.Context.all(), &{&1.pool, &1.index})

    row = Enum.find(snapshot.contexts, &(&1.pool == :dedicated and &1.index == ctx.index))

    assert %{mode: :main, calls_total: 2, errors_total: 1, in_flight: 0, queue_length: 0} = row
    assert row.namespaces == 1
    assert row.busy_us >= 300_000
    assert row.busy_percent > 0.0

    # The next snapshot measures from the previous one: no call ran since.
    again = Py.Dashboard.snapshot()
    row = Enum.find(again.contexts, &(&1.pool == :dedicated and &1.index == ctx.index))
    assert row.busy_percent == 0.0

    Py.Context.close(ctx)

    refute Enum.any?(
             Py.Dashboard.snapshot().contexts,
             &(&1.pool == :dedicated and &1.index == ctx.index)
           )
  end

  test "bound processes are counted per context" do
    ctx = Py.Context.new()
    parent = self()

    binder =
      spawn(fn ->
        Py.Context.bind(ctx)
        send(parent, :bound)
        Process.sleep(:infinity)
      end)

    assert_receive :bound

    row =
      Enum.find(
        Py.Dashboard.snapshot().contexts,
        &(&1.pool == :dedicated and &1.index == ctx.index)
      )

    assert row.bound_processes == 1
    Process.exit(binder, :kill)
    Py.Context.close(ctx)
  end

  test "coalescing: BEAM groups and named Python groups" do
    group = {:dashboard_test, make_ref()}
    {:ok, 1} = Py.Coalesce.run(group, :k, fn -> {:ok, 1} end)
    {:error, _} = Py.Coalesce.run(group, :boom, fn -> raise "boom" end)

    name = "dashboard_test_#{System.unique_integer([:positive])}"

    :ok =
      Py.exec("""
      import erlang
      sc = erlang.SharedCall(name=#{inspect(name)})
      sc.call("k", lambda: 1)
      sc.call("k", lambda: 2)
      """)

    groups = Py.Dashboard.snapshot().coalescing

    assert %{side: :beam, misses: 2, hits: 0, errors: 1, active: 0, hit_rate: 0.0} =
             beam = Enum.find(groups, &(&1.group == group))

    assert beam.label == inspect(group)

    assert %{side: :python, label: ^name, misses: 2, hits: 0, errors: 0, active: 0} =
             Enum.find(groups, &(&1.group == name and &1.side == :python))
  end

  test "shared dicts: counters, backend and recent expiries, never values" do
    name = "dashboard_test_#{System.unique_integer([:positive])}"
    {:ok, sd} = Py.SharedDict.new(name: name)
    long_key = String.duplicate("é", 60)
    :ok = Py.SharedDict.put(sd, "a", "SECRET-VALUE-1")
    :ok = Py.SharedDict.put(sd, "b", "SECRET-VALUE-2")
    :ok = Py.SharedDict.delete(sd, "b")
    :ok = Py.SharedDict.put(sd, long_key, "SECRET-VALUE-3", ttl: 1)
    unnamed = Py.SharedDict.new!()

    row =
      assert_eventually(
        fn ->
          row = Enum.find(Py.Dashboard.snapshot().shared_dicts, &(&1.id == sd.id))
          row.expired_total == 1 && row
        end,
        5_000
      )

    assert %{name: ^name, label: ^name, backend: :memory, size: 1, puts: 3, deletes: 1} = row
    assert [%{key: key, truncated: true, at: at}] = row.recent_expiries
    # 80 bytes of 2-byte characters: 40 of them.
    assert key == String.duplicate("é", 40)
    assert_in_delta at, System.system_time(:millisecond), 10_000

    snapshot = Py.Dashboard.snapshot()
    refute inspect(snapshot, limit: :infinity) =~ "SECRET-VALUE"

    assert %{name: nil, label: "#" <> _} =
             Enum.find(snapshot.shared_dicts, &(&1.id == unnamed.id))

    Py.SharedDict.destroy(sd)
    refute Enum.any?(Py.Dashboard.snapshot().shared_dicts, &(&1.id == sd.id))
  end

  @tag :redis
  test "a dict whose backend cannot be reached is listed with the reason" do
    server = Py.Test.RedisServer.start()
    on_exit(fn -> Py.Test.RedisServer.stop(server) end)
    name = "dashboard_redis_#{System.unique_integer([:positive])}"
    sd = Py.SharedDict.new!(name: name, backend: {:redis, server.url})
    :ok = Py.SharedDict.put(sd, "k", 1)
    Py.Test.RedisServer.kill(server)

    row = Enum.find(Py.Dashboard.snapshot().shared_dicts, &(&1.id == sd.id))
    assert %{name: ^name, backend: :redis, size: 0, error: error} = row
    assert error =~ "redis"
    # The other dicts are still listed, with their counters.
    other = Py.SharedDict.new!()
    assert %{error: nil} = Enum.find(Py.Dashboard.snapshot().shared_dicts, &(&1.id == other.id))
  end

  test "keys are cut at a character boundary, at most 80 bytes" do
    assert Py.Dashboard.cut("short") == {"short", false}
    exact = String.duplicate("k", 80)
    assert Py.Dashboard.cut(exact) == {exact, false}
    assert Py.Dashboard.cut(exact <> "x") == {exact, true}
    # 79 ASCII bytes, then a 3-byte character across the 80-byte limit.
    {cut, true} = Py.Dashboard.cut(String.duplicate("k", 79) <> "€" <> "tail")
    assert cut == String.duplicate("k", 79)
  end

  test "a dict made by Python is listed" do
    name = "dashboard_py_#{System.unique_integer([:positive])}"

    :ok =
      Py.exec("import erlang; d = erlang.SharedDict(#{inspect(name)}, create=True); d['x'] = 1")

    assert Enum.any?(Py.Dashboard.snapshot().shared_dicts, &(&1.name == name))
  end

  test "an unreachable node is an error, not a crash" do
    assert {:error, %Py.Error{type: :noconnection}} = Py.Dashboard.fetch(:nobody@nowhere)

    assert_raise Py.Error, ~r/not reachable/, fn ->
      Py.Dashboard.snapshot(:nobody@nowhere)
    end

    assert_raise ArgumentError, fn -> Py.Dashboard.fetch("node") end
  end
end
