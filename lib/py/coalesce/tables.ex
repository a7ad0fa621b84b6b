defmodule Py.Coalesce.Tables do
  @moduledoc false
  # Owns Py.Coalesce's two public ETS tables for the life of the application
  # (started by Py.Application): the in-flight table, {{group, key}, flight_pid},
  # and the counters (Py.Coalesce.Stats). It does nothing else: callers and
  # flights read and write the tables directly, so no call goes through this
  # process.

  use GenServer

  @flights :py_coalesce_flights

  @doc false
  @spec flights() :: atom
  def flights, do: @flights

  @doc false
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts) do
    concurrency = [:public, :named_table, read_concurrency: true, write_concurrency: true]
    :ets.new(@flights, [:set | concurrency] ++ [decentralized_counters: true])
    :ets.new(Py.Coalesce.Stats.table(), [:set | concurrency])
    {:ok, nil}
  end
end
