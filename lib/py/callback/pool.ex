defmodule Py.Callback.Pool do
  @moduledoc false
  # The supervised home of callbacks no call waits on (from threads Python
  # started itself): the registry's ETS table, a Task.Supervisor whose
  # tasks run those callbacks, and the dispatcher process the native side
  # sends them to (installed with Py.Native.callback_setup/1, withdrawn
  # when it stops, so a thread calling erlang.call during shutdown gets a
  # clear error instead of waiting).

  use Supervisor

  @spec start_link(keyword) :: Supervisor.on_start()
  def start_link(opts \\ []), do: Supervisor.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts) do
    children = [
      Py.Callback.Pool.Table,
      {Task.Supervisor, name: Py.Callback.Tasks},
      Py.Callback.Pool.Dispatcher
    ]

    Supervisor.init(children, strategy: :rest_for_one)
  end
end

defmodule Py.Callback.Pool.Table do
  @moduledoc false
  # Owns the registry's table (name => what to call); reads and writes go
  # to the table directly.
  use GenServer

  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(_opts), do: GenServer.start_link(__MODULE__, [], name: __MODULE__)

  @impl true
  def init([]) do
    table = Py.Callback.table()

    if :ets.whereis(table) == :undefined do
      :ets.new(table, [:named_table, :public, :set, read_concurrency: true])
    end

    {:ok, nil}
  end
end

defmodule Py.Callback.Pool.Dispatcher do
  @moduledoc false
  # Receives `{:"$pybridge_callback", request}` from the native side and
  # runs each request in a task of Py.Callback.Tasks (a callback may block,
  # or call Python, which may call back: none may hold up the others).
  use GenServer

  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(_opts), do: GenServer.start_link(__MODULE__, [], name: __MODULE__)

  @impl true
  def init([]) do
    Process.flag(:trap_exit, true)
    :ok = Py.Native.callback_setup([self()])
    {:ok, nil}
  end

  @impl true
  def handle_info({:"$pybridge_callback", request}, state) do
    case Task.Supervisor.start_child(Py.Callback.Tasks, Py.Callback, :run, [request]) do
      {:ok, _pid} -> :ok
      # Not started (shutting down): the request is dropped with this
      # message, and its reply slot tells Python so.
      _ -> :ok
    end

    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, _state) do
    Py.Native.callback_setup([])
  end
end
