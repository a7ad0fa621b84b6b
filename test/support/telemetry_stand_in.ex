# A stand-in for the `telemetry` library (beam-telemetry/telemetry 1.x),
# compiled only when the real one is missing (no Hex here), so that the
# suite checks every `[:pybridge, ...]` event through the same calls a real
# handler sees: `attach/4`, `attach_many/4`, `detach/1`, `execute/3`,
# `span/3`, `list_handlers/1`. It keeps handlers like the library does, in a
# duplicate-bag ETS table keyed by event name and read by the emitting
# process, so that `bench/telemetry.exs` measures a comparable cost. It
# never lives in lib/: pybridge compiles its events out without the library.
unless Code.ensure_loaded?(:telemetry) do
  defmodule :telemetry do
    @moduledoc false

    @table :pybridge_telemetry_stand_in

    defp table do
      case :ets.whereis(@table) do
        :undefined -> create()
        _tid -> @table
      end
    end

    # Owned by a process of its own so the handlers outlive the attaching
    # test process, as the real library's table outlives it.
    defp create do
      parent = self()

      spawn(fn ->
        try do
          :ets.new(@table, [
            :duplicate_bag,
            :public,
            :named_table,
            keypos: 2,
            read_concurrency: true
          ])
        rescue
          ArgumentError -> :ok
        end

        send(parent, {__MODULE__, :ready})
        Process.sleep(:infinity)
      end)

      receive do
        {__MODULE__, :ready} -> @table
      end
    end

    def attach(id, event, fun, config), do: attach_many(id, [event], fun, config)

    def attach_many(id, events, fun, config) when is_function(fun, 4) do
      table = table()

      if :ets.match(table, {id, :_, :_, :_}) != [] do
        {:error, :already_exists}
      else
        :ets.insert(table, for(event <- events, do: {id, event, fun, config}))
        :ok
      end
    end

    def detach(id) do
      table = table()

      case :ets.match(table, {id, :_, :_, :_}) do
        [] ->
          {:error, :not_found}

        _ ->
          :ets.match_delete(table, {id, :_, :_, :_})
          :ok
      end
    end

    def execute(event, measurements, metadata) when is_map(measurements) and is_map(metadata) do
      handlers =
        try do
          :ets.lookup(@table, event)
        rescue
          ArgumentError -> []
        end

      Enum.each(handlers, fn {id, _, fun, config} ->
        try do
          fun.(event, measurements, metadata, config)
        catch
          # As the library does: a failing handler is detached.
          _, _ -> detach(id)
        end
      end)
    end

    def span(prefix, metadata, fun) do
      start = System.monotonic_time()

      execute(
        prefix ++ [:start],
        %{monotonic_time: start, system_time: System.system_time()},
        metadata
      )

      try do
        fun.()
      catch
        kind, reason ->
          stop = System.monotonic_time()

          execute(
            prefix ++ [:exception],
            %{duration: stop - start, monotonic_time: stop},
            Map.merge(metadata, %{kind: kind, reason: reason, stacktrace: __STACKTRACE__})
          )

          :erlang.raise(kind, reason, __STACKTRACE__)
      else
        {result, stop_metadata} ->
          stop = System.monotonic_time()

          execute(
            prefix ++ [:stop],
            %{duration: stop - start, monotonic_time: stop},
            stop_metadata
          )

          result
      end
    end

    def list_handlers(prefix) do
      table()
      |> :ets.tab2list()
      |> Enum.filter(fn {_, event, _, _} -> Enum.take(event, length(prefix)) == prefix end)
      |> Enum.map(fn {id, event, fun, config} ->
        %{id: id, event_name: event, function: fun, config: config}
      end)
    end
  end
end
