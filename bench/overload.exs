# Overload protection (issue 12): 100,000 processes call one context at
# once, while its one worker is held (so the crowd meets a full queue for
# certain), then the worker is let go. With `max_queue: 1000` the context
# never holds more than 1,000 calls; every caller must get an answer (a
# result, or `:overloaded`), and the native side's memory must stay flat:
# what grows is the callers' own processes, not a queue of their calls.
# Measured for `overload: :error` (refused at once) and `overload: :wait`
# (each caller waits for room), and, as the floor, the same crowd against
# a queue large enough to hold them all (`max_queue: 200_000`, what an
# unbounded queue would do).
#
# Part of `make bench` (bench/run.exs requires this file). Run alone, it
# measures this section only and replaces it in bench/RESULTS.md:
#
#     MIX_ENV=bench mix run bench/overload.exs

defmodule Bench.Overload do
  @moduledoc false

  @title "Overload protection (issue 12)"
  @callers 100_000
  @max_queue 1_000
  @sample_ms 20

  def title, do: @title

  def section(row) do
    IO.puts("\n== #{@title}")
    floor = run("unbounded", max_queue: 200_000, overload: :error)
    refused = run("error", max_queue: @max_queue, overload: :error)
    waited = run("wait", max_queue: @max_queue, overload: :wait)

    memory = fn r ->
      "BEAM #{mb(r.peak_beam - r.base_beam)} (#{div(r.peak_beam - r.base_beam, @callers)} B " <>
        "a caller), native #{mb(r.peak_native - r.base_native)}"
    end

    answered = fn r ->
      "#{r.answered} (#{r.ok} ok, #{r.overloaded} overloaded#{other(r)}), queue ≤ #{r.peak_queue}, " <>
        "#{r.wall_ms} ms"
    end

    flat? = fn r ->
      r.peak_native - r.base_native < (floor.peak_native - floor.base_native) / 10
    end

    rows = [
      row.(
        "#{@callers} callers at once, `max_queue: #{@max_queue}, overload: :error`: answered, " <>
          "peak queue, wall time",
        answered.(refused),
        "every caller answered, queue ≤ #{@max_queue}",
        "`max_queue: 200_000` (unbounded)",
        answered.(floor),
        refused.answered == @callers and refused.peak_queue <= @max_queue
      ),
      row.(
        "… peak memory growth: BEAM (the callers' processes), native (RSS − BEAM carriers: the queue)",
        memory.(refused),
        "native flat: < 1/10 of the unbounded queue's",
        "unbounded",
        memory.(floor),
        flat?.(refused)
      ),
      row.(
        "#{@callers} callers at once, `max_queue: #{@max_queue}, overload: :wait`: answered, " <>
          "peak queue, wall time",
        answered.(waited),
        "every caller answered, queue ≤ #{@max_queue}",
        "unbounded",
        answered.(floor),
        waited.answered == @callers and waited.peak_queue <= @max_queue
      ),
      row.(
        "… peak memory growth: BEAM, native",
        memory.(waited),
        "native flat: < 1/10 of the unbounded queue's",
        "unbounded",
        memory.(floor),
        flat?.(waited)
      )
    ]

    {@title, rows}
  end

  defp other(%{other: other}) when other == %{}, do: ""
  defp other(%{other: other}), do: ", other #{inspect(other)}"

  # A fresh dedicated context made with `opts`, its one worker held in a
  # Python wait; @callers processes each make one trivial call on it, all
  # at once. Once every caller has been queued, refused or sent to wait,
  # the worker is let go and the queue drains. BEAM memory, RSS and the
  # queue are sampled until every caller has answered.
  defp run(label, opts) do
    ctx = Py.Context.new([max_workers: 1] ++ opts)
    {:ok, _} = Py.call(ctx, :math, :sqrt, [2.0])
    event = "bench_overload_#{label}"

    {:ok, nil} =
      Py.eval("setattr(__import__('builtins'), n, __import__('threading').Event())", %{n: event})

    wait = "getattr(__import__('builtins'), n).wait(300)"
    blocker = Task.async(fn -> Py.eval(ctx, wait, %{n: event}, timeout: :infinity) end)
    :ok = until(fn -> Py.Context.info(ctx).in_flight == 1 end)

    :erlang.garbage_collect()
    base_beam = :erlang.memory(:total)
    base_native = rss() - carriers()
    parent = self()
    sampler = spawn_link(fn -> sample(ctx, parent, base_beam, base_native, 0) end)
    t0 = System.monotonic_time(:millisecond)

    for _ <- 1..@callers do
      spawn(fn ->
        answer =
          case Py.call(ctx, :math, :sqrt, [2.0], timeout: 300_000) do
            {:ok, _} -> :ok
            {:error, %Py.Error{type: type}} -> type
          end

        send(parent, {:answer, answer})
      end)
    end

    :ok =
      until(fn ->
        %{queue_length: queued, overloaded_total: refused} = Py.Context.info(ctx)
        queued + refused >= @callers
      end)

    {:ok, nil} = Py.eval("getattr(__import__('builtins'), n).set()", %{n: event})
    counts = collect(%{}, @callers)
    wall_ms = System.monotonic_time(:millisecond) - t0
    {:ok, true} = Task.await(blocker)
    send(sampler, {:stop, self()})

    {peak_beam, peak_native, peak_queue} =
      receive do
        {:peaks, beam, native, queue} -> {beam, native, queue}
      end

    Py.Context.close(ctx)

    result = %{
      answered: counts |> Map.values() |> Enum.sum(),
      ok: Map.get(counts, :ok, 0),
      overloaded: Map.get(counts, :overloaded, 0),
      other: Map.drop(counts, [:ok, :overloaded]),
      wall_ms: wall_ms,
      base_beam: base_beam,
      peak_beam: peak_beam,
      base_native: base_native,
      peak_native: peak_native,
      peak_queue: peak_queue
    }

    IO.puts(
      "  #{label}: #{inspect(Map.take(result, [:answered, :ok, :overloaded, :other, :wall_ms, :peak_queue]))}, " <>
        "BEAM +#{mb(peak_beam - base_beam)}, native +#{mb(peak_native - base_native)}"
    )

    result
  end

  defp until(fun, deadline \\ System.monotonic_time(:millisecond) + 120_000) do
    cond do
      fun.() -> :ok
      System.monotonic_time(:millisecond) > deadline -> :timeout
      true -> Process.sleep(10) && until(fun, deadline)
    end
  end

  defp collect(counts, 0), do: counts

  defp collect(counts, left) do
    receive do
      {:answer, answer} -> collect(Map.update(counts, answer, 1, &(&1 + 1)), left - 1)
    after
      180_000 -> counts
    end
  end

  defp sample(ctx, parent, beam, native, queue) do
    beam = max(beam, :erlang.memory(:total))
    native = max(native, rss() - carriers())
    queue = max(queue, Py.Context.info(ctx).queue_length)

    receive do
      {:stop, ^parent} -> send(parent, {:peaks, beam, native, queue})
    after
      @sample_ms -> sample(ctx, parent, beam, native, queue)
    end
  end

  defp rss do
    case File.read("/proc/self/statm") do
      {:ok, statm} ->
        [_, pages | _] = String.split(statm)
        String.to_integer(pages) * 4096

      _ ->
        0
    end
  end

  # What the BEAM's allocators have mapped, used or not: RSS minus this is
  # what the rest of the OS process (Python, the NIF, queued calls) holds.
  defp carriers do
    {:ok, {_, carriers}} = :instrument.carriers()
    Enum.reduce(carriers, 0, fn carrier, sum -> sum + elem(carrier, 2) end)
  end

  defp mb(bytes), do: "#{Float.round(bytes / 1_048_576, 1)} MB"

  def main do
    Bench.Harness.standalone(
      "overload.exs",
      &section/1,
      fn load ->
        "; load average at start #{load}. One dedicated context (`max_workers: 1`, its worker " <>
          "held until every caller was queued, refused or waiting); every caller is a fresh " <>
          "process making one `math.sqrt` call; memory and the queue are sampled every " <>
          "#{@sample_ms} ms. BEAM is `:erlang.memory(:total)`, mostly the callers' own " <>
          "processes; native is RSS minus what the BEAM's allocators have mapped " <>
          "(`:instrument.carriers/0`): Python, the NIF and the queued calls. It is an " <>
          "estimate (mapped carriers need not be resident): on this shared machine the " <>
          "`:wait` row's native figure was 0.0, 18.9 and 5.5 MB in three runs, the " <>
          "unbounded one's 116, 67.5 and 121 MB."
      end,
      load: :start,
      load_fields: 5,
      column: "floor's figure"
    )
  end
end

unless Code.ensure_loaded?(Bench.Harness), do: Code.require_file("harness.exs", __DIR__)

# bench/run.exs sets this before requiring the file.
unless Process.get(:pybridge_bench_all), do: Bench.Overload.main()
