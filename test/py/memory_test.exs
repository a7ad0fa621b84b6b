defmodule Py.MemoryTest do
  # The collector and tracemalloc are global to the interpreter: not async.
  use ExUnit.Case, async: false

  setup do
    on_exit(fn ->
      Py.tracemalloc_stop()
      Py.exec("import gc; gc.enable()")
    end)
  end

  test "memory_stats/1 reports the collector, objects and RSS" do
    assert {:ok, stats} = Py.memory_stats()
    assert %{gc_count: {_, _, _}, gc_threshold: {_, _, _}, objects: objects, rss: rss} = stats
    assert [%{collections: _, collected: _, uncollectable: _} | _] = stats.gc_stats
    assert length(stats.gc_stats) >= 3
    assert objects > 1000
    assert is_integer(rss) and rss > 1_000_000
    refute Map.has_key?(stats, :traced_memory_current)
    refute Map.has_key?(stats, :tracemalloc_top)

    # More tracked objects after keeping 50,000 lists alive.
    :ok = Py.exec("keep = [[i] for i in range(50_000)]")
    {:ok, %{objects: more}} = Py.memory_stats()
    # (other tests' garbage may go meanwhile: a margin)
    assert more >= objects + 40_000
    :ok = Py.exec("del keep")
  end

  test "tracemalloc: traced memory and the top lines while it traces" do
    assert Py.tracemalloc_start(5) == :ok
    # Starting again is fine.
    assert Py.tracemalloc_start() == :ok
    :ok = Py.exec("big = [str(i) * 10 for i in range(20_000)]")

    {:ok, stats} = Py.memory_stats(top: 3)
    assert stats.traced_memory_current > 200_000
    assert stats.traced_memory_peak >= stats.traced_memory_current
    assert [%{file: file, line: line, size: size, count: count} | _] = stats.tracemalloc_top
    assert length(stats.tracemalloc_top) <= 3
    assert is_binary(file) and is_integer(line) and size > 200_000 and count > 0

    assert Py.tracemalloc_stop() == :ok
    {:ok, stats} = Py.memory_stats()
    refute Map.has_key?(stats, :traced_memory_current)
    assert Py.tracemalloc_stop() == :ok
    :ok = Py.exec("del big")
  end

  test "gc/1 collects unreachable cycles and counts them" do
    :ok =
      Py.exec("""
      import gc
      gc.disable()
      class Cycle: pass
      for _ in range(100):
          c = Cycle()
          c.me = c
      del c
      """)

    assert {:ok, found} = Py.gc()
    # Each cycle is an instance and its __dict__.
    assert found >= 100
    assert {:ok, 0} = Py.gc(0)

    assert_raise ArgumentError, fn -> Py.gc(3) end
    assert_raise ArgumentError, fn -> Py.tracemalloc_start(0) end
    assert_raise ArgumentError, fn -> Py.memory_stats(top: 0) end
    assert_raise ArgumentError, fn -> Py.memory_stats(context: :default) end
  end

  test "the Erlang facade: py:memory_stats/0, py:gc/0,1, py:tracemalloc_*" do
    assert :py.tracemalloc_start(2) == :ok

    assert {:ok, %{gc_count: {_, _, _}, traced_memory_peak: _, tracemalloc_top: _}} =
             :py.memory_stats()

    assert :py.tracemalloc_stop() == :ok
    assert :py.tracemalloc_start() == :ok
    assert :py.tracemalloc_stop() == :ok
    assert {:ok, n} = :py.gc()
    assert is_integer(n)
    assert {:ok, _} = :py.gc(1)
  end

  test "memory_stats/1 reads a given context's interpreter" do
    ctx = Py.Context.new()
    assert {:ok, %{objects: _}} = Py.memory_stats(context: ctx)
    Py.Context.close(ctx)
  end
end
