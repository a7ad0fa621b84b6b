# Request coalescing (issue 13): what `coalesce:` costs and what it saves.
#
# Part of `make bench` (bench/run.exs requires this file). Run alone, it
# measures this section only and replaces it in bench/RESULTS.md:
#
#     MIX_ENV=bench mix run bench/coalesce.exs

defmodule Bench.Coalesce do
  @moduledoc false
  alias Bench.Harness, as: H

  @title "Request coalescing (issue 13)"
  @waiters 10_000

  def title, do: @title

  def section(row) do
    IO.puts("\n== #{@title}")
    rows = [uncontended(row), run_overhead(row) | herd(row)] ++ python(row)

    Enum.each(rows, &IO.puts("  #{&1.name}: #{&1.value} (#{&1.floor_name}: #{&1.floor})"))
    {@title, rows}
  end

  # The plain call and the coalesced one, interleaved so both see the same
  # machine; the median round of three.
  defp uncontended(row) do
    plain = fn -> {:ok, _} = Py.call(:math, :sqrt, [2.0]) end
    coalesced = fn -> {:ok, _} = Py.call(:math, :sqrt, [2.0], coalesce: true) end

    {p, c} =
      for(_ <- 1..3, do: H.sample_pair(plain, coalesced))
      |> Enum.sort_by(fn {p, c} -> c.median_ns - p.median_ns end)
      |> Enum.at(1)

    added = c.median_ns - p.median_ns

    row.(
      "`coalesce: true` on an uncontended `Py.call(:math, :sqrt, [2.0])`: added to the median",
      H.fmt_ns(added),
      "≤ 1 µs",
      "plain call #{H.fmt_ns(p.median_ns)} / coalesced #{H.fmt_ns(c.median_ns)}",
      H.ratio(c.median_ns, p.median_ns),
      added <= 1_000
    )
  end

  defp run_overhead(row) do
    fun = fn -> {:ok, 1} end
    run = H.mean_ns(fn -> Py.Coalesce.run(:bench, :k, fun) end, 100_000)
    spawn = H.mean_ns(fn -> spawn_round_trip() end, 100_000)

    row.(
      "`Py.Coalesce.run/3` of a trivial function, uncontended, mean",
      H.fmt_ns(run),
      "—",
      "spawn + monitor + reply #{H.fmt_ns(spawn)}",
      H.ratio(run, spawn),
      true
    )
  end

  defp spawn_round_trip do
    parent = self()
    {pid, ref} = spawn_monitor(fn -> send(parent, {self(), :ok}) end)

    receive do
      {^pid, :ok} -> Process.demonitor(ref, [:flush])
    end
  end

  # 10,000 processes make the same call while its execution is held in
  # Python; the median round of three. Per waiter: the time to join and the
  # time to get the shared result, minus the same fan-in and fan-out done
  # with bare messages (spawn, monitor, one message each way).
  defp herd(row) do
    :ok =
      Py.exec("""
      import sys, threading, types
      m = types.ModuleType("bench_coalesce")
      m.runs = 0
      m.gate = threading.Event()
      def work(x):
          m.runs += 1
          m.gate.wait()
          return x
      m.work = work
      sys.modules["bench_coalesce"] = m
      """)

    ctx = Py.Context.new(max_workers: 1)
    rounds = for _ <- 1..3, do: herd_round(ctx)
    Py.Context.close(ctx)
    {coalesced, floor, runs, stats} = rounds |> Enum.sort_by(&per_waiter/1) |> Enum.at(1)
    per = per_waiter({coalesced, floor, runs, stats})

    [
      row.(
        "overhead per coalesced waiter (#{@waiters} waiters; join + fan-out #{H.fmt_ns(coalesced * 1000 / @waiters)} each)",
        H.fmt_ns(per),
        "≤ 2 µs",
        "bare fan-in/fan-out #{H.fmt_ns(floor * 1000 / @waiters)} each",
        H.ratio(coalesced, floor),
        per <= 2_000
      ),
      row.(
        "#{@waiters} concurrent identical `Py.call(..., coalesce: true)`: executions",
        "#{runs} (hit rate #{Float.round(stats.hit_rate * 100, 2)} %)",
        "exactly 1",
        "—",
        "—",
        runs == 1
      )
    ]
  end

  defp per_waiter({coalesced, floor, _runs, _stats}), do: (coalesced - floor) * 1000 / @waiters

  defp herd_round(ctx) do
    :ok = Py.exec("import bench_coalesce as m; m.gate.clear(); m.runs = 0")
    Py.Coalesce.reset_stats("bench_coalesce.work")
    parent = self()
    key = {"bench_coalesce", "work", [1]}

    t0 = now()

    for _ <- 1..@waiters do
      spawn(fn ->
        send(parent, {:done, Py.call(ctx, :bench_coalesce, :work, [1], coalesce: true)})
      end)
    end

    until_joined("bench_coalesce.work", key, @waiters)
    t1 = now()
    :ok = Py.exec("import bench_coalesce as m; m.gate.set()")
    t2 = now()
    results = for _ <- 1..@waiters, do: receive(do: ({:done, r} -> r))
    t3 = now()
    [{:ok, 1}] = Enum.uniq(results)
    {:ok, runs} = Py.eval("__import__('bench_coalesce').runs")
    stats = Py.Coalesce.stats("bench_coalesce.work")

    {t1 - t0 + (t3 - t2), floor_round(), runs, stats}
  end

  # The same processes, joining a bare server that monitors them and then
  # answers each with one message.
  defp floor_round do
    parent = self()
    server = spawn(fn -> serve([]) end)
    t0 = now()

    for _ <- 1..@waiters do
      spawn(fn ->
        ref = Process.monitor(server)
        send(server, {:join, self(), ref})

        receive do
          {^ref, value} ->
            Process.demonitor(ref, [:flush])
            send(parent, {:done, value})
        end
      end)
    end

    until_monitors(fn -> server end, @waiters)
    t1 = now()
    send(server, :go)
    for _ <- 1..@waiters, do: receive(do: ({:done, _} -> :ok))
    now() - t1 + (t1 - t0)
  end

  defp serve(waiters) do
    receive do
      {:join, pid, ref} ->
        Process.monitor(pid)
        serve([{pid, ref} | waiters])

      :go ->
        Enum.each(waiters, fn {pid, ref} -> send(pid, {ref, {:ok, 1}}) end)
    end
  end

  # Until the call of {group, key} has n callers: its leader (who runs it)
  # and the joiners in its flight (sure to be answered). Read from the
  # native in-flight table with one call: Leader.callers/1 asks each of the
  # 10,000 processes where it is, which put about 5 µs a waiter of the
  # latch's own cost into the row.
  defp until_joined(group, key, n) do
    joined = Py.Coalesce.Leader.committed({group, key}) || 0

    if joined < n do
      Process.sleep(1)
      until_joined(group, key, n)
    end
  end

  defp until_monitors(pid_fun, n) do
    with pid when is_pid(pid) <- pid_fun.(),
         {:monitors, monitors} when length(monitors) >= n <- Process.info(pid, :monitors) do
      :ok
    else
      _ ->
        Process.sleep(1)
        until_monitors(pid_fun, n)
    end
  end

  defp now, do: System.monotonic_time(:microsecond)

  # erlang.SharedCall / AsyncSharedCall against shared-call-py 0.1.2 and a
  # plain lock + dict + Event version, timed by bench/shared_call.py in a
  # venv of the CPython 3.12 `make cpython` builds (shared-call-py needs
  # 3.12), made on first use: _build/bench-shared-call.
  defp python(row) do
    case shared_call_python() do
      {:ok, python} ->
        script = Path.join(__DIR__, "shared_call.py")
        module = Path.expand("../python/erlang/_shared_call.py", __DIR__)
        {out, 0} = System.cmd(python, [script, module])

        t =
          for line <- String.split(out, "\n", trim: true), into: %{} do
            case String.split(line, " ", parts: 2) do
              ["python", version] -> {"python", version}
              [name, ns] -> {name, String.to_float(ns)}
            end
          end

        python_rows(row, t)

      {:error, why} ->
        [
          row.(
            "`SharedCall.call` against shared-call-py 0.1.2",
            "not run: #{why}",
            "≥ 3× faster",
            "—",
            "—",
            false
          )
        ]
    end
  end

  defp python_rows(row, t) do
    for {kind, name} <- [{"sync", "SharedCall.call"}, {"async", "AsyncSharedCall.call"}] do
      ours = t["#{kind}_ours"] - t["#{kind}_bare"]
      theirs = t["#{kind}_theirs"] - t["#{kind}_bare"]
      plain = t["#{kind}_plain"] - t["#{kind}_bare"]

      row.(
        "`#{name}` overhead, uncontended (Python #{t["python"]}; bare call #{H.fmt_ns(t["#{kind}_bare"])})",
        H.fmt_ns(ours),
        "≥ 3× faster than shared-call-py; faster than lock + dict + Event",
        "shared-call-py 0.1.2 #{H.fmt_ns(theirs)} / lock + dict + Event #{H.fmt_ns(plain)}",
        "#{Float.round(theirs / ours, 1)}× / #{Float.round(plain / ours, 2)}× faster",
        theirs / ours >= 3 and plain > ours
      )
    end
  end

  defp shared_call_python do
    venv = Path.expand("../_build/bench-shared-call", __DIR__)
    python = Path.join(venv, "bin/python")

    base =
      System.get_env("PYBRIDGE_TEST_PY312") ||
        Path.expand("~/.cache/pybridge/cpython/3.12.3/bin/python3.12")

    cond do
      File.exists?(python) ->
        {:ok, python}

      not File.exists?(base) ->
        {:error, "no CPython 3.12 (run `make cpython`)"}

      true ->
        with {_, 0} <- System.cmd(base, ["-m", "venv", venv], stderr_to_stdout: true),
             {_, 0} <-
               System.cmd(python, ["-m", "pip", "install", "-q", "shared-call-py==0.1.2"],
                 stderr_to_stdout: true
               ) do
          {:ok, python}
        else
          {out, _} -> {:error, "could not install shared-call-py: #{String.slice(out, -200..-1)}"}
        end
    end
  end

  # Standalone: measure this section and put it into bench/RESULTS.md in
  # place of its previous figures.
  def main, do: H.standalone("coalesce.exs", &section/1, fn _ -> "." end, warmup: 100_000)
end

unless Code.ensure_loaded?(Bench.Harness), do: Code.require_file("harness.exs", __DIR__)

# bench/run.exs sets this before requiring the file.
unless Process.get(:pybridge_bench_all), do: Bench.Coalesce.main()
