defmodule Py.LiveDashboard.Rows do
  @moduledoc false
  # What `Py.LiveDashboard` shows, computed from `Py.Dashboard.snapshot/1`
  # without Phoenix, so the normal suite tests it: the rows of each table,
  # busy % from two snapshots, search/sort/limit as `live_table` asks, and
  # SharedDict keys cut to 80 bytes (values are never in a snapshot).

  @key_bytes 80

  @doc false
  # The snapshot turned into the page's rows and summary.
  @spec normalize(map) :: map
  def normalize(snapshot) do
    contexts = Enum.map(list(snapshot, :contexts), &context_row/1)
    dicts = list(snapshot, :shared_dicts)

    %{
      node: Map.get(snapshot, :node),
      taken_at: Map.get(snapshot, :taken_at),
      contexts: contexts,
      calls: contexts |> Enum.map(& &1.calls) |> Enum.sum(),
      in_flight: contexts |> Enum.map(& &1.in_flight) |> Enum.sum(),
      queued: contexts |> Enum.map(& &1.queue) |> Enum.sum(),
      pools: contexts |> Enum.frequencies_by(& &1.pool) |> Enum.sort(),
      coalesce: Enum.map(list(snapshot, :coalescing), &coalesce_row/1),
      shared_dicts: Enum.map(dicts, &dict_row/1),
      expiries: dicts |> Enum.flat_map(&expiry_rows/1) |> Enum.sort_by(& &1.at_ms, :desc)
    }
  end

  defp list(snapshot, key) do
    case Map.get(snapshot, key) do
      list when is_list(list) -> list
      _ -> []
    end
  end

  defp context_row(ctx) do
    %{
      pool: Map.get(ctx, :pool),
      index: Map.get(ctx, :index),
      mode: Map.get(ctx, :mode),
      calls: Map.get(ctx, :calls_total, 0),
      errors: Map.get(ctx, :errors_total, 0),
      in_flight: Map.get(ctx, :in_flight, 0),
      queue: Map.get(ctx, :queue_length, 0),
      bound: Map.get(ctx, :bound_processes, 0),
      envs: Map.get(ctx, :namespaces, 0),
      busy_us: Map.get(ctx, :busy_us, 0),
      busy: Map.get(ctx, :busy_percent)
    }
  end

  defp coalesce_row(group) do
    %{
      group: Map.get_lazy(group, :label, fn -> group |> Map.get(:group) |> label() end),
      side: Map.get(group, :side),
      hits: Map.get(group, :hits, 0),
      misses: Map.get(group, :misses, 0),
      errors: Map.get(group, :errors, 0),
      active: Map.get(group, :active, 0),
      hit_rate: Map.get(group, :hit_rate)
    }
  end

  defp dict_row(dict) do
    %{
      name: dict_name(dict),
      backend: Map.get(dict, :backend),
      size: Map.get(dict, :size, 0),
      puts: Map.get(dict, :puts, 0),
      deletes: Map.get(dict, :deletes, 0),
      expired: Map.get(dict, :expired_total, 0)
    }
  end

  defp expiry_rows(dict) do
    name = dict_name(dict)

    for expiry <- Map.get(dict, :recent_expiries, []) do
      {key, at} = expiry_pair(expiry)
      %{dict: name, key: key, at: format_time(at), at_ms: at}
    end
  end

  # The snapshot cuts keys already (`truncated: true`); cut again here so
  # the page never shows more than 80 bytes whatever it is given.
  defp expiry_pair(%{key: key, truncated: true} = e),
    do: {truncate_key(key) |> String.trim_trailing("…") |> Kernel.<>("…"), e.at}

  defp expiry_pair(%{key: key} = e), do: {truncate_key(key), e.at}
  defp expiry_pair({key, at}), do: {truncate_key(key), at}

  defp dict_name(dict) do
    case Map.get(dict, :label) || Map.get(dict, :name) do
      nil -> "#" <> to_string(Map.get(dict, :id, "?"))
      name -> label(name)
    end
  end

  defp label(value) when is_binary(value), do: value
  defp label(value), do: inspect(value)

  @doc false
  # A key as shown: a UTF-8 binary as is, anything else inspected; past 80
  # bytes cut on a character boundary at or before byte 80, "…" marking it.
  @spec truncate_key(term) :: String.t()
  def truncate_key(key) do
    text = if is_binary(key) and String.valid?(key), do: key, else: inspect(key)

    if byte_size(text) <= @key_bytes do
      text
    else
      cut(binary_part(text, 0, @key_bytes)) <> "…"
    end
  end

  # Drops a character cut in the middle at the end of a prefix.
  defp cut(prefix) do
    if String.valid?(prefix),
      do: prefix,
      else: cut(binary_part(prefix, 0, byte_size(prefix) - 1))
  end

  @doc false
  # Busy % of each context when the snapshot does not carry it: the growth
  # of its busy time since `previous` over the wall time between the two
  # snapshots; nil on the first one.
  @spec add_busy_percent(map, map | nil) :: map
  def add_busy_percent(snapshot, previous) do
    {before, elapsed_us} =
      case {previous, snapshot.taken_at} do
        {%{taken_at: t0, contexts: contexts}, t1}
        when is_integer(t0) and is_integer(t1) and t1 > t0 ->
          {Map.new(contexts, &{{&1.pool, &1.index}, &1.busy_us}), (t1 - t0) * 1000}

        _ ->
          {%{}, nil}
      end

    contexts =
      Enum.map(snapshot.contexts, fn ctx ->
        busy =
          case {ctx.busy, Map.get(before, {ctx.pool, ctx.index})} do
            {busy, _} when is_number(busy) -> busy
            {_, b0} when is_integer(b0) -> max(ctx.busy_us - b0, 0) * 100 / elapsed_us
            _ -> nil
          end

        %{ctx | busy: busy && min(busy / 1, 100.0)}
      end)

    %{snapshot | contexts: contexts}
  end

  @doc false
  # `live_table`'s row fetch: rows whose `searchable` fields contain the
  # search text (case-insensitive), sorted by the chosen column, the first
  # `limit` of them, with the number that matched.
  @spec fetch(
          [map],
          [atom],
          %{search: String.t() | nil, sort_by: atom, sort_dir: :asc | :desc, limit: pos_integer}
        ) :: {[map], non_neg_integer}
  def fetch(rows, searchable, params) do
    %{search: search, sort_by: sort_by, sort_dir: sort_dir, limit: limit} = params

    rows =
      if search in [nil, ""] do
        rows
      else
        needle = String.downcase(search)

        Enum.filter(rows, fn row ->
          Enum.any?(searchable, &(row |> Map.get(&1) |> text() |> String.contains?(needle)))
        end)
      end

    sorted = Enum.sort_by(rows, &sort_key(Map.get(&1, sort_by)), sort_dir)
    {Enum.take(sorted, limit), length(rows)}
  end

  # nil (not measured yet) sorts below every number, numbers below text.
  defp sort_key(nil), do: {0, 0}
  defp sort_key(value) when is_number(value), do: {1, value}
  defp sort_key(value), do: {2, text(value)}

  defp text(value) when is_binary(value), do: String.downcase(value)
  defp text(value) when is_atom(value), do: value |> Atom.to_string() |> String.downcase()
  defp text(value), do: value |> inspect() |> String.downcase()

  @doc false
  @spec format_percent(number | nil) :: String.t()
  def format_percent(nil), do: "–"
  def format_percent(value), do: :erlang.float_to_binary(value / 1, decimals: 1)

  defp format_time(ms) when is_integer(ms) do
    ms
    |> DateTime.from_unix!(:millisecond)
    |> DateTime.to_iso8601()
  end

  defp format_time(_), do: "?"
end
