# Telemetry (issue 15): what the `[:pybridge, :call, _]` span costs a call
# when no handler is attached, against the same call with telemetry compiled
# out, in the same run.
#
#     MIX_ENV=bench mix run bench/telemetry.exs
#
# Not part of `make bench`: it recompiles Py.Telemetry, which would change
# the other sections' build.
#
# The real telemetry library is not installable here (no Hex), so "present"
# means the suite's stand-in (test/support/telemetry_stand_in.ex), which
# keeps handlers the way telemetry 1.x does: `execute/3` looks its event up
# in a duplicate-bag ETS table with read concurrency. The figure is
# therefore indicative of, not identical to, the real library's.
#
# How: Bench.Telemetry.Off is compiled from the same source as Py.Call.run/5
# (`Py.Telemetry.call_span/4` around `Py.Call.measured/5`) while
# Py.Telemetry is compiled without the library (the `:bench` build); then
# the stand-in is loaded, Py.Telemetry recompiled, and Bench.Telemetry.On
# compiled from that same source. Both are timed interleaved.

Code.require_file("harness.exs", __DIR__)
alias Bench.Harness, as: H

if Py.Telemetry.enabled?() do
  raise "run this under MIX_ENV=bench, where telemetry is compiled out"
end

body =
  quote do
    require Py.Telemetry

    def run(ctx, namespace?, job, timeout, coalesce) do
      Py.Telemetry.call_span ctx, job, coalesce do
        Py.Call.measured(ctx, namespace?, job, timeout, coalesce)
      end
    end

    # The span around nothing but a constant: the instrumentation alone.
    def bare(ctx, job) do
      Py.Telemetry.call_span ctx, job, nil do
        {:ok, nil}
      end
    end
  end

Module.create(Bench.Telemetry.Off, body, Macro.Env.location(__ENV__))

Code.require_file("../test/support/telemetry_stand_in.ex", __DIR__)
Code.put_compiler_option(:ignore_module_conflict, true)
Code.compile_file("../lib/py/telemetry.ex", __DIR__)
Code.put_compiler_option(:ignore_module_conflict, false)
true = Py.Telemetry.enabled?()

Module.create(Bench.Telemetry.On, body, Macro.Env.location(__ENV__))

# The handler table exists and holds a handler of another event, as in an
# application that uses telemetry for other things.
:ok = :telemetry.attach("bench-other", [:other, :event], fn _, _, _, _ -> :ok end, nil)
[] = :telemetry.list_handlers([:pybridge])

