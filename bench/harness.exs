defmodule Bench.Harness do
  @moduledoc """
  A small benchmark harness: no Benchee offline, so this times calls itself.

  Each measurement warms up, then times individual calls with the monotonic
  clock and reports the median and p99. Every figure is also given as a ratio
  to a floor measured in the same run, so results from a noisy shared machine
  can still be compared.
  """

  @doc "Times `fun` one call at a time; returns %{median_ns, p99_ns, samples}."
  def sample(fun, opts \\ []) do
    warmup = Keyword.get(opts, :warmup, 2_000)
    samples = Keyword.get(opts, :samples, 20_000)
    for _ <- 1..warmup, do: fun.()
    times = for _ <- 1..samples, do: time(fun)
    summarize(times)
  end

  @doc """
  Runs `sample/2` of `fun` `rounds` times, each followed by a floor sample,
  and returns the round with the median median, with its floor. On a shared
  machine one round can land on a noisy moment; the median round does not.
  """
  def sample_rounds(fun, floor_fun, rounds \\ 3, opts \\ []) do
    results =
      for _ <- 1..rounds do
        {sample(fun, opts), floor_fun.()}
      end

    results
    |> Enum.sort_by(fn {s, _} -> s.median_ns end)
    |> Enum.at(div(rounds, 2))
  end

  @doc """
  Times `a` and `b` alternately, `samples` times each, so both see the same
  machine state; returns {summary_a, summary_b}.
  """
  def sample_pair(a, b, opts \\ []) do
    warmup = Keyword.get(opts, :warmup, 2_000)
    samples = Keyword.get(opts, :samples, 20_000)
    for _ <- 1..warmup, do: {a.(), b.()}
    pairs = for _ <- 1..samples, do: {time(a), time(b)}

    {pairs |> Enum.map(&elem(&1, 0)) |> summarize(),
     pairs |> Enum.map(&elem(&1, 1)) |> summarize()}
  end

  @doc "Times `fun` `n` times in a tight loop; returns the mean per call (for sub-µs work)."
  def mean_ns(fun, n) do
    for _ <- 1..div(n, 10), do: fun.()
    t0 = System.monotonic_time(:nanosecond)
    loop(fun, n)
    (System.monotonic_time(:nanosecond) - t0) / n
  end

  @doc """
  Runs `fun` `n` times in a tight loop; returns the CPU time per call in ns
  (`:erlang.statistics(:runtime)`, the VM's CPU time, millisecond
  resolution): unlike the wall clock, it does not grow while a loaded
  machine keeps the VM waiting for a core. Keep `n` large.
  """
  def cpu_ns(fun, n) do
    for _ <- 1..div(n, 10), do: fun.()
    {t0, _} = :erlang.statistics(:runtime)
    loop(fun, n)
    {t1, _} = :erlang.statistics(:runtime)
    (t1 - t0) * 1_000_000 / n
  end

  defp loop(_fun, 0), do: :ok

  defp loop(fun, n) do
    fun.()
    loop(fun, n - 1)
  end

  defp time(fun) do
    t0 = System.monotonic_time(:nanosecond)
    fun.()
    System.monotonic_time(:nanosecond) - t0
  end

  def summarize(times) do
    sorted = Enum.sort(times)
    n = length(sorted)

    %{
      median_ns: Enum.at(sorted, div(n, 2)),
      p99_ns: Enum.at(sorted, min(n - 1, div(n * 99, 100))),
      max_ns: List.last(sorted),
      samples: n
    }
  end

  @doc "Calls/s sustained by `procs` processes each looping `fun` for `ms` milliseconds."
  def throughput(fun, procs, ms) do
    parent = self()
    stop_at = System.monotonic_time(:millisecond) + ms

    pids =
      for _ <- 1..procs do
        spawn_link(fn ->
          receive do
            :go -> :ok
          end

          send(parent, {:count, self(), count_until(fun, stop_at, 0)})
        end)
      end

    t0 = System.monotonic_time(:microsecond)
    Enum.each(pids, &send(&1, :go))
    total = for pid <- pids, reduce: 0, do: (acc -> acc + receive(do: ({:count, ^pid, c} -> c)))
    elapsed_s = (System.monotonic_time(:microsecond) - t0) / 1_000_000
    total / elapsed_s
  end

  defp count_until(fun, stop_at, n) do
    if rem(n, 16) == 0 and System.monotonic_time(:millisecond) >= stop_at do
      n
    else
      fun.()
      count_until(fun, stop_at, n + 1)
    end
  end

  @doc "The floor for a call: one BEAM message round trip to another process."
  def message_round_trip do
    echo =
      spawn_link(fn ->
        echo_loop()
      end)

    result =
      sample(fn ->
        send(echo, {self(), :ping})

        receive do
          :pong -> :ok
        end
      end)

    send(echo, :stop)
    result
  end

  defp echo_loop do
    receive do
      {from, :ping} ->
        send(from, :pong)
        echo_loop()

      :stop ->
        :ok
    end
  end

  @doc "Resident set size of this OS process, in bytes (Linux)."
  def rss_bytes do
    case File.read("/proc/self/status") do
      {:ok, status} ->
        [_, kb] = Regex.run(~r/VmRSS:\s+(\d+) kB/, status)
        String.to_integer(kb) * 1024

      _ ->
        0
    end
  end

  def machine do
    cpu =
      case File.read("/proc/cpuinfo") do
        {:ok, info} ->
          case Regex.run(~r/model name\s*:\s*(.+)/, info) do
            [_, model] -> String.trim(model)
            _ -> "unknown"
          end

        _ ->
          "unknown"
      end

    mem =
      case File.read("/proc/meminfo") do
        {:ok, info} ->
          [_, kb] = Regex.run(~r/MemTotal:\s+(\d+) kB/, info)
          "#{div(String.to_integer(kb), 1024 * 1024)} GiB"

        _ ->
          "unknown"
      end

    %{
      cpu: cpu,
      cores: System.schedulers_online(),
      memory: mem,
      otp: System.otp_release(),
      elixir: System.version(),
      date: Date.utc_today() |> Date.to_iso8601()
    }
  end

  @doc "One table row; `section/1` of each bench file gets this as its `row` function."
  @spec row(String.t(), String.t(), String.t(), String.t(), String.t(), boolean()) :: map()
  def row(name, value, target, floor_name, floor, ok?) do
    %{name: name, value: value, target: target, floor_name: floor_name, floor: floor, ok?: ok?}
  end

  @doc """
  The first `fields` fields of /proc/loadavg joined by spaces (3: the 1, 5
  and 15 min load averages; 5 adds running/total tasks and the last pid), or
  "unknown" where there is none.
  """
  @spec load_average(pos_integer()) :: String.t()
  def load_average(fields \\ 3) do
    case File.read("/proc/loadavg") do
      {:ok, text} -> text |> String.split() |> Enum.take(fields) |> Enum.join(" ")
      _ -> "unknown"
    end
  end

  @doc """
  The markdown table of `rows` (see `row/6`); `column` heads the fifth
  column, the row's `floor`.
  """
  @spec table([map()], String.t()) :: String.t()
  def table(rows, column \\ "ratio to floor") do
    "| benchmark | result | target | floor (same run) | #{column} | met |\n|---|---|---|---|---|---|\n" <>
      Enum.map_join(rows, "\n", fn r ->
        "| #{r.name} | #{r.value} | #{r.target} | #{r.floor_name} | #{r.floor} | #{if r.ok?, do: "yes", else: "**no**"} |"
      end) <> "\n"
  end

  @doc """
  Runs one bench file on its own (`mix run bench/<script>`): starts
  :pybridge, makes `:warmup` `Py.call(:math, :sqrt, [2.0])` calls (default
  0), runs `section_fun.(&row/6)` (which returns `{title, rows}`) and puts
  the section into bench/RESULTS.md in place of its previous figures. Its
  text is "Measured on its own (`mix run bench/<script>`) on <date>: <cpu>,
  <n> schedulers online, OTP <otp>, Elixir <elixir>", then
  `note_fun.(load)` (the load average, read at the `:load` point, `:start`
  or `:end` (default), with `:load_fields` fields, default 3), then the
  table, its fifth column headed `:column` (default "ratio to floor").
  """
  @spec standalone(
          String.t(),
          (function() -> {String.t(), [map()]}),
          (String.t() -> String.t()),
          keyword()
        ) :: :ok
  def standalone(script, section_fun, note_fun, opts \\ []) do
    opts =
      Keyword.validate!(opts, warmup: 0, load: :end, load_fields: 3, column: "ratio to floor")

    {:ok, _} = Application.ensure_all_started(:pybridge)
    for _ <- 1..opts[:warmup]//1, do: {:ok, _} = Py.call(:math, :sqrt, [2.0])
    at_start = opts[:load] == :start && load_average(opts[:load_fields])
    {title, rows} = section_fun.(&row/6)
    m = machine()
    load = at_start || load_average(opts[:load_fields])

    text =
      "## #{title}\n\n" <>
        "Measured on its own (`mix run bench/#{script}`) on #{m.date}: #{m.cpu}, " <>
        "#{m.cores} schedulers online, OTP #{m.otp}, Elixir #{m.elixir}" <>
        note_fun.(load) <> "\n\n" <> table(rows, opts[:column])

    write_section(title, text)
  end

  @doc """
  Puts `text` (a section starting with `## title`) into bench/RESULTS.md in
  place of that section's previous figures, or appends it when it is new.
  """
  def write_section(title, text) do
    path = Path.join(__DIR__, "RESULTS.md")
    old = File.read!(path)

    new =
      case String.split(old, "## #{title}\n", parts: 2) do
        [before, rest] ->
          after_section =
            case String.split(rest, "\n## ", parts: 2) do
              [_, next] -> "\n## " <> next
              [_] -> ""
            end

          before <> text <> after_section

        [_] ->
          String.trim_trailing(old) <> "\n\n" <> text
      end

    File.write!(path, new)
    IO.puts("\nwrote the section to bench/RESULTS.md")
  end

  def fmt_ns(ns) when ns >= 1_000_000, do: "#{Float.round(ns / 1_000_000, 2)} ms"
  def fmt_ns(ns) when ns >= 1_000, do: "#{Float.round(ns / 1_000, 2)} µs"
  def fmt_ns(ns), do: "#{round(ns)} ns"

  def ratio(_x, floor) when floor in [0, 0.0, nil], do: "n/a"
  def ratio(x, floor), do: "#{Float.round(x / floor, 1)}×"
end
