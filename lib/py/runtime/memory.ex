defmodule Py.Runtime.Memory do
  @moduledoc """
  Python's memory, seen and steered from the BEAM: `Py.memory_stats/1`,
  `Py.gc/1`, `Py.tracemalloc_start/1` and `Py.tracemalloc_stop/0`.

  Python frees most objects as soon as their last reference goes; what
  cycles hold waits for the cycle collector. When a node's memory grows,
  these tell whether Python holds it (objects tracked, what the collector
  found, which source lines allocated most while `tracemalloc` traces) and
  can force a collection, without attaching a debugger to the VM.

  The collector's counters are per interpreter: `memory_stats/1` reads the
  main interpreter's unless given a `context:`, and `gc/1` collects in every
  interpreter. `tracemalloc` traces the whole process (every interpreter
  allocates through the same hooks); tracing slows allocation down, so
  stop it when done.
  """

  alias Py.Options

  @typedoc """
  What `memory_stats/1` returns (the first five keys as erlang_python's
  `py:memory_stats/0`):

    * `:gc_stats` – per generation, `%{collections:, collected:, uncollectable:}`
      (`gc.get_stats()`);
    * `:gc_count` – objects allocated since each generation's last
      collection (`gc.get_count()`), `:gc_threshold` – `gc.get_threshold()`;
    * `:traced_memory_current`, `:traced_memory_peak` – bytes `tracemalloc`
      traces now and at most (only while it traces);
    * `:objects` – objects the collector tracks (containers; ints and
      strings are not tracked);
    * `:rss` – the OS process's resident memory in bytes, BEAM included
      (`nil` where `/proc` is missing);
    * `:tracemalloc_top` – while tracing, the source lines that allocated
      the most traced memory, biggest first:
      `%{file:, line:, size: bytes, count: blocks}`.
  """
  @type stats :: %{
          required(:gc_stats) => [map],
          required(:gc_count) => tuple,
          required(:gc_threshold) => tuple,
          required(:objects) => non_neg_integer,
          required(:rss) => non_neg_integer | nil,
          optional(:traced_memory_current) => non_neg_integer,
          optional(:traced_memory_peak) => non_neg_integer,
          optional(:tracemalloc_top) => [map]
        }

  @stats_schema [context: :context, top: :pos_integer, timeout: :timeout]

  @keys ~w(gc_stats gc_count gc_threshold objects rss traced_memory_current
           traced_memory_peak tracemalloc_top collections collected uncollectable
           file line size count)

  @doc """
  Python's memory statistics (see `t:stats/0`).

  Options: `:context` (read that context's interpreter; default the main
  interpreter), `:top` (lines in `:tracemalloc_top`, default 10),
  `:timeout`.

  ## Example

      {:ok, %{gc_count: {_, _, _}, objects: objects}} = Py.memory_stats()
  """
  @spec memory_stats(keyword) :: {:ok, stats} | {:error, Py.Error.t()}
  def memory_stats(opts \\ []) do
    opts = Options.validate!(opts, @stats_schema, "Py.memory_stats/1")
    call_opts = Keyword.take(opts, [:timeout])

    with {:ok, ctx} <- context(opts),
         {:ok, stats} <-
           Py.call(ctx, :pybridge, :memory_stats, [Keyword.get(opts, :top, 10)], call_opts) do
      {:ok, atomize(stats)}
    end
  end

  @doc """
  Runs Python's cycle collector on generations 0 to `generation` (0, 1 or
  2; 2 is a full collection) in every interpreter.

  Returns `{:ok, unreachable}`: the unreachable objects found, summed over
  the interpreters (`gc.collect()`'s value).

  ## Example

      {:ok, unreachable} = Py.gc()
      true = unreachable >= 0
  """
  @spec gc(0..2) :: {:ok, non_neg_integer} | {:error, Py.Error.t()}
  def gc(generation \\ 2)

  def gc(generation) when generation in 0..2 do
    counter = :counters.new(1, [])

    result =
      Py.Imports.each_interpreter(fn ctx ->
        with {:ok, found} <- Py.call(ctx, :gc, :collect, [generation]) do
          :counters.add(counter, 1, found)
        end
      end)

    with :ok <- result, do: {:ok, :counters.get(counter, 1)}
  end

  def gc(other), do: Options.invalid!("generation for Py.gc/1", "0, 1 or 2", other)

  @doc """
  Starts `tracemalloc`, keeping `frames` frames of each allocation's
  traceback (default 1; the top lines group by the innermost one). `:ok`
  also when it was tracing already (the frame count then stays).

  ## Example

      :ok = Py.tracemalloc_start()
      {:ok, %{traced_memory_current: _}} = Py.memory_stats()
      :ok = Py.tracemalloc_stop()
  """
  @spec tracemalloc_start(pos_integer) :: :ok | {:error, Py.Error.t()}
  def tracemalloc_start(frames \\ 1)

  def tracemalloc_start(frames) when is_integer(frames) and frames in 1..65_535 do
    with {:ok, ctx} <- context([]),
         {:ok, nil} <- Py.call(ctx, :tracemalloc, :start, [frames]),
         do: :ok
  end

  def tracemalloc_start(other),
    do: Options.invalid!("frames for Py.tracemalloc_start/1", "an integer in 1..65535", other)

  @doc """
  Stops `tracemalloc` and frees its traces. `:ok` also when it was not
  tracing.

  ## Example

      :ok = Py.tracemalloc_stop()
  """
  @spec tracemalloc_stop() :: :ok | {:error, Py.Error.t()}
  def tracemalloc_stop do
    with {:ok, ctx} <- context([]),
         {:ok, nil} <- Py.call(ctx, :tracemalloc, :stop, []),
         do: :ok
  end

  # The context to run in: the one given, else a main-interpreter context
  # (else any: a node whose every pool runs sub-interpreters).
  defp context(opts) do
    case Keyword.fetch(opts, :context) do
      {:ok, ctx} ->
        {:ok, ctx}

      :error ->
        case Enum.sort_by(Py.Context.all(), &(Py.Context.info(&1).mode != :main)) do
          [ctx | _] -> {:ok, ctx}
          [] -> {:error, %Py.Error{type: :not_started, message: "no context is running"}}
        end
    end
  end

  defp atomize(map) when is_map(map) do
    Map.new(map, fn {key, value} -> {key(key), atomize(value)} end)
  end

  defp atomize(list) when is_list(list), do: Enum.map(list, &atomize/1)
  defp atomize(other), do: other

  for key <- @keys do
    defp key(unquote(key)), do: unquote(String.to_atom(key))
  end

  defp key(other), do: other
end
