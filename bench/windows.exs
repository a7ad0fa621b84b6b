# Throughput over time (issue 9): calls per one-second window, 30 windows in
# a row, for 1, 10 and 1,000 callers each looping `Py.call(:math, :sqrt,
# [2.0])`. A dip (a stretch of slow windows) shows as a minimum well below
# the median; the target is minimum ≥ 0.8 × median.
#
# The one-caller dip (fixed): throughput fell from about 250-300k to a
# steady 30-40k calls/s for seconds at a time whenever the caller's
# scheduler thread and the context's home worker ran on the same core (the
# other core busy): each side spun waiting for the other, taking the very
# core the other needed. A `yes > /dev/null` on one core reproduced it at
# will. Now each side records its CPU (runtime::CpuHint) and neither spins
# when the other shares its core; with `yes` on one core one caller runs a
# steady ~50k calls/s (hand-offs by wake-up instead of spinning), and on a
# quiet machine the minimum window is ~0.9x the median.
#
# Part of `make bench` (bench/run.exs requires this file). Run alone, it
# measures this section only and replaces it in bench/RESULTS.md:
#
#     MIX_ENV=bench mix run bench/windows.exs

defmodule Bench.Windows do
  @moduledoc false

  @title "Throughput over time (issue 9)"
  @windows 30
  @window_ms 1_000
  @callers [1, 10, 1_000]

  def title, do: @title

  def section(row) do
    IO.puts("\n== #{@title}")

    rows =
      for n <- @callers do
        counts = windows(n)
        sorted = Enum.sort(counts)
        median = Enum.at(sorted, div(@windows, 2))
        min = hd(sorted)
        max = List.last(sorted)
        ratio = if median > 0, do: min / median, else: 0.0

        IO.puts(
          "  #{n} caller(s): median #{rate(median)}, min #{rate(min)} " <>
            "(#{Float.round(ratio, 2)}), max #{rate(max)}; windows: #{Enum.join(counts, " ")}"
        )

        # The best window is shown too: a dip that lasts most of the run
        # drags the median down with it.
        row.(
          "#{n} caller(s), `Py.call(:math, :sqrt, [2.0])`: calls/s, min / median (max) of " <>
            "#{@windows} one-second windows",
          "#{rate(min)} / #{rate(median)} (#{rate(max)})",
          "min ≥ 0.8 × median",
          "median window",
          "#{Float.round(ratio, 2)}×",
          ratio >= 0.8
        )
      end

    {@title, rows}
  end

  defp rate(calls), do: "#{Float.round(calls * 1000 / @window_ms / 1000, 1)}k"

  # Calls completed in each of @windows consecutive windows while `n`
  # processes loop; the counts are read by a sampler on a fixed schedule.
  defp windows(n) do
    counter = :counters.new(1, [:write_concurrency])

    callers =
      for _ <- 1..n do
        spawn_link(fn ->
          receive do: (:go -> loop(counter))
        end)
      end

    Enum.each(callers, &send(&1, :go))
    # A second of warm-up (workers started, caches filled).
    Process.sleep(@window_ms)
    t0 = System.monotonic_time(:millisecond)

    {counts, _} =
      Enum.map_reduce(1..@windows, :counters.get(counter, 1), fn i, last ->
        sleep_until(t0 + i * @window_ms)
        now = :counters.get(counter, 1)
        {now - last, now}
      end)

    Enum.each(callers, fn pid ->
      Process.unlink(pid)
      Process.exit(pid, :kill)
    end)

    counts
  end

  defp loop(counter) do
    {:ok, _} = Py.call(:math, :sqrt, [2.0])
    :counters.add(counter, 1, 1)
    loop(counter)
  end

  defp sleep_until(at) do
    wait = at - System.monotonic_time(:millisecond)
    if wait > 0, do: Process.sleep(wait)
  end

  # Standalone: measure this section and put it into bench/RESULTS.md in
  # place of its previous figures.
  def main do
    Bench.Harness.standalone(
      "windows.exs",
      &section/1,
      fn _load ->
        ". Each row: #{@windows} consecutive one-second windows after a second of warm-up; " <>
          "the result is the slowest window, the median window and, in brackets, the fastest."
      end,
      warmup: 100_000
    )
  end
end

unless Code.ensure_loaded?(Bench.Harness), do: Code.require_file("harness.exs", __DIR__)

# bench/run.exs sets this before requiring the file.
unless Process.get(:pybridge_bench_all), do: Bench.Windows.main()
