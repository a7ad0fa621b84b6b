defmodule Py.Callback.Pool do
  @moduledoc false
  # The supervised home of callbacks no call waits on (from threads Python
  # started itself): the registry's ETS table, and the dispatcher process
  # the native side sends them to, which runs each in a process linked to
  # it (installed with Py.Native.callback_setup/1, withdrawn
  # when it stops, so a thread calling erlang.call during shutdown gets a
  # clear error instead of waiting).

  use Supervisor

  @spec start_link(keyword) :: Supervisor.on_start()
  def start_link(opts \\ []), do: Supervisor.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts) do
    children = [Py.Callback.Pool.Table, Py.Callback.Pool.Dispatcher]

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
  # runs each request in a process of its own (a callback may block, or
  # call Python, which may call back: none may hold up the others), linked
  # to the dispatcher: they end with it, and it traps their exits. A spawn
  # costs a few microseconds; asking a Task.Supervisor for each child was
  # a call to that supervisor per callback.
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
    :proc_lib.spawn_link(Py.Callback, :run, [request])
    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, _state) do
    Py.Native.callback_setup([])
  end
end
