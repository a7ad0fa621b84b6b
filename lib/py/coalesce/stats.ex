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
  def get({:python, name} = group) when is_binary(name) do
    Map.get(python(), group, to_map({group, 0, 0, 0, 0}))
  end

  def get(group) do
    case :ets.lookup(@table, group) do
      [row] -> to_map(row)
      [] -> to_map({group, 0, 0, 0, 0})
    end
  end

  @doc false
  @spec all() :: %{term => Py.Coalesce.stats()}
  def all do
    @table |> :ets.tab2list() |> Map.new(&{elem(&1, 0), to_map(&1)}) |> Map.merge(python())
  end

  @python_timeout_ms Py.Limits.python_stats_timeout_ms()

  @doc false
  # The named erlang.SharedCall / AsyncSharedCall instances of every
  # interpreter (the main one, once, and each sub-interpreter context's),
  # summed per name, as {:python, name} => stats. An interpreter that does
  # not answer in time is left out.
  @spec python() :: %{{:python, String.t()} => Py.Coalesce.stats()}
  def python do
    Py.Context.all()
    |> Enum.reduce({[], false}, fn ctx, {picked, main?} ->
      case Py.Context.info(ctx).mode do
        :main when main? -> {picked, main?}
        :main -> {[ctx | picked], true}
        _sub -> {[ctx | picked], main?}
      end
    end)
    |> elem(0)
    |> Enum.flat_map(fn ctx ->
      case Py.eval(ctx, "__import__('erlang')._shared_call._named_stats()", %{},
             timeout: @python_timeout_ms
           ) do
        {:ok, rows} -> rows
        {:error, _} -> []
      end
    end)
    |> Enum.reduce(%{}, fn {name, hits, misses, errors, active}, acc ->
      Map.update(acc, {:python, name}, {{:python, name}, hits, misses, errors, active}, fn
        {group, h, m, e, a} -> {group, h + hits, m + misses, e + errors, a + active}
      end)
    end)
    |> Map.new(fn {group, row} -> {group, to_map(row)} end)
  catch
    # The pools are being restarted: report the BEAM side only.
    :exit, _ -> %{}
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
