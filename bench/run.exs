# Runs every benchmark and writes bench/RESULTS.md.
#
#     make bench            (MIX_ENV=bench mix run bench/run.exs)
#
# Each figure is reported next to a floor measured in the same run, as a
# ratio, because absolute timings drift on a shared machine.

Code.require_file("harness.exs", __DIR__)
Process.put(:pybridge_bench_all, true)
Code.require_file("coalesce.exs", __DIR__)
Code.require_file("windows.exs", __DIR__)
Code.require_file("shared_dict.exs", __DIR__)
Code.require_file("callbacks.exs", __DIR__)
Code.require_file("backends.exs", __DIR__)
Code.require_file("overload.exs", __DIR__)
Code.require_file("streams.exs", __DIR__)
alias Bench.Harness, as: H

defmodule Bench.Run do
  alias Bench.Harness, as: H

  defdelegate row(name, value, target, floor_name, floor, ok?), to: Bench.Harness

  def python_timeit(stmt, setup, number) do
    code =
      "__import__('timeit').timeit(#{inspect(stmt)}, #{inspect(setup)}, number=#{number}) / #{number}"

    {:ok, seconds} = Py.eval(code)
    seconds * 1.0e9
  end

  def section(title, fun) do
    IO.puts("\n== #{title}")
    rows = fun.()

    Enum.each(
      rows,
      &IO.puts(
        "  #{&1.name}: #{&1.value} (target #{&1.target}; #{(&1.ok? && "met") || "MISSED"})"
      )
    )

    {title, rows}
  end

  def calls(_msg_floor) do
    section("Call latency (issue 2)", fn ->
      {sqrt, msg_floor} =
        H.sample_rounds(
          fn -> {:ok, _} = Py.call(:math, :sqrt, [2.0]) end,
          &H.message_round_trip/0
        )

      sqrt_py = python_timeit("sqrt(2.0)", "from math import sqrt", 1_000_000)

      {eval, eval_floor} =
        H.sample_rounds(fn -> {:ok, 2} = Py.eval("1+1") end, &H.message_round_trip/0, 5)

      eval_py = python_timeit("eval(c)", "c = compile('1+1', '<b>', 'eval')", 1_000_000)

      [
        row(
          "`Py.call(:math, :sqrt, [2.0])` median (p99 #{H.fmt_ns(sqrt.p99_ns)})",
          H.fmt_ns(sqrt.median_ns),
          "≤ 3 µs",
          "msg round trip #{H.fmt_ns(msg_floor.median_ns)} / timeit #{H.fmt_ns(sqrt_py)}",
          "#{H.ratio(sqrt.median_ns, msg_floor.median_ns)} / #{H.ratio(sqrt.median_ns, sqrt_py)}",
          sqrt.median_ns <= 3_000
        ),
        row(
          "`Py.eval(\"1+1\")` median (p99 #{H.fmt_ns(eval.p99_ns)})",
          H.fmt_ns(eval.median_ns),
          "≤ 5 µs",
          "msg round trip #{H.fmt_ns(eval_floor.median_ns)} / timeit #{H.fmt_ns(eval_py)}",
          "#{H.ratio(eval.median_ns, eval_floor.median_ns)} / #{H.ratio(eval.median_ns, eval_py)}",
          eval.median_ns <= 5_000
        )
      ]
    end)
  end

  def bulk(msg_floor) do
    _ = msg_floor

    section("Bulk conversion (issue 2)", fn ->
      list = Enum.to_list(1..1_000_000)

      ints =
        H.sample(fn -> {:ok, ^list} = Py.call("__main__", :ident, [list]) end,
          warmup: 2,
          samples: 11
        )

      echo =
        spawn(fn ->
          Stream.repeatedly(fn -> receive(do: ({from, x} -> send(from, {:back, x}))) end)
          |> Stream.run()
        end)

      list_floor =
        H.sample(
          fn ->
            send(echo, {self(), list})
            receive(do: ({:back, _} -> :ok))
          end,
          warmup: 2,
          samples: 11
        )

      bin = :crypto.strong_rand_bytes(1_000_000)

      bytes =
        H.sample(fn -> {:ok, ^bin} = Py.call("__main__", :ident, [Py.bytes(bin)]) end,
          warmup: 20,
          samples: 201
        )

      copy_floor = H.sample(fn -> :binary.copy(:binary.copy(bin)) end, warmup: 20, samples: 201)

      [
        row(
          "identity round trip, 1,000,000-integer list (p99 #{H.fmt_ns(ints.p99_ns)})",
          H.fmt_ns(ints.median_ns),
          "≤ 150 ms",
          "same list to a BEAM process and back #{H.fmt_ns(list_floor.median_ns)}",
          H.ratio(ints.median_ns, list_floor.median_ns),
          ints.median_ns <= 150_000_000
        ),
        row(
          "identity round trip, 1 MB bytes (p99 #{H.fmt_ns(bytes.p99_ns)})",
          H.fmt_ns(bytes.median_ns),
          "≤ 1 ms",
          "two 1 MB copies #{H.fmt_ns(copy_floor.median_ns)}",
          H.ratio(bytes.median_ns, copy_floor.median_ns),
          bytes.median_ns <= 1_000_000
        )
      ]
    end)
  end

  def execution(msg_floor) do
    _ = msg_floor

    section("Execution model (issue 2)", fn ->
      # 4 processes burn CPU in Python while a 5th sleeps 1 ms in a loop.
      burners =
        for _ <- 1..4 do
          Task.async(fn ->
            deadline = System.monotonic_time(:millisecond) + 2_000

            Stream.repeatedly(fn -> Py.eval("sum(i * i for i in range(200_000))") end)
            |> Stream.take_while(fn _ -> System.monotonic_time(:millisecond) < deadline end)
            |> Stream.run()
          end)
        end

      lateness =
        for _ <- 1..1_500 do
          t0 = System.monotonic_time(:microsecond)
          Process.sleep(1)
          System.monotonic_time(:microsecond) - t0 - 1_000
        end

      Enum.each(burners, &Task.await(&1, 30_000))
      max_late_us = Enum.max(lateness)

      idle_lateness =
        for _ <- 1..500,
            do:
              (
                t0 = System.monotonic_time(:microsecond)
                Process.sleep(1)
                System.monotonic_time(:microsecond) - t0 - 1_000
              )

      # Five rounds of 200 sleepers; the median round (a single call is at
      # the mercy of one scheduling hiccup on this shared machine).
      rounds =
        for _ <- 1..5 do
          t0 = System.monotonic_time(:microsecond)

          sleepers =
            for _ <- 1..200,
                do:
                  Task.async(fn ->
                    Py.eval("__import__('time').sleep(0.05)", %{}, timeout: 10_000)
                  end)

          Process.sleep(20)
          t1 = System.monotonic_time(:microsecond)
          {:ok, 2} = Py.eval("1+1")
          trivial_us = System.monotonic_time(:microsecond) - t1
          Enum.each(sleepers, &({:ok, nil} = Task.await(&1, 10_000)))
          wall_us = System.monotonic_time(:microsecond) - t0
          # Let the overflow workers of this round park before the next.
          Process.sleep(200)
          {wall_us, trivial_us}
        end

      median = fn list -> list |> Enum.sort() |> Enum.at(div(length(list), 2)) end
      wall_us = median.(Enum.map(rounds, &elem(&1, 0)))
      trivial_us = median.(Enum.map(rounds, &elem(&1, 1)))

      [
        row(
          "max lateness of a 1 ms sleep loop while 4 processes run CPU-bound Python",
          H.fmt_ns(max_late_us * 1_000),
          "≤ 10 ms",
          "same loop on an idle VM (max)",
          H.fmt_ns(Enum.max(idle_lateness) * 1_000),
          max_late_us <= 10_000
        ),
        row(
          "200 concurrent `time.sleep(0.05)`, wall time",
          H.fmt_ns(wall_us * 1_000),
          "< 500 ms",
          "one sleep",
          "50 ms (#{H.ratio(wall_us, 50_000)})",
          wall_us < 500_000
        ),
        row(
          "trivial call issued while those 200 sleep",
          H.fmt_ns(trivial_us * 1_000),
          "< 10 ms",
          "msg round trip",
          H.ratio(trivial_us * 1_000, msg_floor.median_ns),
          trivial_us < 10_000
        )
      ]
    end)
  end

  def contexts(msg_floor) do
    _ = msg_floor

    section("Contexts (issue 3)", fn ->
      routing = H.mean_ns(fn -> Py.context() end, 1_000_000)
      ctx = Py.context()
      # Routed and explicit calls alternate, so both see the same machine.
      {routed, explicit} =
        H.sample_pair(
          fn -> {:ok, _} = Py.call(:math, :sqrt, [2.0]) end,
          fn -> {:ok, _} = Py.call(ctx, :math, :sqrt, [2.0]) end,
          samples: 50_000
        )

      bound =
        Py.with_context(ctx, fn -> H.sample(fn -> {:ok, _} = Py.call(:math, :sqrt, [2.0]) end) end)

      throughput =
        for procs <- [1, 2, 4, 64, 1_000] do
          rates =
            for _ <- 1..3,
                do: H.throughput(fn -> {:ok, _} = Py.call(:math, :sqrt, [2.0]) end, procs, 1_500)

          {procs, rates |> Enum.sort() |> Enum.at(1)}
        end

      env_cycle =
        H.sample(
          fn ->
            {pid, ref} = spawn_monitor(fn -> :ok = Py.exec("x = 1") end)
            receive(do: ({:DOWN, ^ref, :process, ^pid, _} -> :ok))
          end,
          warmup: 200,
          samples: 2_000
        )

      spawn_floor =
        H.sample(
          fn ->
            {pid, ref} = spawn_monitor(fn -> :ok end)
            receive(do: ({:DOWN, ^ref, :process, ^pid, _} -> :ok))
          end,
          warmup: 200,
          samples: 2_000
        )

      :erlang.garbage_collect()
      Process.sleep(200)
      rss0 = H.rss_bytes()

      for _batch <- 1..50 do
        1..200
        |> Enum.map(fn _ -> Task.async(fn -> :ok = Py.exec("blob = b'x' * 1_000_000") end) end)
        |> Enum.each(&Task.await(&1, 30_000))
      end

      Process.sleep(500)
      rss1 = H.rss_bytes()
      grew_mb = (rss1 - rss0) / 1_048_576

      [
        row(
          "routing (`Py.context/0`, the whole cost routing adds to a call), mean",
          H.fmt_ns(routing),
          "≤ 0.3 µs",
          "—",
          "—",
          routing <= 300
        ),
        row(
          "routed vs explicit call (interleaved), and bound call, median",
          "#{H.fmt_ns(routed.median_ns)} / #{H.fmt_ns(explicit.median_ns)} / #{H.fmt_ns(bound.median_ns)}",
          "routed − explicit ≤ 0.3 µs",
          "msg round trip",
          H.ratio(routed.median_ns, msg_floor.median_ns),
          routed.median_ns - explicit.median_ns <= 300
        )
      ] ++
        for {procs, rate} <- throughput do
          row(
            "throughput, #{procs} concurrent caller(s)",
            "#{round(rate)} calls/s",
            if(procs == 1_000, do: "≥ 200,000 calls/s", else: "—"),
            "1 / msg round trip",
            H.ratio(rate, 1.0e9 / msg_floor.median_ns),
            procs != 1_000 or rate >= 200_000
          )
        end ++
        [
          row(
            "process env: spawn, `exec(\"x = 1\")`, exit (median)",
            H.fmt_ns(env_cycle.median_ns),
            "—",
            "spawn + exit alone #{H.fmt_ns(spawn_floor.median_ns)}",
            H.ratio(env_cycle.median_ns, spawn_floor.median_ns),
            true
          ),
          row(
            "RSS after 10,000 processes each left 1 MB of Python state and exited",
            "#{Float.round(grew_mb, 1)} MB above start",
            "≤ 50 MB",
            "—",
            "—",
            grew_mb <= 50
          )
        ]
    end)
  end
