# Redis-backed SharedDict (issue 14): put/get ops/s from 1 and 64 BEAM
# processes beside `redis-benchmark -t get,set -c 64` (no pipelining) on the
# same server, in the same run. The server is started here (a free loopback
# port, a temp dir) and stopped at the end.
#
# Part of `make bench` (bench/run.exs requires this file). Run alone, it
# measures this section only and replaces it in bench/RESULTS.md:
#
#     MIX_ENV=bench mix run bench/redis.exs

defmodule Bench.Redis do
  @moduledoc false
  alias Bench.Harness, as: H
  alias Py.SharedDict, as: SD

  @title "Redis backend (issue 14)"
  @seconds 3
  @requests 200_000

  def title, do: @title

  def section(row) do
    IO.puts("\n== #{@title}")

    unless Code.ensure_loaded?(Py.Test.RedisServer) do
      Code.require_file("../test/support/redis_server.ex", __DIR__)
    end

    # No persistence: the same server redis-benchmark measures.
    server = Py.Test.RedisServer.start(["--appendonly", "no"])

    try do
      rows = measure(server, row)
      Enum.each(rows, &IO.puts("  #{&1.name}: #{&1.value} (#{&1.floor_name}: #{&1.floor})"))
      {@title, rows}
    after
      Py.Test.RedisServer.stop(server)
    end
  end

  defp measure(server, row) do
    base = redis_benchmark(server)
    pool = 16
    sd = SD.new!(backend: {:redis, server.url}, name: "bench", prefix: "bench", pool_size: pool)
    :ok = SD.put(sd, "key", %{"n" => 1})
    # Warm: the scripts loaded, the pool's connections made.
    H.throughput(fn -> SD.put(sd, "key", 1) end, 64, 300)

    ours =
      for {op, fun} <- [
            {"set", fn -> :ok = SD.put(sd, "key", 1) end},
            {"get", fn -> 1 = SD.get(sd, "key") end}
          ],
          procs <- [1, 64] do
        {op, procs, H.throughput(fun, procs, @seconds * 1000)}
      end

    SD.destroy(sd)
    base_after = redis_benchmark(server)

    for {op, procs, ops} <- ours do
      floor = min(base[op], base_after[op])
      target = if procs == 64, do: "≥ ½ redis-benchmark", else: "(1 caller: latency-bound)"

      row.(
        "#{if op == "set", do: "put", else: "get"} of a small value, #{procs} BEAM process#{if procs > 1, do: "es"} (pool_size: #{pool})",
        "#{round(ops)} ops/s",
        target,
        "redis-benchmark -t #{op} -c 64, before/after: #{round(base[op])}/#{round(base_after[op])} req/s",
        H.ratio(floor, ops),
        procs == 1 or ops * 2 >= floor
      )
    end
  end

  # requests/s of redis-benchmark's GET and SET, 64 clients, no pipelining.
  defp redis_benchmark(server) do
    {out, 0} =
      System.cmd("redis-benchmark", [
        "-p",
        Integer.to_string(server.port),
        "-t",
        "get,set",
        "-c",
        "64",
        "-n",
        Integer.to_string(@requests),
        "-q"
      ])

    for line <- String.split(out, ["\n", "\r"], trim: true),
        [_, op, rps] <- [Regex.run(~r/^(SET|GET): ([\d.]+) requests per second/, line)],
        into: %{} do
      {String.downcase(op), String.to_float(rps)}
    end
  end

  def main do
    row = fn name, value, target, floor_name, floor, ok? ->
      %{name: name, value: value, target: target, floor_name: floor_name, floor: floor, ok?: ok?}
    end

    {title, rows} = section(row)
    m = H.machine()
    {load, _} = System.cmd("cat", ["/proc/loadavg"])

    table =
      "| benchmark | result | target | floor (same run) | floor ÷ result | met |\n|---|---|---|---|---|---|\n" <>
        Enum.map_join(rows, "\n", fn r ->
          "| #{r.name} | #{r.value} | #{r.target} | #{r.floor_name} | #{r.floor} | #{if r.ok?, do: "yes", else: "**no**"} |"
        end) <> "\n"

    text =
      "## #{title}\n\n" <>
        "Measured on its own (`mix run bench/redis.exs`) on #{m.date}: #{m.cpu}, " <>
        "#{m.cores} schedulers online, OTP #{m.otp}, Elixir #{m.elixir}; load average " <>
        "#{load |> String.split() |> Enum.take(3) |> Enum.join(" ")} at the end (other builds " <>
        "and tests shared the 2 cores, and redis-server, redis-benchmark and the BEAM share them " <>
        "too). A local redis-server on loopback, no persistence; every operation is one round " <>
        "trip (a GET, or one EVALSHA for a put), run on a dirty IO scheduler.\n\n" <> table

    H.write_section(title, text)
  end
end

unless Code.ensure_loaded?(Bench.Harness) do
  Code.require_file("harness.exs", __DIR__)
end

unless Process.get(:pybridge_bench_all), do: Bench.Redis.main()
