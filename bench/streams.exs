# Streams and asyncio (issue 12): what a `Py.stream/4` moves per second,
# what a `Py.async_call/4` + `Py.await/2` costs, and how long 1,000
# concurrent `asyncio.sleep(0.05)` take.
#
# Part of `make bench` (bench/run.exs requires this file). Run alone, it
# measures this section only and replaces it in bench/RESULTS.md:
#
#     MIX_ENV=bench mix run bench/streams.exs

defmodule Bench.Streams do
  @moduledoc false
  alias Bench.Harness, as: H

  @title "Streams and asyncio (issue 12)"
  @items 1_000_000

  def title, do: @title

  def section(row) do
    IO.puts("\n== #{@title}")

    Py.exec!("""
    import asyncio
    async def bench_noop():
        return 1
    """)

    rows = [stream(row), async_call(row), sleeps(row), latency_under_sleeps(row)]
    Enum.each(rows, &IO.puts("  #{&1.name}: #{&1.value} (#{&1.floor_name}: #{&1.floor})"))
    {@title, rows}
  end

  # 1,000,000 small ints through Py.stream/4 against the same range as one
  # list (Py.call(:builtins, :list, ...)); the median of three rounds each.
  defp stream(row) do
    batch = 10_000

    streamed = fn ->
      seconds(fn ->
        @items = Py.stream(:builtins, :range, [@items], batch: batch) |> Enum.count()
      end)
    end

    listed = fn ->
      seconds(fn ->
        {:ok, list} = Py.call(:builtins, :list, [Py.call!(:builtins, :range, [@items])])
        @items = length(list)
      end)
    end

    _warm = {streamed.(), listed.()}
    {s, l} = median_pair(for _ <- 1..3, do: {streamed.(), listed.()})
    per_s = @items / s

    default_batch =
      median(
        for _ <- 1..3,
            do: seconds(fn -> Py.stream(:builtins, :range, [@items]) |> Enum.count() end)
      )

    row.(
      "`Py.stream(:builtins, :range, [1_000_000], batch: 10_000)`, consumed with `Enum.count/1`: items/s",
      "#{fmt_rate(per_s)} (#{fmt_s(s)}; default batch 1,000: #{fmt_rate(@items / default_batch)})",
      "≥ 2,000,000/s",
      "`Py.call(:builtins, :list, [range])` of the same range: #{fmt_rate(@items / l)} (#{fmt_s(l)})",
      H.ratio(s, l),
      per_s >= 2_000_000
    )
  end

  # Py.async_call + Py.await of a coroutine that returns at once, against a
  # plain Py.call of the same module's function (which, being async,
  # is awaited on the loop too) and of a plain function.
  defp async_call(row) do
    trivial = fn -> {:ok, 1} = Py.await(Py.async_call(:__main__, :bench_noop)) end
    plain = fn -> {:ok, _} = Py.call(:math, :sqrt, [2.0]) end

    {a, p} =
      for(_ <- 1..3, do: H.sample_pair(trivial, plain, warmup: 1_000, samples: 5_000))
      |> Enum.sort_by(fn {a, _} -> a.median_ns end)
      |> Enum.at(1)

    row.(
      "`Py.async_call/4` + `Py.await/2` of a trivial coroutine: median (p99)",
      "#{H.fmt_ns(a.median_ns)} (#{H.fmt_ns(a.p99_ns)})",
      "≤ 20 µs",
      "plain `Py.call(:math, :sqrt, [2.0])` #{H.fmt_ns(p.median_ns)}",
      H.ratio(a.median_ns, p.median_ns),
      a.median_ns <= 20_000
    )
  end

  # 1,000 concurrent asyncio.sleep(0.05) from one process; best of three.
  defp sleeps(row) do
    run = fn ->
      seconds(fn ->
        tasks = for _ <- 1..1_000, do: Py.async_call(:asyncio, :sleep, [0.05])
        [{:ok, nil}] = tasks |> Py.await_many(30_000) |> Enum.uniq()
      end)
    end

    best = Enum.min(for _ <- 1..3, do: run.())

    row.(
      "1,000 concurrent `asyncio.sleep(0.05)` (`Py.async_call` + `Py.await_many`): wall time, best of 3",
      fmt_s(best),
      "< 0.5 s",
      "one sleep",
      "0.05 s",
      best < 0.5
    )
  end

  # Ordinary calls while 1,000 coroutines sleep: their median against the
  # same calls on a quiet loop.
  defp latency_under_sleeps(row) do
    call = fn -> {:ok, _} = Py.call(:math, :sqrt, [2.0]) end
    quiet = H.sample(call, warmup: 1_000, samples: 5_000)

    tasks = for _ <- 1..1_000, do: Py.async_call(:asyncio, :sleep, [1.0])
    busy = H.sample(call, warmup: 100, samples: 5_000)
    _ = Py.await_many(tasks, 30_000)

    row.(
      "`Py.call(:math, :sqrt, [2.0])` while 1,000 coroutines sleep: median (p99)",
      "#{H.fmt_ns(busy.median_ns)} (#{H.fmt_ns(busy.p99_ns)})",
      "unchanged",
      "same call, no coroutines: #{H.fmt_ns(quiet.median_ns)} (#{H.fmt_ns(quiet.p99_ns)})",
      H.ratio(busy.median_ns, quiet.median_ns),
      busy.median_ns <= 2 * quiet.median_ns
    )
  end

  defp seconds(fun) do
    t0 = System.monotonic_time(:microsecond)
    fun.()
    (System.monotonic_time(:microsecond) - t0) / 1.0e6
  end

  defp median(xs), do: xs |> Enum.sort() |> Enum.at(div(length(xs), 2))

  defp median_pair(pairs) do
    pairs |> Enum.sort_by(&elem(&1, 0)) |> Enum.at(div(length(pairs), 2))
  end

  defp fmt_rate(per_s) when per_s >= 1.0e6, do: "#{Float.round(per_s / 1.0e6, 2)} M/s"
  defp fmt_rate(per_s), do: "#{round(per_s / 1000)} k/s"
  defp fmt_s(s) when s < 1, do: "#{Float.round(s * 1000, 1)} ms"
  defp fmt_s(s), do: "#{Float.round(s, 2)} s"

  # Standalone: measure this section and put it into bench/RESULTS.md in
  # place of its previous figures.
  def main do
    H.standalone(
      "streams.exs",
      &section/1,
      fn load ->
        "; load average at the end #{load}. #{System.get_env("BENCH_NOTE", "")}"
      end,
      warmup: 100_000,
      load_fields: 5
    )
  end
end

unless Code.ensure_loaded?(Bench.Harness), do: Code.require_file("harness.exs", __DIR__)

# bench/run.exs sets this before requiring the file.
unless Process.get(:pybridge_bench_all), do: Bench.Streams.main()
