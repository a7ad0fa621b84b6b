defmodule Py.Coalesce.Stats do
  @moduledoc false
  # The one place where coalescing is counted (hits, misses, errors and the
  # `active` gauge), per group, in a public ETS table owned by
  # Py.Coalesce.Tables. Flights call `started/1` when an execution starts and
  # `finished/3` when it ends; nothing else writes counters, so telemetry can
  # hook in here later. One ETS update per event, none per waiter: a flight
  # adds all its hits at once when it ends.
  #
  # Row: {group, hits, misses, errors, active}

  @table :py_coalesce_stats

  @doc false
  @spec table() :: atom
  def table, do: @table

  @doc false
  # An execution of `group` started (a miss).
  @spec started(term) :: :ok
  def started(group) do
    :ets.update_counter(@table, group, [{3, 1}, {5, 1}], {group, 0, 0, 0, 0})
    :ok
  end

  @doc false
  # An execution of `group` ended: `hits` callers shared it, `error?` says
  # whether its outcome was an error (or a crash).
  @spec finished(term, non_neg_integer, boolean) :: :ok
  def finished(group, hits, error?) do
    errors = if error?, do: 1, else: 0
    :ets.update_counter(@table, group, [{2, hits}, {4, errors}, {5, -1}], {group, 0, 0, 0, 0})
    :ok
  end

  @doc false
  @spec get(term) :: Py.Coalesce.stats()
  def get(group) do
    case :ets.lookup(@table, group) do
      [row] -> to_map(row)
      [] -> to_map({group, 0, 0, 0, 0})
    end
  end

  @doc false
  @spec all() :: %{term => Py.Coalesce.stats()}
  def all do
    @table |> :ets.tab2list() |> Map.new(&{elem(&1, 0), to_map(&1)})
  end

  @doc false
  # Zeroes the counters but not the gauge: executions still running end
  # later and take themselves off `active` then.
  @spec reset(term) :: :ok
  def reset(group) do
    :ets.update_element(@table, group, [{2, 0}, {3, 0}, {4, 0}])
    :ok
  end

  @doc false
  @spec to_map({term, integer, integer, integer, integer}) :: Py.Coalesce.stats()
  def to_map({_group, hits, misses, errors, active}) do
    total = hits + misses
    rate = if total == 0, do: 0.0, else: hits / total
    %{hits: hits, misses: misses, errors: errors, active: active, hit_rate: rate}
  end
end
