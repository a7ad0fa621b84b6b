if Py.Telemetry.enabled?() do
  defmodule Py.Telemetry.Relay do
    @moduledoc false
    # Turns what happens outside BEAM processes into :telemetry events,
    # and only while a handler is attached to them; and tells calls whether
    # anyone listens to their span (Py.Telemetry.calls_watched?/0):
    #
    #   * SharedDict changes happen on any thread (schedulers, Python
    #     threads, the sweeper); the native library hands them to its events
    #     thread, which sends them here while switched on
    #     (Native.shared_dict_telemetry/1): {:py_telemetry, :shared_dict, id,
    #     name, backend, [{kind, key | nil}]};
    #   * the Python side's coalescing is counted inside each interpreter:
    #     reading it (Py.Coalesce.Stats.python/0, which emits the events)
    #     costs a Python call per interpreter, so it is read every poll only
    #     while someone listens.
    #
    # Every `telemetry_poll_ms` (1 s by default) it looks at the attached
    # handlers and switches all three on or off; `refresh/0` does it at once.

    use GenServer

    @shared_dict_events %{put: :put, delete: :delete, expire: :expired}

    @doc false
    @spec start_link(keyword) :: GenServer.on_start()
    def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

    @doc false
    @spec refresh() :: :ok
    def refresh, do: GenServer.call(__MODULE__, :refresh)

    @impl true
    def init(_opts) do
      # terminate/2 switches everything off when the application stops.
      Process.flag(:trap_exit, true)
      interval = Application.get_env(:pybridge, :telemetry_poll_ms, 1_000)
      state = %{interval: interval, shared_dict: false}
      {:ok, poll(state), {:continue, :schedule}}
    end

    @impl true
    def handle_continue(:schedule, state) do
      Process.send_after(self(), :poll, state.interval)
      {:noreply, state}
    end

    @impl true
    def handle_call(:refresh, _from, state), do: {:reply, :ok, poll(state)}

    @impl true
    def handle_info(:poll, state), do: {:noreply, poll(state), {:continue, :schedule}}

    def handle_info({:py_telemetry, :shared_dict, id, name, backend, events}, state) do
      Enum.each(events, fn {kind, key} ->
        metadata = %{id: id, name: name, backend: backend}
        metadata = if key == nil, do: metadata, else: Map.put(metadata, :key, key)

        :telemetry.execute(
          [:pybridge, :shared_dict, Map.fetch!(@shared_dict_events, kind)],
          %{count: 1},
          metadata
        )
      end)

      {:noreply, state}
    end

    def handle_info(_other, state), do: {:noreply, state}

    @impl true
    def terminate(_reason, state) do
      Py.Telemetry.watch_calls(false)
      if state.shared_dict, do: Py.Native.shared_dict_telemetry(false)
      :ok
    end

    defp poll(state) do
      Py.Telemetry.watch_calls(
        :telemetry.list_handlers([:pybridge, :call]) != [] or
          :telemetry.list_handlers([:pybridge, :overloaded]) != []
      )

      shared_dict? = :telemetry.list_handlers([:pybridge, :shared_dict]) != []

      if shared_dict? != state.shared_dict do
        Py.Native.shared_dict_telemetry(shared_dict?)
      end

      if :telemetry.list_handlers([:pybridge, :coalesce]) != [] do
        # Emits the Python side's events (Py.Coalesce.Stats, the one place).
        Py.Coalesce.Stats.python()
      end

      %{state | shared_dict: shared_dict?}
    end
  end
end