end

alias Bench.Run

{:ok, _} = Application.ensure_all_started(:pybridge)
:ok = Py.exec("def ident(x): return x")
{:ok, python_version} = Py.eval("__import__('sys').version.split()[0]")

# Warm up the whole path (JIT, allocator, executor threads) before measuring.
defmodule Bench.Parallel do
  @moduledoc false
  # CPU-bound Python in two contexts at once, against one context alone (the
  # floor): about 2× with one GIL, about 1× when the contexts run in
  # parallel. Sub-interpreters and free-threading run in peer VMs embedding
  # the CPython 3.14 and 3.14t that `make cpython` builds.

  alias Bench.Run

  @code "sum(i * i for i in range(3_000_000))"

  def section do
    Run.section("Parallel contexts (issue 3: interpreters)", fn ->
      local = fn ctx -> fn -> {:ok, _} = Py.eval(ctx, @code, %{}, timeout: 120_000) end end

      main_row =
        row("main interpreter, Python #{version()}", local, Py.context(1), Py.context(2), false)

      peers =
        for {var, label, env, pool, parallel?} <- [
              {"PYBRIDGE_TEST_PY314", "sub-interpreters, Python 3.14",
               [pools: [iso: [size: 2, mode: :subinterpreter]]], :iso, true},
              {"PYBRIDGE_TEST_PY314", "main interpreter, Python 3.14", [], :default, false},
              {"PYBRIDGE_TEST_PY314T", "free-threaded Python 3.14t", [], :default, true}
            ] do
          peer_row(System.get_env(var), label, env, pool, parallel?)
        end

      [main_row | peers]
    end)
  end

  defp version do
    {a, b, c} = Py.Runtime.info().version_info
    "#{a}.#{b}.#{c}"
  end

  defp peer_row(python, label, env, pool, parallel?) do
    if python && File.exists?(python) do
      {:ok, peer, _} =
        :peer.start_link(%{
          connection: :standard_io,
          args: Enum.flat_map(:code.get_path(), &[~c"-pa", &1]),
          env: [{~c"PYBRIDGE_PYTHON", String.to_charlist(python)}]
        })

      :ok = :peer.call(peer, Application, :load, [:pybridge])

      for {k, v} <- [{:num_contexts, 2} | env],
          do: :peer.call(peer, Application, :put_env, [:pybridge, k, v])

      {:ok, _} = :peer.call(peer, Application, :ensure_all_started, [:pybridge], 60_000)
      [a, b | _] = :peer.call(peer, Py.Context, :contexts, [pool])

      remote = fn ctx ->
        fn ->
          {:ok, _} = :peer.call(peer, Py, :eval, [ctx, @code, %{}, [timeout: 120_000]], 130_000)
        end
      end

      row = row(label, remote, a, b, parallel?)
      :peer.stop(peer)
      row
    else
      Run.row(label, "not run: no #{label} (run `make cpython`)", "—", "—", "—", false)
    end
  end

  # The median of three rounds of: one call alone, then two at once.
  defp row(label, runner, a, b, parallel?) do
    rounds =
      for _ <- 1..3 do
        runner.(a).()
        {one, _} = :timer.tc(runner.(a))

        {two, _} =
          :timer.tc(fn ->
            [a, b] |> Enum.map(&Task.async(runner.(&1))) |> Enum.each(&Task.await(&1, 130_000))
          end)

        {one, two}
      end

    {one, two} = rounds |> Enum.sort_by(fn {one, two} -> two / one end) |> Enum.at(1)
    ratio = two / one

    Run.row(
      "#{label}: two CPU-bound calls in two contexts at once",
      "#{Float.round(two / 1000, 1)} ms",
      if(parallel?, do: "parallel: ≤ 1.3× one call", else: "— (one GIL: about 2×)"),
      "one call alone #{Float.round(one / 1000, 1)} ms",
      "#{Float.round(ratio, 2)}×",
      if(parallel?, do: ratio <= 1.3, else: true)
    )
  end
