defmodule Py.Coalesce.Tables do
  @moduledoc false
  # Owns Py.Coalesce's public ETS tables for the life of the application
  # (started by Py.Application): the in-flight table, {{group, key}, flight}
  # (see Py.Coalesce), the waiters of executions led by a caller,
  # {{id, pid, tag}} beside each execution's marker (Py.Coalesce.Leader,
  # Py.Coalesce.Flight), the
  # counters (Py.Coalesce.Stats), and the Python side's counters as last
  # read (for its telemetry events). It does nothing else: callers and
  # flights read and write the tables directly, so no call goes through this
  # process.

  use GenServer

  @flights :py_coalesce_flights
  @waiters :py_coalesce_waiters

  @doc false
  @spec flights() :: atom
  def flights, do: @flights

  @doc false
  @spec waiters() :: atom
  def waiters, do: @waiters

  @doc false
  # The tables' ids, {flights, waiters, stats}, for the hot path of a
  # coalesced call: an operation on a named table first looks its name up,
  # which costs about as much as the operation itself.
  @spec tids() :: {:ets.tid(), :ets.tid(), :ets.tid()}
  def tids, do: :persistent_term.get(__MODULE__)

  @doc false
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts) do
    concurrency = [:public, :named_table, read_concurrency: true, write_concurrency: true]

    :ets.new(@flights, [
      :set,
      :public,
      :named_table,
      write_concurrency: true,
      decentralized_counters: true
    ])

    # Ordered, so that the waiters of one execution, {id, _, _}, are one
    # range of keys.
    :ets.new(@waiters, [:ordered_set | concurrency])
    # Written once per execution, read only by stats/0,1: no
    # read_concurrency, which would make every write dearer.
    :ets.new(Py.Coalesce.Stats.table(), [:set, :public, :named_table, write_concurrency: true])
    :ets.new(Py.Coalesce.Stats.python_seen_table(), [:set, :public, :named_table])

    tids =
      {:ets.whereis(@flights), :ets.whereis(@waiters), :ets.whereis(Py.Coalesce.Stats.table())}

    # Replaced (a global garbage collection) only when this process restarts.
    if :persistent_term.get(__MODULE__, nil) != tids, do: :persistent_term.put(__MODULE__, tids)
    {:ok, nil}
  end
end
