defmodule Py.Coalesce.Tables do
  @moduledoc false
  # Owns Py.Coalesce's public ETS tables for the life of the application
  # (started by Py.Application): the markers of executions run by a Flight
  # process, {{id}, nil} (whoever takes one counts the execution's end,
  # Py.Coalesce.Flight), the counters (Py.Coalesce.Stats), and the Python
  # side's counters as last read (for its telemetry events). It does
  # nothing else: callers and flights read and write the tables directly,
  # so no call goes through this process. The executions in flight, by key,
  # are in the native in-flight table (Py.Native.coalesce_*), which needs
  # no owner; it tells this process when a leader died alone with its call
  # running (native/pybridge/src/nif/coalesce/watch.rs), and the execution's
  # end is counted here.

  use GenServer

  @waiters :py_coalesce_waiters

  @doc false
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts) do
    :ets.new(@waiters, [:set, :public, :named_table, write_concurrency: true])
    # Written once per execution, read only by stats/0,1: no
    # read_concurrency, which would make every write dearer.
    :ets.new(Py.Coalesce.Stats.table(), [:set, :public, :named_table, write_concurrency: true])
    :ets.new(Py.Coalesce.Stats.python_seen_table(), [:set, :public, :named_table])

    :ok = Py.Native.coalesce_reporter(self())
    {:ok, nil}
  end

  @impl true
  # A leader died with nobody joined and its call running: the NIF ended
  # its flight and cancelled the call; the execution ended in a crash.
  def handle_info({:py_coalesce_leader_down, group}, state) do
    Py.Coalesce.Stats.finished(group, 0, true)
    {:noreply, state}
  end
end