end

for _ <- 1..200_000, do: {:ok, _} = Py.call(:math, :sqrt, [2.0])
for _ <- 1..100_000, do: {:ok, _} = Py.eval("1+1")

msg_floor = H.message_round_trip()
IO.puts("floor: BEAM message round trip median #{H.fmt_ns(msg_floor.median_ns)}")

calls = Run.calls(msg_floor)

bulk = Run.bulk(msg_floor)

execution = Run.execution(msg_floor)

contexts = Run.contexts(msg_floor)

parallel = Bench.Parallel.section()

coalescing = Bench.Coalesce.section(&Run.row/6)

windows = Bench.Windows.section(&Run.row/6)

shared_dict = Bench.SharedDict.section(&Run.row/6)

callbacks = Bench.Callbacks.section(&Run.row/6)
overload = Bench.Overload.section(&Run.row/6)

backends = Bench.Backends.section(&Run.row/6)

streams = Bench.Streams.section(&Run.row/6)

sections = [
  calls,
  bulk,
  execution,
  contexts,
  parallel,
  coalescing,
  windows,
  shared_dict,
  callbacks,
  backends,
  overload,
  streams
]

m = H.machine()

doc = """
# Benchmark results

Written by `make bench` (`bench/run.exs`); do not edit by hand.

Machine: #{m.cpu}, #{m.cores} schedulers online, #{m.memory} RAM; OTP #{m.otp}, Elixir #{m.elixir}, Python #{python_version}; run on #{m.date}.

Floors are measured in the same run: a BEAM message round trip between two
processes (#{H.fmt_ns(msg_floor.median_ns)} median here), and the same Python
operation timed with `timeit` inside the embedded interpreter. Each figure
is also given as a ratio to its floor, which stays comparable when the shared
machine is faster or slower from one run to the next.

How it is measured: each call is timed on its own with the monotonic clock
after a warm-up; the call latencies are the median round of five (each round
20,000 calls with its own floor), because single rounds on this shared
machine swing by up to 2× when a neighbour is busy. Throughput counts calls
completed by N processes in 1.5 s, the median of three rounds. Lateness is the worst of 1,500 one-millisecond
sleeps; the 200-sleeper figures are the median of five rounds. The RSS figure is read from `/proc/self/status` after 10,000 processes
(200 at a time) each left a 1 MB bytes object in their namespace and exited.

The parallel-contexts rows time CPU-bound Python (`sum(i * i for i in
range(3_000_000))`) in two contexts at once against one call alone, the
median of three rounds; the CPython 3.14 rows run in a second BEAM node
embedding the 3.14 or 3.14t that `make cpython` builds.

For comparison, the issue gives the prior art on this kind of machine as about
15 µs for `math.sqrt` and 35 µs for `1+1`.

#{Enum.map_join(sections, "\n", fn {title, rows} -> "## #{title}\n\n" <> H.table(rows) end)}
"""

File.write!(Path.join(__DIR__, "RESULTS.md"), doc)
IO.puts("\nwrote bench/RESULTS.md")
