defmodule Py.Coalesce.Stats do
  @moduledoc false
  # The one place where coalescing is counted (hits, misses, errors and the
  # `active` gauge), per group, in a public ETS table owned by
  # Py.Coalesce.Tables. Flights and leaders call `started/1` when an
  # execution starts and `finished/3` when it ends, or `ran/3` once for an
  # execution that ended before it was counted as started (a Python call
  # answered at once); nothing else writes counters. One ETS update
  # per event, none per waiter: a flight adds all its hits at once when it
  # ends.
  #
  # But the commonest call, a Python call that answered at once with
  # nobody joined and succeeded, is a miss the NIF that ran it counts
  # (Py.Native.coalesce_submit/6, native/pybridge/src/coalesce/misses.rs):
  # no ETS update at all. `get/1`, `all/0` and `reset/1` read and zero
  # those counts with the table's. (Not when telemetry is compiled in: each
  # miss then raises its event through `ran/3`.)
  #
  # Row: {group, hits, misses, errors, active}
  #
  # It is also the one place the [:pybridge, :coalesce, _] telemetry events
  # come from: the BEAM's as they are counted, the Python side's (counted by
  # erlang.SharedCall in each interpreter) when `python/0` reads them, as
  # the difference from its previous read (kept in a second table, row
  # {name, hits, misses, errors}).

  @table :py_coalesce_stats
  @python_seen :py_coalesce_python_seen

  @doc false
  @spec python_seen_table() :: atom
  def python_seen_table, do: @python_seen

  @doc false
  @spec table() :: atom
  def table, do: @table

  @doc false
  # An execution of `group` started (a miss).
  @spec started(term) :: :ok
  def started(group) do
    @table
    |> :ets.update_counter(group, [{3, 1}, {5, 1}, {2, 0}], {group, 0, 0, 0, 0})
    |> started_event(group)
  end

  @doc false
  # An execution of `group` that was never counted as started ran and
  # ended (a Python call answered at once, or whose leader died before its
  # call left the inline path): a miss and its end in one update, `active`
  # untouched.
  @spec ran(term, non_neg_integer, boolean) :: :ok
  def ran(group, hits, error?) do
    errors = if error?, do: 1, else: 0

    @table
    |> :ets.update_counter(group, [{3, 1}, {2, hits}, {4, errors}], {group, 0, 0, 0, 0})
    |> ran_event(group, hits, error?)
  end

  @doc false
  # An execution of `group` ended: `hits` callers shared it, `error?` says
  # whether its outcome was an error (or a crash).
  @spec finished(term, non_neg_integer, boolean) :: :ok
  def finished(group, hits, error?) do
    errors = if error?, do: 1, else: 0

    @table
    |> :ets.update_counter(group, [{2, hits}, {4, errors}, {5, -1}, {3, 0}], {group, 0, 0, 0, 0})
    |> finished_event(group, hits, error?)
  end

  if Py.Telemetry.enabled?() do
    defp started_event([misses, _active, hits], group) do
      :telemetry.execute(
        [:pybridge, :coalesce, :miss],
        %{count: 1, hit_rate: rate(hits, misses)},
        %{group: group, side: :beam}
      )
    end

    defp finished_event([total_hits, _errors, _active, misses], group, hits, error?) do
      meta = %{group: group, side: :beam}

      if hits > 0 do
        :telemetry.execute(
          [:pybridge, :coalesce, :hit],
          %{count: hits, hit_rate: rate(total_hits, misses)},
          meta
        )
      end

      if error?, do: :telemetry.execute([:pybridge, :coalesce, :error], %{count: 1}, meta)
      :ok
    end

    defp ran_event([misses, total_hits, errors], group, hits, error?) do
      started_event([misses, 0, total_hits], group)
      finished_event([total_hits, errors, 0, misses], group, hits, error?)
    end

    defp rate(0, 0), do: 0.0
    defp rate(hits, misses), do: hits / (hits + misses)
  else
    defp started_event(_counters, _group), do: :ok
    defp finished_event(_counters, _group, _hits, _error?), do: :ok
    defp ran_event(_counters, _group, _hits, _error?), do: :ok
  end

  @doc false
  @spec get(term) :: Py.Coalesce.stats()
  def get({:python, name} = group) when is_binary(name) do
    Map.get(python(), group, to_map({group, 0, 0, 0, 0}))
  end

  def get(group) do
    row =
      case :ets.lookup(@table, group) do
        [row] -> row
        [] -> {group, 0, 0, 0, 0}
      end

    row |> add_misses(Py.Native.coalesce_misses(group)) |> to_map()
  end

  @doc false
  @spec all() :: %{term => Py.Coalesce.stats()}
  def all do
    rows = @table |> :ets.tab2list() |> Map.new(&{elem(&1, 0), &1})

    Py.Native.coalesce_all_misses()
    |> Enum.reduce(rows, fn {encoded, misses}, rows ->
      group = :erlang.binary_to_term(encoded)
      row = Map.get(rows, group, {group, 0, 0, 0, 0})
      Map.put(rows, group, add_misses(row, misses))
    end)
    |> Map.new(fn {group, row} -> {group, to_map(row)} end)
    |> Map.merge(python())
  end

  # The misses the NIF counted (Py.Native.coalesce_submit/6: uncontended
  # calls that succeeded) added to a row.
  defp add_misses(row, 0), do: row

  defp add_misses({group, hits, misses, errors, active}, more),
    do: {group, hits, misses + more, errors, active}

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
    |> tap(&python_events/1)
  catch
    # The pools are being restarted: report the BEAM side only.
    :exit, _ -> %{}
  end

  # The Python side's events: what each named group counted since the
  # previous read. Two readers at once never report the same counts twice
  # (the previous read is replaced only if it is still the one this read
  # started from); counters that went down (reset_stats in Python) count
  # from zero.
  if Py.Telemetry.enabled?() do
    defp python_events(stats) do
      Enum.each(stats, fn {{:python, name}, %{hits: h, misses: m, errors: e} = now} ->
        before =
          case :ets.lookup(@python_seen, name) do
            [{_, bh, bm, be}] -> {bh, bm, be}
            [] -> nil
          end

        {dh, dm, de} =
          case before do
            {bh, bm, be} when h >= bh and m >= bm and e >= be -> {h - bh, m - bm, e - be}
            _ -> {h, m, e}
          end

        if {dh, dm, de} != {0, 0, 0} and claim(name, before, {h, m, e}) do
          meta = %{group: name, side: :python}
          rate = now.hit_rate

          if dm > 0,
            do:
              :telemetry.execute(
                [:pybridge, :coalesce, :miss],
                %{count: dm, hit_rate: rate},
                meta
              )

          if dh > 0,
            do:
              :telemetry.execute([:pybridge, :coalesce, :hit], %{count: dh, hit_rate: rate}, meta)

          if de > 0, do: :telemetry.execute([:pybridge, :coalesce, :error], %{count: de}, meta)
        end
      end)
    end

    defp claim(name, nil, {h, m, e}), do: :ets.insert_new(@python_seen, {name, h, m, e})

    defp claim(name, {bh, bm, be}, {h, m, e}) do
      :ets.select_replace(@python_seen, [{{name, bh, bm, be}, [], [{{name, h, m, e}}]}]) == 1
    end
  else
    defp python_events(_stats), do: :ok
  end

  @doc false
  # Zeroes the counters but not the gauge: executions still running end
  # later and take themselves off `active` then.
  @spec reset(term) :: :ok
  def reset(group) do
    :ets.update_element(@table, group, [{2, 0}, {3, 0}, {4, 0}])
    Py.Native.coalesce_reset_misses(group)
  end

  @doc false
  @spec to_map({term, integer, integer, integer, integer}) :: Py.Coalesce.stats()
  def to_map({_group, hits, misses, errors, active}) do
    total = hits + misses
    rate = if total == 0, do: 0.0, else: hits / total
    %{hits: hits, misses: misses, errors: errors, active: active, hit_rate: rate}
  end
end
