# SharedDict backends (issue 14): put/get ops/s of the SQLite backend from 1
# and 64 BEAM processes, and its durable writes/s against a plain rusqlite
# loop doing the same commits in the same run; and put/get ops/s of the
# Redis backend from 1 and 64 BEAM processes beside `redis-benchmark -t
# get,set -c 64` (no pipelining) against the same redis-server (started here
# on a free loopback port with a temp dir, stopped at the end), in the same
# run.
#
# Part of `make bench` (bench/run.exs requires this file). Run alone, it
# measures this section only and replaces it in bench/RESULTS.md:
#
#     MIX_ENV=bench mix run bench/backends.exs
#
# `PYBRIDGE_BENCH_DURABLE_ONLY=1` measures the durable-writes row alone and
# only prints it (see `durable_only/0`).
#
# The floor for durable writes is native/pybridge/examples/sqlite_commits.rs
# (built here with `cargo build --release --example sqlite_commits`): one
# `INSERT OR REPLACE` per `BEGIN IMMEDIATE` transaction, WAL,
# `synchronous = FULL`, the same value size, on the same disk. Each figure
# is the median of three rounds (five for durable writes, the two loops
# alternating in chunks of 25 writes within each round).

defmodule Bench.Backends do
  @moduledoc false
  alias Bench.Harness, as: H
  alias Py.SharedDict, as: SD

  @title "SharedDict backends (issue 14)"
  @writes 500
  @value %{"user" => 42, "name" => "someone", "tags" => ["a", "b"]}

  def title, do: @title

  def section(row) do
    IO.puts("\n== #{@title}")
    dir = Path.join([File.cwd!(), "_build", "bench-backends"])
    File.rm_rf!(dir)
    File.mkdir_p!(dir)

    rows = sqlite_ops(row, dir) ++ sqlite_durable(row, dir) ++ redis_ops(row)

    File.rm_rf!(dir)
    Enum.each(rows, &IO.puts("  #{&1.name}: #{&1.value} (#{&1.floor_name}: #{&1.floor})"))
    {@title, rows}
  end

  defp median(list), do: list |> Enum.sort() |> Enum.at(div(length(list), 2))

  # put and get of a small value, 1 and 64 processes (each on its own key),
  # 2 s per round. Every put is durable before it returns; puts from 64
  # processes share commits (group commit).
  defp sqlite_ops(row, dir) do
    {:ok, sd} = SD.new(backend: {:sqlite, Path.join(dir, "ops.db")}, pool_size: 4)
    for i <- 1..64, do: :ok = SD.put(sd, "k#{i}", @value)
    key = fn -> "k#{:erlang.phash2(self(), 64) + 1}" end

    rows =
      for {what, fun} <- [
            {"put", fn -> :ok = SD.put(sd, key.(), @value) end},
            {"get", fn -> %{} = SD.get(sd, key.()) end}
          ],
          procs <- [1, 64] do
        ops = median(for _ <- 1..3, do: H.throughput(fun, procs, 2_000))

        row.(
          "SQLite #{what}, #{procs} process#{if procs > 1, do: "es"} (ops/s)",
          "#{round(ops)}",
          "—",
          "—",
          "—",
          true
        )
      end

    SD.destroy(sd)
    rows
  end

  # @writes puts to new keys, each committed before it returns, against the
  # plain rusqlite loop doing @writes commits on a file of its own; five
  # rounds on fresh files. Within a round the two alternate in chunks of
  # @chunk writes (the plain loop runs as a port told how many to make), so
  # both meet the same load on a shared machine: with whole runs one after
  # the other, the ratio swung between 0.3 and 1.4 at load 6.
  @chunk 25
  defp sqlite_durable(row, dir) do
    exe = build_floor()
    size = byte_size(:erlang.term_to_binary(@value))

    rounds =
      for round <- 1..5 do
        {:ok, sd} = SD.new(backend: {:sqlite, Path.join(dir, "durable-#{round}.db")})

        port =
          Port.open({:spawn_executable, exe}, [
            :binary,
            {:line, 256},
            args: [Path.join(dir, "plain-#{round}.db"), "-", "#{size}"]
          ])

        {ours_us, plain_s} =
          Enum.reduce(0..(div(@writes, @chunk) - 1), {0, 0.0}, fn chunk, {ours, plain} ->
            {ours + durable_chunk(sd, chunk), plain + plain_chunk(port)}
          end)

        Port.close(port)
        SD.destroy(sd)
        {@writes / (ours_us / 1_000_000), @writes / plain_s}
      end

    ours = median(Enum.map(rounds, &elem(&1, 0)))
    plain = median(Enum.map(rounds, &elem(&1, 1)))

    [
      row.(
        "SQLite durable writes/s, 1 process (#{@writes} new keys, each committed before `:ok`)",
        "#{round(ours)}",
        "≥ plain / 1.5",
        "plain rusqlite loop, same commits #{round(plain)}/s",
        H.ratio(plain, ours),
        ours * 1.5 >= plain
      )
    ]
  end

  # µs for @chunk puts of new keys.
  defp durable_chunk(sd, chunk) do
    t0 = System.monotonic_time(:microsecond)

    for i <- (chunk * @chunk + 1)..((chunk + 1) * @chunk),
        do: :ok = SD.put(sd, "k#{i}", @value)

    System.monotonic_time(:microsecond) - t0
  end

  # Seconds the plain loop took for its next @chunk commits.
  defp plain_chunk(port) do
    Port.command(port, "#{@chunk}\n")

    receive do
      {^port, {:data, {:eol, line}}} -> line |> Float.parse() |> elem(0)
    after
      60_000 -> raise "the plain rusqlite loop did not answer"
    end
  end

  # put and get of the same small value through a Redis-backed dict, 1 and
  # 64 processes (each on its own key), against redis-benchmark's SET and GET
  # with 64 clients, no pipelining, on the same server; redis-benchmark runs
  # before and after ours and the higher of its two figures is the floor (the host makes its own figure swing, 22k to 100k on one day).
  defp redis_ops(row) do
    unless Code.ensure_loaded?(Py.Test.RedisServer) do
      Code.require_file("../test/support/redis_server.ex", __DIR__)
    end

    # No persistence: the server redis-benchmark measures as it comes.
    server = Py.Test.RedisServer.start(["--appendonly", "no"])

    try do
      before = redis_benchmark(server)
      pool = 16
      sd = SD.new!(backend: {:redis, server.url}, name: "bench", pool_size: pool)
      for i <- 1..64, do: :ok = SD.put(sd, "k#{i}", @value)
      key = fn -> "k#{:erlang.phash2(self(), 64) + 1}" end
      # Warm: scripts loaded, the pool's connections made.
      H.throughput(fn -> SD.put(sd, key.(), @value) end, 64, 300)

      ours =
        for {what, op, fun} <- [
              {"put", "set", fn -> :ok = SD.put(sd, key.(), @value) end},
              {"get", "get", fn -> %{} = SD.get(sd, key.()) end}
            ],
            procs <- [1, 64] do
          {what, op, procs, median(for _ <- 1..3, do: H.throughput(fun, procs, 2_000))}
        end

      SD.destroy(sd)
      later = redis_benchmark(server)

      for {what, op, procs, ops} <- ours do
        floor = max(before[op], later[op])

        row.(
          "Redis #{what}, #{procs} process#{if procs > 1, do: "es"} (ops/s; pool_size: #{pool})",
          "#{round(ops)}",
          if(procs == 64, do: "≥ redis-benchmark / 2", else: "— (one caller: a round trip each)"),
          "redis-benchmark -t #{op} -c 64, no pipelining, before/after #{round(before[op])}/#{round(later[op])} req/s",
          H.ratio(floor, ops),
          procs == 1 or ops * 2 >= floor
        )
      end
    after
      Py.Test.RedisServer.stop(server)
    end
  end

  # Requests/s of redis-benchmark's SET and GET, 64 clients, no pipelining.
  defp redis_benchmark(server) do
    {out, 0} =
      System.cmd("redis-benchmark", [
        "-p",
        Integer.to_string(server.port),
        "-t",
        "set,get",
        "-c",
        "64",
        "-n",
        "200000",
        "-q"
      ])

    for line <- String.split(out, ["\n", "\r"], trim: true),
        [_, op, rps] <- [Regex.run(~r/(SET|GET): ([\d.]+) requests per second/, line)],
        into: %{} do
      {String.downcase(op), String.to_float(rps)}
    end
  end

  defp build_floor do
    native = Path.join(File.cwd!(), "native")

    {out, status} =
      System.cmd("cargo", ["build", "--release", "--example", "sqlite_commits"],
        cd: native,
        stderr_to_stdout: true
      )

    if status != 0, do: raise("cannot build the rusqlite floor:\n" <> out)
    Path.join([native, "target", "release", "examples", "sqlite_commits"])
  end

  # The durable-writes row alone, printed with the load average, for A/B
  # runs (bench/RESULTS.md is left alone):
  #
  #     PYBRIDGE_BENCH_DURABLE_ONLY=1 MIX_ENV=bench mix run bench/backends.exs
  def durable_only do
    dir = Path.join([File.cwd!(), "_build", "bench-durable"])
    File.rm_rf!(dir)
    File.mkdir_p!(dir)
    row = fn name, value, _target, floor, ratio, met -> {name, value, floor, ratio, met} end
    [{_, ours, floor, _ratio, met}] = sqlite_durable(row, dir)
    File.rm_rf!(dir)
    load = "/proc/loadavg" |> File.read!() |> String.split() |> Enum.take(3) |> Enum.join(" ")
    [plain] = Regex.run(~r/(\d+)\/s/, floor, capture: :all_but_first)
    ratio = Float.round(String.to_integer(plain) / String.to_integer(ours), 2)
    IO.puts("durable writes/s #{ours} (#{floor}): #{ratio}×, met: #{met}; load #{load}")
  end

  # Standalone: measure this section and put it into bench/RESULTS.md in
  # place of its previous figures.
  def main do
    H.standalone("backends.exs", &section/1, fn load ->
      "; load average (1, 5, 15 min) at the end #{load} (the machine's disk and its " <>
        "neighbours make runs differ: redis-benchmark's own figure moves between runs). " <>
        "SQLite files on " <>
        "the machine's disk (`_build/bench-backends`), every write fsynced (WAL, " <>
        "`synchronous = FULL`); concurrent writers share commits (group commit). " <>
        "Checked with strace: the backend and the plain loop each fsync the WAL once " <>
        "per write and write one 4 KB WAL frame per write, with the same fcntl locking " <>
        "(the backend wrote two frames before its versions were reserved in blocks); " <>
        "the rest of the difference is the BEAM's round trip through a dirty IO " <>
        "scheduler. The two loops alternate in chunks of 25 writes, so both meet the " <>
        "same load." <>
        " Redis: a local redis-server on loopback without persistence, sharing the 2 cores " <>
        "with the BEAM and redis-benchmark; concurrent gets share round trips (the keys " <>
        "queued while a read is on its way go in one call of the read script), and so do " <>
        "concurrent puts (one EVALSHA carries the puts queued while the previous one was on " <>
        "its way); a get or put that queues waits for a message, not on a dirty scheduler; " <>
        "a lone one goes at once through a dirty IO scheduler; nothing subscribes, so " <>
        "a put does not wait for its event to come back from the dict's stream (with a " <>
        "subscriber on its node it would)."
    end)
  end
end

unless Code.ensure_loaded?(Bench.Harness), do: Code.require_file("harness.exs", __DIR__)

# bench/run.exs sets this before requiring the file.
cond do
  Process.get(:pybridge_bench_all) -> :ok
  System.get_env("PYBRIDGE_BENCH_DURABLE_ONLY") -> Bench.Backends.durable_only()
  true -> Bench.Backends.main()
end
