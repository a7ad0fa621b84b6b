defmodule Py.Dashboard.Samples do
  @moduledoc false
  # Owns the public ETS table in which `Py.Dashboard.snapshot/1` keeps, per
  # context, the last `busy_us` it read and when, so the next snapshot can
  # turn the growing counter into a busy percentage over the time between
  # the two. A context's row is made when it starts (`started/1`, so the
  # first snapshot measures since then) and dropped when it closes.
  #
  # Row: {context_ref, monotonic_us, busy_us, started_at (native monotonic)}

  use GenServer

  @table :py_dashboard_samples

  @doc false
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts) do
    :ets.new(@table, [:set, :public, :named_table, write_concurrency: true])
    {:ok, nil}
  end

  @doc false
  # A context started: its busy time is measured from now.
  @spec started(reference) :: :ok
  def started(cref) do
    :ets.insert(@table, {cref, now_us(), 0, System.monotonic_time()})
    :ok
  rescue
    ArgumentError -> :ok
  end

  @doc false
  # A context closed: forgets it, and says when it started (native
  # monotonic time; nil if unknown).
  @spec stopped(reference) :: integer | nil
  def stopped(cref) do
    case :ets.take(@table, cref) do
      [{_, _, _, started_at}] -> started_at
      [] -> nil
    end
  rescue
    ArgumentError -> nil
  end

  @doc false
  # The percentage of the time since the previous sample (or the context's
  # start) that its workers spent running calls, given `busy_us` now; it can
  # exceed 100 while overflow workers run. Records this sample.
  @spec busy_percent(reference, non_neg_integer) :: float
  def busy_percent(cref, busy_us) do
    now = now_us()

    percent =
      case :ets.lookup(@table, cref) do
        [{_, at, before, _started_at}] when now > at ->
          max(busy_us - before, 0) * 100 / (now - at)

        _ ->
          0.0
      end

    # Only a context still known (started, not closed) keeps a row.
    :ets.update_element(@table, cref, [{2, now}, {3, busy_us}])
    Float.round(percent / 1, 1)
  rescue
    ArgumentError -> 0.0
  end

  defp now_us, do: System.monotonic_time(:microsecond)
end
