defmodule Py.Context.Registry do
  @moduledoc """
  Keeps track of which processes are bound to which context, and of the
  dedicated contexts started with `Py.Context.new/1`.

  A process's binding itself lives in its own process dictionary, so routing
  a call never talks to this process. The registry only does the bookkeeping
  that must survive the process: it monitors every bound process and every
  owner of a dedicated context, keeps a per-context count of bound processes
  in a protected ETS table (read directly by `Py.Context.info/1`), forgets
  bindings of processes that exit, and closes a dedicated context when its
  owner exits.

  ## Example

      ctx = Py.context(1)
      before = Py.Context.Registry.bound_count(:default, 1)
      :ok = Py.Context.bind(ctx)
      true = Py.Context.Registry.bound_count(:default, 1) == before + 1
  """

  use GenServer

  @table __MODULE__
  # pid (Py.Context.pid/1) => dedicated context, read by Py.Context.from_pid/1.
  @pids Module.concat(__MODULE__, Pids)

  @doc """
  Starts the registry (registered as `Py.Context.Registry`).

  Started by `Py.Context.Supervisor`, once per VM.

  ## Example

      # With the :pybridge application running, the registry exists already:
      {:error, {:already_started, _pid}} = Py.Context.Registry.start_link([])
  """
  @spec start_link(term) :: GenServer.on_start()
  def start_link(_opts \\ []) do
    GenServer.start_link(__MODULE__, [], name: __MODULE__)
  end

  @doc """
  How many live processes are bound to context `index` of `pool`.

  ## Example

      0 = Py.Context.Registry.bound_count(:no_such_pool, 1)
  """
  @spec bound_count(atom, pos_integer) :: non_neg_integer
  def bound_count(pool, index) do
    case :ets.lookup(@table, {pool, index}) do
      [{_, n}] -> n
      [] -> 0
    end
  rescue
    # The table is gone: the registry is not running, so nothing is bound.
    ArgumentError -> 0
  end

  @doc false
  @spec bind(Py.Context.t()) :: :ok
  def bind(%Py.Context{pool: pool, index: index}),
    do: GenServer.call(__MODULE__, {:bind, {pool, index}})

  @doc false
  @spec unbind() :: :ok
  def unbind, do: GenServer.call(__MODULE__, :unbind)

  @doc false
  @spec new_context(Py.Context.Pools.native_opts()) ::
          {:ok, Py.Context.t()} | {:error, {atom, term, list}}
  def new_context(native_opts), do: GenServer.call(__MODULE__, {:new, native_opts}, :infinity)

  @doc false
  @spec close_context(Py.Context.t()) :: :ok
  def close_context(ctx), do: GenServer.call(__MODULE__, {:close, ctx}, :infinity)

  @doc """
  The dedicated contexts currently open (started with `Py.Context.new/1`).

  ## Example

      ctx = Py.Context.new()
      true = ctx in Py.Context.Registry.dedicated()
  """
  @spec dedicated() :: [Py.Context.t()]
  def dedicated, do: GenServer.call(__MODULE__, :dedicated)

  @doc false
  # The open dedicated context whose process is `pid`, or nil.
  @spec dedicated_by_pid(pid) :: Py.Context.t() | nil
  def dedicated_by_pid(pid) do
    case :ets.lookup(@pids, pid) do
      [{_, ctx}] -> ctx
      [] -> nil
    end
  rescue
    ArgumentError -> nil
  end

  ## Server

  @impl true
  def init([]) do
    Process.flag(:trap_exit, true)
    :ets.new(@table, [:named_table, :protected, :set, read_concurrency: true])
    :ets.new(@pids, [:named_table, :protected, :set, read_concurrency: true])
    # binders: pid => {monitor, {pool, index}}; owned: monitor => context
    {:ok, %{binders: %{}, owned: %{}}}
  end

  @impl true
  def handle_call({:bind, key}, {pid, _}, %{binders: binders} = state) do
    binders =
      case binders do
        %{^pid => {_mref, ^key}} ->
          binders

        %{^pid => {mref, old}} ->
          count(old, -1)
          count(key, +1)
          Map.put(binders, pid, {mref, key})

        %{} ->
          count(key, +1)
          Map.put(binders, pid, {Process.monitor(pid), key})
      end

    {:reply, :ok, %{state | binders: binders}}
  end

  def handle_call(:unbind, {pid, _}, state), do: {:reply, :ok, drop_binder(state, pid, true)}

  def handle_call({:new, native_opts}, {pid, _}, %{owned: owned} = state) do
    index = :erlang.unique_integer([:positive, :monotonic])

    try do
      Py.Native.context_new(:dedicated, index, native_opts)
    catch
      kind, reason -> {:reply, {:error, {kind, reason, __STACKTRACE__}}, state}
    else
      ref ->
        ctx = %Py.Context{pool: :dedicated, index: index, ref: ref, pid: Py.Context.start_pid()}
        :ets.insert(@pids, {ctx.pid, ctx})
        Py.Context.Pools.started(ctx)
        Py.Context.Pools.apply_imports(ctx)
        owned = Map.put(owned, Process.monitor(pid), ctx)
        {:reply, {:ok, ctx}, %{state | owned: owned}}
    end
  end

  def handle_call({:close, ctx}, _from, %{owned: owned} = state) do
    case Enum.find(owned, fn {_mref, c} -> c == ctx end) do
      {mref, ctx} ->
        Process.demonitor(mref, [:flush])
        close(ctx)
        {:reply, :ok, %{state | owned: Map.delete(owned, mref)}, {:continue, :collect}}

      nil ->
        {:reply, :ok, state}
    end
  end

  def handle_call(:dedicated, _from, state), do: {:reply, Map.values(state.owned), state}

  @impl true
  def handle_info({:DOWN, mref, :process, pid, _reason}, state) do
    state =
      case state.binders do
        %{^pid => {^mref, _}} -> drop_binder(state, pid, false)
        _ -> state
      end

    case Map.pop(state.owned, mref) do
      {nil, _} ->
        {:noreply, state}

      {ctx, owned} ->
        close(ctx)
        {:noreply, %{state | owned: owned}, {:continue, :collect}}
    end
  end

  def handle_info(_msg, state), do: {:noreply, state}

  # A closed context's native handle lives until no process references it;
  # this process held it last, and an idle process is not garbage-collected
  # on its own. Collecting lets the context's resources (a sub-interpreter,
  # its memory) go now.
  @impl true
  def handle_continue(:collect, state) do
    :erlang.garbage_collect()
    {:noreply, state}
  end

  @impl true
  def terminate(_reason, state) do
    Enum.each(state.owned, fn {_mref, ctx} -> close(ctx) end)
  end

  defp drop_binder(%{binders: binders} = state, pid, demonitor?) do
    case Map.pop(binders, pid) do
      {nil, _} ->
        state

      {{mref, key}, binders} ->
        if demonitor?, do: Process.demonitor(mref, [:flush])
        count(key, -1)
        %{state | binders: binders}
    end
  end

  defp count(key, delta) do
    case :ets.update_counter(@table, key, delta, {key, 0}) do
      0 -> :ets.delete(@table, key)
      _ -> true
    end
  end

  defp close(ctx) do
    :ets.delete(@pids, ctx.pid)
    Py.Context.Pools.close_context(ctx)
  end
end
