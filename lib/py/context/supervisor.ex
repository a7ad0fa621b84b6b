defmodule Py.Context.Supervisor do
  @moduledoc """
  Supervises the context pools and the binding registry.

  Started by `Py.Application` once the interpreter is initialised. Its
  children:

    * `Py.Context.Registry` — tracks process bindings and dedicated contexts;
    * `Py.Context.Pools` — creates the contexts of every configured pool at
      start and closes them on shutdown.

  It is part of the `:pybridge` application, which starts it (registered
  under its module name) once Python runs: do not add it to your own
  supervision tree. Configure it instead, in `config/config.exs` (read when
  the application starts):

      config :pybridge,
        num_contexts: 4,           # size of the :default pool (default: schedulers online)
        pools: [                   # extra pools: name: size, or name: [size: ...]
          io: 8,
          compute: [size: 2, max_workers: 4, mode: :subinterpreter]
        ],
        max_workers: 256,          # threads per context for GIL-releasing code
        context_mode: :main        # or :subinterpreter, for every pool

  To run the pools with other settings without restarting the application,
  stop them with `stop_pools/0` and start them again with `start_pools/1`,
  whose options override these keys.

  ## Example

      # With the :pybridge application running:
      pid = Process.whereis(Py.Context.Supervisor)
      [{Py.Context.Pools, _, :worker, _}, {Py.Context.Registry, _, :worker, _}] =
        Supervisor.which_children(pid)
  """

  use Supervisor

  @doc """
  Starts the supervisor (registered as `Py.Context.Supervisor`); `opts`
  override the application environment (`:num_contexts`, `:pools`,
  `:max_workers`, `:context_mode`). The `:pybridge` application calls it.

  ## Example

      # With the :pybridge application running, the supervisor exists already:
      {:error, {:already_started, pid}} = Py.Context.Supervisor.start_link(num_contexts: 2)
      ^pid = Process.whereis(Py.Context.Supervisor)
  """
  @spec start_link(keyword) :: Supervisor.on_start()
  def start_link(opts \\ []) do
    Supervisor.start_link(__MODULE__, opts, name: __MODULE__)
  end

  @doc """
  Stops every context pool (their contexts close, their processes exit with
  `:shutdown`). Returns `:ok`, also when they were stopped already. Calls
  without an explicit context raise `ArgumentError` until `start_pools/1`.

  ## Example

      :ok = Py.Context.Supervisor.stop_pools()
      false = Py.Context.pool_started?(:default)
  """
  @spec stop_pools() :: :ok
  def stop_pools do
    case Supervisor.terminate_child(__MODULE__, Py.Context.Pools) do
      :ok -> :ok
      {:error, :not_found} -> :ok
    end
  end

  @doc """
  Starts the context pools stopped by `stop_pools/0`, with `opts` (the keys of
  `start_link/1`) over the application environment. When they are running
  already, nothing changes. Returns the contexts of the `:default` pool.

  ## Example

      {:ok, [%Py.Context{} | _]} = Py.Context.Supervisor.start_pools(num_contexts: 2)
  """
  @spec start_pools(keyword) :: {:ok, [Py.Context.t()]} | {:error, term}
  def start_pools(opts \\ []) do
    result =
      if Py.Context.pool_started?(:default) do
        :ok
      else
        # The child keeps its new options if the supervisor restarts it.
        _ = Supervisor.delete_child(__MODULE__, Py.Context.Pools)

        case Supervisor.start_child(__MODULE__, {Py.Context.Pools, opts}) do
          {:ok, _pid} -> :ok
          {:error, {:already_started, _}} -> :ok
          {:error, reason} -> {:error, reason}
        end
      end

    with :ok <- result, do: {:ok, Py.Context.contexts(:default)}
  end

  @impl true
  def init(opts) do
    children = [
      Py.Context.Registry,
      {Py.Context.Pools, opts}
    ]

    Supervisor.init(children, strategy: :one_for_one)
  end
end