defmodule Bench.Telemetry do
  alias Bench.Harness, as: H

  @title "Telemetry (issue 15)"

  def run do
    ctx = Py.context()
    job = {:call, "math", "sqrt", [2.0], %{}}
    off = fn -> {:ok, _} = Bench.Telemetry.Off.run(ctx, false, job, 5_000, nil) end
    on = fn -> {:ok, _} = Bench.Telemetry.On.run(ctx, false, job, 5_000, nil) end

    # Median of five interleaved rounds of the difference of medians.
    rounds =
      for _ <- 1..5 do
        {o, n} = H.sample_pair(off, on)
        {o.median_ns, n.median_ns}
      end

    {off_ns, on_ns} = rounds |> Enum.sort_by(fn {o, n} -> n - o end) |> Enum.at(2)
    added = on_ns - off_ns

    # The same, as CPU time of the OS process per call (unlike the wall
    # clock, it does not grow while a loaded machine keeps the VM waiting).
    cpu =
      for _ <- 1..5 do
        {H.cpu_ns(off, 100_000), H.cpu_ns(on, 100_000)}
      end

    {cpu_off, cpu_on} = cpu |> Enum.sort_by(fn {o, n} -> n - o end) |> Enum.at(2)
    cpu_added = cpu_on - cpu_off

    # The instrumentation alone, in tight loops, alternated: wall clock and
    # CPU time per call.
    bare =
      for _ <- 1..5 do
        o = H.cpu_ns(fn -> Bench.Telemetry.Off.bare(ctx, job) end, 2_000_000)
        n = H.cpu_ns(fn -> Bench.Telemetry.On.bare(ctx, job) end, 2_000_000)
        {o, n}
      end

    {bare_off, bare_on} = bare |> Enum.sort_by(fn {o, n} -> n - o end) |> Enum.at(2)
    bare_added = bare_on - bare_off

    # For comparison: the span with a handler attached (a no-op one), as
    # CPU time per call of the span alone.
    :ok =
      :telemetry.attach("bench-noop", [:pybridge, :call, :stop], fn _, _, _, _ -> :ok end, nil)

    Py.Telemetry.watch_calls(true)
    watched = H.cpu_ns(fn -> Bench.Telemetry.On.bare(ctx, job) end, 2_000_000)
    Py.Telemetry.watch_calls(false)
    :ok = :telemetry.detach("bench-noop")

    rows = [
      %{
        name:
          "`Py.call(:math, :sqrt, [2.0])`, telemetry present (stand-in), no handler: added to the median (wall clock)",
        value: H.fmt_ns(added),
        target: "≤ 0.2 µs",
        floor: "compiled out #{H.fmt_ns(off_ns)} / present #{H.fmt_ns(on_ns)}",
        ratio: H.ratio(on_ns, off_ns),
        ok?: added <= 200
      },
      %{
        name: "the same, CPU time per call (mean of 100,000)",
        value: H.fmt_ns(cpu_added),
        target: "≤ 0.2 µs",
        floor: "compiled out #{H.fmt_ns(cpu_off)} / present #{H.fmt_ns(cpu_on)}",
        ratio: H.ratio(cpu_on, cpu_off),
        ok?: cpu_added <= 200
      },
      %{
        name:
          "the span alone (no Python call), no handler: CPU time added per call (mean of 2,000,000)",
        value: H.fmt_ns(bare_added),
        target: "≤ 0.2 µs",
        floor: "compiled out #{H.fmt_ns(bare_off)} / present #{H.fmt_ns(bare_on)}",
        ratio: "—",
        ok?: bare_added <= 200
      },
      %{
        name:
          "for comparison: the span alone with a no-op handler attached to `:stop`, CPU time added per call",
        value: H.fmt_ns(watched - bare_off),
        target: "—",
        floor: "compiled out #{H.fmt_ns(bare_off)}",
        ratio: "—",
        ok?: true
      }
    ]

    Enum.each(rows, &IO.puts("  #{&1.name}: #{&1.value} (#{&1.floor})"))
    rows
  end

  def write(rows) do
    m = H.machine()
    {load, _} = File.read!("/proc/loadavg") |> Float.parse()

    table =
      Enum.map_join(rows, "\n", fn r ->
        "| #{r.name} | #{r.value} | #{r.target} | #{r.floor} | #{r.ratio} | #{if r.ok?, do: "yes", else: "**no**"} |"
      end)

    text = """
    ## #{@title}

    Measured on its own (`MIX_ENV=bench mix run bench/telemetry.exs`) on #{m.date}: #{m.cpu}, #{m.cores} schedulers online, OTP #{m.otp}, Elixir #{m.elixir}; load average #{load} when it ended. The telemetry library is not installable here (no Hex): "present" is the test suite's stand-in, which looks handlers up as telemetry 1.x does (a duplicate-bag ETS table with read concurrency), so the figures are indicative of the real library's cost, not the same. Each is the median of five rounds, compiled-out and present alternated; the CPU-time rows read `:erlang.statistics(:runtime)` (the OS process's CPU time, Python's threads included, 1 ms resolution) around long loops, which a busy machine inflates far less than the wall clock.

    | benchmark | result | target | floor (same run) | ratio to floor | met |
    |---|---|---|---|---|---|
    #{table}
    """

    H.write_section(@title, text)
  end
end

IO.puts("== Telemetry (issue 15); load average #{File.read!("/proc/loadavg")}")
Bench.Telemetry.run() |> Bench.Telemetry.write()
