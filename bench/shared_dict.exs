# SharedDict (issue 11): BEAM and Python access against ETS and a locked
# Python dict, memory per entry, and the expiry of 1,000,000 keys.
#
# Part of `make bench` (bench/run.exs requires this file). Run alone, it
# measures this section only and replaces it in bench/RESULTS.md:
#
#     MIX_ENV=bench mix run bench/shared_dict.exs

defmodule Bench.SharedDict do
  @moduledoc false
  alias Bench.Harness, as: H
  alias Py.SharedDict, as: SD

  @title "SharedDict (issue 11)"
  @entries 1_000_000

  def title, do: @title

  def section(row) do
    IO.puts("\n== #{@title}")

    rows = beam_single(row) ++ beam_parallel(row) ++ python(row) ++ [memory(row)] ++ expiry(row)

    Enum.each(rows, &IO.puts("  #{&1.name}: #{&1.value} (#{&1.floor_name}: #{&1.floor})"))
    {@title, rows}
  end

  defp ets do
    :ets.new(:bench_sd, [:set, :public, read_concurrency: true, write_concurrency: true])
  end

  # One process: get and put of a small value, interleaved with the same
  # operation on ETS; the median round of three.
  defp beam_single(row) do
    sd = SD.new!()
    t = ets()
    SD.put(sd, "key", %{"n" => 1})
    :ets.insert(t, {"key", %{"n" => 1}})

    get = median_pair(fn -> SD.get(sd, "key") end, fn -> :ets.lookup(t, "key") end)
    put = median_pair(fn -> SD.put(sd, "key", 1) end, fn -> :ets.insert(t, {"key", 1}) end)

    for {what, {s, e}} <- [{"get", get}, {"put", put}] do
      ratio = s.median_ns / max(e.median_ns, 1)

      row.(
        "BEAM #{what} of a small value, 1 process, median (p99 #{H.fmt_ns(s.p99_ns)})",
        H.fmt_ns(s.median_ns),
        "≤ 1.5× ETS",
        "ETS `:set` #{what} #{H.fmt_ns(e.median_ns)}",
        H.ratio(s.median_ns, e.median_ns),
        ratio <= 1.5
      )
    end
  end

  defp median_pair(a, b) do
    for(_ <- 1..3, do: H.sample_pair(a, b, samples: 20_000))
    |> Enum.sort_by(fn {s, _} -> s.median_ns end)
    |> Enum.at(1)
  end

  # 64 processes, each on its own key: operations per second for 1 s.
  defp beam_parallel(row) do
    sd = SD.new!()
    t = ets()

    for i <- 1..64 do
      SD.put(sd, "k#{i}", i)
      :ets.insert(t, {"k#{i}", i})
    end

    key = fn -> "k#{:erlang.phash2(self(), 64) + 1}" end

    cases = [
      {"get", fn -> SD.get(sd, key.()) end, fn -> :ets.lookup(t, key.()) end},
      {"put", fn -> SD.put(sd, key.(), 1) end, fn -> :ets.insert(t, {key.(), 1}) end}
    ]

    for {what, s_fun, e_fun} <- cases do
      # Three alternating rounds; the one with the median ratio.
      {s, e} =
        for(_ <- 1..3, do: {H.throughput(s_fun, 64, 1_000), H.throughput(e_fun, 64, 1_000)})
        |> Enum.sort_by(fn {s, e} -> e / s end)
        |> Enum.at(1)

      row.(
        "BEAM #{what}, 64 processes, operations/s",
        "#{round(s)}",
        "≥ ETS / 1.5",
        "ETS #{round(e)}/s",
        H.ratio(e, s),
        s * 1.5 >= e
      )
    end
  end

  # Python: SharedDict get and set against a dict behind a threading.Lock,
  # both with timeit in the embedded interpreter.
  defp python(row) do
    sd = SD.new!(name: "bench_py")
    SD.put(sd, "key", 1)

    setup = """
    import threading
    from erlang import SharedDict
    sd = SharedDict('bench_py')
    d = {'key': 1}
    lock = threading.Lock()
    def dget():
        with lock:
            return d['key']
    def dset():
        with lock:
            d['key'] = 1
    """

    timeit = fn stmt ->
      {:ok, s} =
        Py.eval(
          "__import__('timeit').timeit(stmt, setup, number=100000) / 100000",
          %{stmt: stmt, setup: setup}
        )

      s * 1.0e9
    end

    rows =
      for {what, stmt, floor_stmt} <- [
            {"get", "sd['key']", "dget()"},
            {"set", "sd['key'] = 1", "dset()"}
          ] do
        # Three alternating rounds; the one with the median ratio.
        {s, f} =
          for(_ <- 1..3, do: {timeit.(stmt), timeit.(floor_stmt)})
          |> Enum.sort_by(fn {s, f} -> s / f end)
          |> Enum.at(1)

        row.(
          "Python `SharedDict` #{what}, mean",
          H.fmt_ns(s),
          "≤ 3× locked dict",
          "dict behind `threading.Lock` #{H.fmt_ns(f)}",
          H.ratio(s, f),
          s <= 3 * f
        )
      end

    SD.destroy(sd)
    rows ++ livedict(row)
  end

  # The same TTL'd set and get on LiveDict 2.0 (pure Python, installed with
  # pip into _build/bench-livedict and put on the embedded sys.path).
  defp livedict(row) do
    case livedict_dir() do
      {:ok, dir} ->
        sd = SD.new!(name: "bench_livedict")

        setup = """
        import sys
        if #{inspect(dir)} not in sys.path:
            sys.path.insert(0, #{inspect(dir)})
        from livedict import LiveDict
        from erlang import SharedDict, LiveDict as Face
        ld = LiveDict(work_mode='sync', backend='memory')
        sd = SharedDict('bench_livedict')
        face = Face(work_mode='sync', name='bench_livedict')
        """

        timeit = fn stmt ->
          {:ok, s} =
            Py.eval(
              "__import__('timeit').timeit(stmt, setup, number=20000) / 20000",
              %{stmt: stmt, setup: setup}
            )

          s * 1.0e9
        end

        {s, f, l} =
          for(
            _ <- 1..3,
            do:
              {timeit.("sd.set('key', 1, ttl=60); sd.get('key')"),
               timeit.("face.set('key', 1, ttl=60); face.get('key')"),
               timeit.("ld.set('key', 1, ttl=60); ld.get('key')")}
          )
          |> Enum.sort_by(fn {s, _f, l} -> l / s end)
          |> Enum.at(1)

        SD.destroy(sd)

        for {what, t} <- [{"`SharedDict`", s}, {"`erlang.LiveDict` (sync)", f}] do
          row.(
            "Python TTL'd set + get, #{what}, mean",
            H.fmt_ns(t),
            "≥ 5× faster than LiveDict",
            "LiveDict #{livedict_version(dir)} (memory, sync) #{H.fmt_ns(l)}",
            "LiveDict takes #{H.ratio(l, t)}",
            l >= 5 * t
          )
        end

      {:error, why} ->
        [
          row.(
            "Python TTL'd set + get against LiveDict",
            "not run: #{why}",
            "≥ 5×",
            "—",
            "—",
            false
          )
        ]
    end
  end

  defp livedict_dir do
    dir = Path.expand("../_build/bench-livedict", __DIR__)

    if File.exists?(Path.join(dir, "livedict")) do
      {:ok, dir}
    else
      {:ok, python} = Py.eval("__import__('sys').executable")

      case System.cmd(python, ["-m", "pip", "install", "-q", "--target", dir, "livedict==2.0.2"],
             stderr_to_stdout: true
           ) do
        {_, 0} -> {:ok, dir}
        {out, _} -> {:error, "could not install livedict: #{String.slice(out, -200..-1)}"}
      end
    end
  end

  defp livedict_version(dir) do
    case Path.wildcard(Path.join(dir, "livedict-*.dist-info")) do
      [info | _] -> info |> Path.basename(".dist-info") |> String.trim_leading("livedict-")
      [] -> "2.0"
    end
  end

  # 1,000,000 entries ("k<i>" => i): the growth of the OS process's RSS
  # while a process fills the dict and exits (read 2.5 s later, once the
  # native allocator has unmapped the buffers it kept), against what ETS reports for
  # the same data in a table (its RSS growth is given too, but ETS fills
  # carriers the VM had already mapped, so it understates).
  defp memory(row) do
    sd_bytes = rss_growth(fn -> SD.new!(name: "bench_mem") end, &SD.put(&1, "k#{&2}", &2))

    ets_rss =
      rss_growth(
        fn -> :ets.new(:bench_mem, [:set, :public]) end,
        &:ets.insert(&1, {"k#{&2}", &2})
      )

    t = :ets.new(:bench_mem_words, [:set, :public])
    fill(&:ets.insert(t, {"k#{&1}", &1}))
    ets_bytes = :ets.info(t, :memory) * :erlang.system_info(:wordsize)
    :ets.delete(t)
    {:ok, sd} = SD.lookup("bench_mem")
    SD.destroy(sd)

    row.(
      "Memory per entry, 1,000,000 small entries (RSS growth)",
      "#{round(sd_bytes / @entries)} B",
      "≤ 1.5× ETS",
      "ETS table #{round(ets_bytes / @entries)} B (RSS growth #{round(ets_rss / @entries)} B)",
      H.ratio(sd_bytes, ets_bytes),
      sd_bytes <= 1.5 * ets_bytes
    )
  end

  defp rss_growth(make, put) do
    :erlang.garbage_collect()
    before = H.rss_bytes()
    parent = self()

    {pid, ref} =
      spawn_monitor(fn ->
        store = make.()
        fill(&put.(store, &1))
        # An ETS table dies with its owner: hand it over and wait.
        if is_reference(store), do: :ets.give_away(store, parent, nil)
        send(parent, {:filled, self()})
        receive do: (:done -> :ok)
      end)

    receive do: ({:filled, ^pid} -> :ok)
    send(pid, :done)
    receive do: ({:DOWN, ^ref, _, _, _} -> :ok)
    # The native allocator keeps freed big buffers (the hash table's old
    # arrays) mapped for reuse and unmaps them after 1 s unused.
    Process.sleep(2_500)
    grown = H.rss_bytes() - before

    receive do
      {:"ETS-TRANSFER", t, _, _} -> :ets.delete(t)
    after
      0 -> :ok
    end

    grown
  end

  defp fill(fun), do: Enum.each(1..@entries, fun)

  # 1,000,000 keys that all expire in the same millisecond (each put's TTL
  # aims at one instant 10 s after the fill began), the sweeper's worst
  # case; meanwhile one process keeps timing get and put of another key of
  # the same dict. Reported: how long after that instant every key was
  # reclaimed, and the p99 of those operations.
  defp expiry(row) do
    sd = SD.new!(name: "bench_expiry")
    SD.put(sd, "probe", 1)
    at = System.monotonic_time(:millisecond) + 10_000

    fill(fn i ->
      SD.put(sd, "k#{i}", i, ttl: max(at - System.monotonic_time(:millisecond), 1))
    end)

    # On a loaded machine the fill can take longer than 10 s: then the
    # keys put after `at` expired as they were put, and the clock starts at
    # the fill's end instead (counting the fill would time the fill).
    filled = System.monotonic_time(:millisecond)
    start = max(at, filled)
    parent = self()

    prober =
      spawn_link(fn ->
        send(parent, {:latencies, probe(sd, [])})
      end)

    wait_reclaimed(sd)
    reclaimed_after = System.monotonic_time(:millisecond) - start
    send(prober, :stop)
    times = receive(do: ({:latencies, t} -> t))
    s = H.summarize(times)
    SD.destroy(sd)

    [
      row.(
        "Expiry of 1,000,000 keys at the same instant: all reclaimed after" <>
          if(filled > at,
            do: " the fill's end (it overran the instant by #{filled - at} ms)",
            else: ""
          ),
        "#{reclaimed_after} ms",
        "≤ 1 s",
        "—",
        "—",
        reclaimed_after <= 1_000
      ),
      row.(
        "… get/put p99 on the same dict from the fill's end to the last reclaim (max #{H.fmt_ns(s.max_ns)}, #{s.samples} samples)",
        H.fmt_ns(s.p99_ns),
        "≤ 5 ms",
        "median #{H.fmt_ns(s.median_ns)}",
        H.ratio(s.p99_ns, s.median_ns),
        s.p99_ns <= 5_000_000
      )
    ]
  end

  defp probe(sd, acc) do
    receive do
      :stop -> acc
    after
      0 ->
        t0 = System.monotonic_time(:nanosecond)
        SD.get(sd, "probe")
        SD.put(sd, "probe", 1)
        probe(sd, [System.monotonic_time(:nanosecond) - t0 | acc])
    end
  end

  # Polled every 10 ms: stats/1 counts the live keys (cheaply now: the
  # expired but unswept ones are counted per millisecond of expiry), but it
  # still takes every shard's lock, so it is not polled in a tight loop.
  defp wait_reclaimed(sd) do
    if SD.stats(sd).expired_total < @entries do
      Process.sleep(10)
      wait_reclaimed(sd)
    end
  end

  # Standalone: measure this section and put it into bench/RESULTS.md in
  # place of its previous figures.
  def main, do: H.standalone("shared_dict.exs", &section/1, fn _ -> ". " end)
end

unless Code.ensure_loaded?(Bench.Harness), do: Code.require_file("harness.exs", __DIR__)

# bench/run.exs sets this before requiring the file.
unless Process.get(:pybridge_bench_all), do: Bench.SharedDict.main()
