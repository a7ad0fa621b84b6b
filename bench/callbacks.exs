# Python → BEAM callbacks (issue 12): what `erlang.call` costs.
#
# Part of `make bench` (bench/run.exs requires this file). Run alone, it
# measures this section only and replaces it in bench/RESULTS.md:
#
#     MIX_ENV=bench mix run bench/callbacks.exs

defmodule Bench.Callbacks do
  @moduledoc false
  alias Bench.Harness, as: H

  @title "Callbacks (issue 12)"
  # Callbacks per timed Python loop.
  @loop 2_000

  def title, do: @title

  def section(row) do
    IO.puts("\n== #{@title}")
    setup()
    rows = [one_callback(row), in_a_loop(row), nested(row), from_a_thread(row)]
    Enum.each(rows, &IO.puts("  #{&1.name}: #{&1.value} (#{&1.floor_name}: #{&1.floor})"))
    {@title, rows}
  end

  defp setup do
    :ok = Py.register_function(:bench_noop, fn -> nil end)
    :ok = Py.register_function(:bench_inc, fn x -> x + 1 end)

    :ok =
      Py.register_function(:bench_nested, fn x ->
        {:ok, y} = Py.call(:__main__, :bench_plain, [x])
        y
      end)

    :ok =
      Py.exec("""
      import erlang, threading, time
      def bench_plain(x=0):
          return x
      def bench_one():
          return erlang.bench_noop()
      def bench_loop(n):
          inc = erlang.bench_inc
          t0 = time.perf_counter_ns()
          x = 0
          for _ in range(n):
              x = inc(x)
          assert x == n
          return (time.perf_counter_ns() - t0) / n
      def bench_plain_loop(n):
          t0 = time.perf_counter_ns()
          x = 0
          for _ in range(n):
              x = bench_plain(x) + 1
          return (time.perf_counter_ns() - t0) / n
      def bench_nested_loop(n):
          nested = erlang.bench_nested
          t0 = time.perf_counter_ns()
          for i in range(n):
              nested(i)
          return (time.perf_counter_ns() - t0) / n
      def bench_thread_loop(n):
          out = []
          def run():
              out.append(bench_loop(n))
          t = threading.Thread(target=run)
          t.start(); t.join()
          return out[0]
      """)
  end

  # A Py.call whose Python function makes one callback, against a plain
  # Py.call of a Python function, interleaved; the median round of three.
  defp one_callback(row) do
    plain = fn -> {:ok, _} = Py.call(:__main__, :bench_plain, []) end
    with_cb = fn -> {:ok, _} = Py.call(:__main__, :bench_one, []) end

    {p, c} =
      for(_ <- 1..3, do: H.sample_pair(plain, with_cb, samples: 10_000))
      |> Enum.sort_by(fn {p, c} -> c.median_ns - p.median_ns end)
      |> Enum.at(1)

    added = c.median_ns - p.median_ns

    row.(
      "Python → BEAM → Python round trip: a `Py.call` making one `erlang.call`, added to the median",
      H.fmt_ns(added),
      "≤ 5 µs",
      "plain `Py.call` #{H.fmt_ns(p.median_ns)} / with the callback #{H.fmt_ns(c.median_ns)}",
      H.ratio(c.median_ns, p.median_ns),
      added <= 5_000
    )
  end

  # Back-to-back callbacks from one Python loop (timed in Python), against
  # a plain Python function call in the same loop.
  defp in_a_loop(row) do
    runs =
      for _ <- 1..5 do
        {:ok, cb} = Py.call(:__main__, :bench_loop, [@loop])
        {:ok, plain} = Py.call(:__main__, :bench_plain_loop, [@loop])
        {cb, plain}
      end

    {cb, plain} = runs |> Enum.sort() |> Enum.at(2)

    row.(
      "`erlang.call` back to back in one Python loop (during a call), mean per callback",
      H.fmt_ns(cb),
      "≤ 5 µs",
      "a Python function call in the same loop #{H.fmt_ns(plain)}",
      H.ratio(cb, max(plain, 1)),
      cb <= 5_000
    )
  end

  # Python → BEAM → Python → back: the callback makes a Py.call into the
  # same context (served by another thread of it).
  defp nested(row) do
    runs =
      for _ <- 1..5 do
        {:ok, ns} = Py.call(:__main__, :bench_nested_loop, [@loop])
        ns
      end

    ns = runs |> Enum.sort() |> Enum.at(2)
    {:ok, cb} = Py.call(:__main__, :bench_loop, [@loop])

    row.(
      "reentrant: `erlang.call` whose BEAM function makes a `Py.call` into the same context, mean",
      H.fmt_ns(ns),
      "—",
      "plain `erlang.call` #{H.fmt_ns(cb)}",
      H.ratio(ns, cb),
      true
    )
  end

  # A thread Python started: the callback runs in the pool (a task each).
  defp from_a_thread(row) do
    runs =
      for _ <- 1..5 do
        {:ok, ns} = Py.call(:__main__, :bench_thread_loop, [@loop])
        ns
      end

    ns = runs |> Enum.sort() |> Enum.at(2)
    {:ok, cb} = Py.call(:__main__, :bench_loop, [@loop])

    row.(
      "`erlang.call` from a `threading.Thread` (callback pool), mean",
      H.fmt_ns(ns),
      "—",
      "during a call #{H.fmt_ns(cb)}",
      H.ratio(ns, cb),
      true
    )
  end

  # Standalone: measure this section and put it into bench/RESULTS.md in
  # place of its previous figures.
  def main do
    H.standalone(
      "callbacks.exs",
      &section/1,
      fn load ->
        ". Load average #{load} at the end of the run: the machine was shared with other " <>
          "builds and tests, so these figures are noisy (rerun on a quiet machine before " <>
          "trusting them)."
      end,
      warmup: 100_000
    )
  end
end

unless Code.ensure_loaded?(Bench.Harness), do: Code.require_file("harness.exs", __DIR__)

# bench/run.exs sets this before requiring the file.
unless Process.get(:pybridge_bench_all), do: Bench.Callbacks.main()
