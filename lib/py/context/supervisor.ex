defmodule Py.Context.Supervisor do
  @moduledoc """
  Supervises the context pools and the binding registry.

  Started by `Py.Application` once the interpreter is initialised. Its
  children:

    * `Py.Context.Registry` — tracks process bindings and dedicated contexts;
    * `Py.Context.Pools` — creates the contexts of every configured pool at
      start and closes them on shutdown.

  Configuration (read at start):

      config :pybridge,
        num_contexts: 4,        # size of the :default pool (default: schedulers online)
        pools: [io: 8],         # extra pools: name => size, or name => [size: 8, max_workers: 128]
        max_workers: 256        # threads per context for GIL-releasing code

  The same keys can be given as `start_link/1` options, which take precedence.

  ## Example

      children = [{Py.Context.Supervisor, num_contexts: 2, pools: [io: 4]}]
      Supervisor.start_link(children, strategy: :one_for_one)
  """

  use Supervisor

  @doc """
  Starts the supervisor (registered as `Py.Context.Supervisor`).

  ## Example

      {:ok, _pid} = Py.Context.Supervisor.start_link(num_contexts: 2)
  """
  @spec start_link(keyword) :: Supervisor.on_start()
  def start_link(opts \\ []) do
    Supervisor.start_link(__MODULE__, opts, name: __MODULE__)
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
