defmodule Py.Context do
  @moduledoc """
  Contexts: the executors Python calls run on, and how processes pick one.

  A context is an executor with its own OS thread(s), Python thread state and
  namespaces. Contexts come in pools: `:default` always (its size is
  `config :pybridge, num_contexts: n`, by default the number of online
  schedulers), and any extra pools from `config :pybridge, pools: [io: 8]`.

  Each BEAM process gets its own Python namespace in every context it uses
  (its *process namespace*): what `Py.exec/2` assigns stays there for that
  process's later calls, other processes never see it, and it is freed when
  the process exits.

  Which context a call without an explicit context runs on:

    1. the context bound to the calling process with `bind/1` or
       `Py.with_context/2`, if any;
    2. otherwise one context of the `:default` pool chosen by hashing the
       caller's pid: the same process always lands on the same context, and
       different processes spread over the pool.

  `Py.context/0,1,2` return contexts; every call also accepts a context as its
  first argument (`Py.eval(ctx, code)`).

  `new/1` starts a *dedicated* context (pool `:dedicated`) owned by the calling
  process and closed when that process exits.

  ## Example

      ctx = Py.context(1)
      :ok = Py.exec(ctx, "counter = 0")
      :ok = Py.exec(ctx, "counter += 1")
      {:ok, 1} = Py.eval(ctx, "counter")
  """

  alias Py.Context.{Pools, Registry}

  @enforce_keys [:pool, :index, :ref]
  defstruct [:pool, :index, :ref, :pid]

  @typedoc """
  A context handle. `ref` is the NIF resource; `pid` is a process that lives
  exactly as long as the context (see `pid/1`). The handle is only valid on
  its node.
  """
  @type t :: %__MODULE__{pool: atom, index: pos_integer, ref: reference(), pid: pid | nil}

  @typedoc "The map returned by `info/1` (every key is described there)."
  @type info :: %{
          required(:pool) => atom,
          required(:index) => pos_integer,
          required(:mode) => mode,
          required(:bound_processes) => non_neg_integer,
          required(:calls_total) => non_neg_integer,
          required(:errors_total) => non_neg_integer,
          required(:cancelled_total) => non_neg_integer,
          required(:in_flight) => non_neg_integer,
          required(:queue_length) => non_neg_integer,
          required(:busy_us) => non_neg_integer,
          required(:compiles_total) => non_neg_integer,
          required(:namespaces) => non_neg_integer,
          required(:workers) => pos_integer,
          required(:idle_workers) => non_neg_integer,
          required(:max_queue) => pos_integer,
          required(:overloaded_total) => non_neg_integer
        }

  @typedoc "An option of `new/1`."
  @type new_option ::
          {:max_workers, pos_integer}
          | {:mode, mode}
          | {:max_queue, pos_integer}
          | {:overload, :error | :wait}

  @typedoc "Where a context runs Python: the main interpreter or a sub-interpreter of its own."
  @type mode :: :main | :subinterpreter

  @bound_key :"$py_context"
  @routes_key {__MODULE__, :pool_routes}

  @doc """
  Binds `ctx` to the calling process: from now on its calls without an
  explicit context run on `ctx`. Replaces any previous binding.

  The binding is registered with `Py.Context.Registry`, which counts it in
  `info/1` (`:bound_processes`) and forgets it when the process exits.

  ## Example

      :ok = Py.Context.bind(Py.context(2))
      :ok = Py.exec("x = 42")
      {:ok, 42} = Py.eval(Py.context(2), "x")
      :ok = Py.Context.unbind()
  """
  @spec bind(t) :: :ok
  def bind(%__MODULE__{} = ctx) do
    case Process.get(@bound_key) do
      ^ctx ->
        :ok

      _ ->
        :ok = Registry.bind(ctx)
        Process.put(@bound_key, ctx)
        :ok
    end
  end

  def bind(other),
    do: Py.Options.invalid!("context for Py.Context.bind/1", "a %Py.Context{}", other)

  @doc """
  Removes the calling process's binding, if any: its calls go back to the
  routed context. Returns `:ok` even when the process was not bound.

  ## Example

      :ok = Py.Context.unbind()
  """
  @spec unbind() :: :ok
  def unbind do
    case Process.delete(@bound_key) do
      nil -> :ok
      _ctx -> Registry.unbind()
    end
  end

  @doc """
  Returns the context bound to the calling process, or `nil`.

  ## Example

      nil = Py.Context.bound()
  """
  @spec bound() :: t | nil
  def bound, do: Process.get(@bound_key)

  @doc """
  Starts a dedicated context owned by the calling process.

  Raises `Py.Error` (type `:context_failed`) when the context cannot be
  made, e.g. `mode: :subinterpreter` on Python older than 3.12.

  The context is not part of any pool (its `pool` is `:dedicated`) and is
  closed when the owner exits or calls `close/1`; calls on a closed context
  return `{:error, %Py.Error{type: :closed}}`.

  Options:

    * `:max_workers` — how many OS threads the context may use to overlap
      Python code that releases the GIL (default: the `:max_workers`
      application setting, else 256).
    * `:mode` — `:main` runs the context in the main interpreter, shared
      with the other contexts; `:subinterpreter` gives it a sub-interpreter
      of its own, with its own GIL, so it runs Python in parallel with the
      others (CPython 3.12+; C extensions must support sub-interpreters).
      Default: the `:context_mode` application setting, else `:main`. See
      the "Contexts" guide.
    * `:max_queue` — how many calls may wait in the context's queue
      (default: the `:max_queue` application setting, else 10,000).
    * `:overload` — what a call beyond `:max_queue` gets: `:error` (an
      `:overloaded` error at once, the default: the `:overload` application
      setting, else `:error`) or `:wait` (it waits for room, up to its
      timeout). See "Overload" in the "Contexts" guide.

  ## Example

      ctx = Py.Context.new()
      :ok = Py.exec(ctx, "import json")
      {:ok, "[1]"} = Py.call(ctx, :json, :dumps, [[1]])
  """
  @spec new([new_option]) :: t
  def new(opts \\ []) do
    opts = Py.Options.validate!(opts, Pools.context_schema(), "Py.Context.new/1")

    native_opts = %{
      max_workers: Keyword.get_lazy(opts, :max_workers, &Pools.default_max_workers/0),
      mode: Keyword.get_lazy(opts, :mode, &Pools.default_mode/0),
      max_queue: Keyword.get_lazy(opts, :max_queue, &Pools.default_max_queue/0),
      overload: Keyword.get_lazy(opts, :overload, &Pools.default_overload/0)
    }

    case Registry.new_context(native_opts) do
      {:ok, ctx} ->
        ctx

      # The native layer raises a message when it cannot make the context
      # (no sub-interpreters before Python 3.12, no thread for the executor).
      {:error, {:error, message, _stack}} when is_binary(message) ->
        raise Py.Error, type: :context_failed, message: "cannot start a context: " <> message

      {:error, {kind, reason, stack}} ->
        :erlang.raise(kind, reason, stack)
    end
  end

  @doc """
  Closes a dedicated context started with `new/1` before its owner exits.

  Pool contexts are owned by the application and cannot be closed this way
  (`ArgumentError`). Closing an already closed context returns `:ok`.

  Closing stops the context's threads at once. A sub-interpreter context's
  interpreter ends when nothing refers to it any more: no handle on the
  context is left in any process, and none of its `%Py.Object{}`s.

  ## Example

      ctx = Py.Context.new()
      :ok = Py.Context.close(ctx)
  """
  @spec close(t) :: :ok
  def close(%__MODULE__{pool: :dedicated, ref: ref} = ctx) do
    :ok = Registry.close_context(ctx)
    :ok = Py.Call.forget_namespace(ref)
    if Process.get(@bound_key) == ctx, do: unbind()
    :ok
  end

  def close(ctx) do
    Py.Options.invalid!(
      "context for Py.Context.close/1",
      "a dedicated context from Py.Context.new/1 (pool contexts belong to the application)",
      ctx
    )
  end

  @doc """
  The number of contexts in `pool`.

  ## Example

      n = Py.Context.num_contexts()
      ^n = length(Py.Context.contexts(:default))
  """
  @spec num_contexts(atom) :: non_neg_integer
  def num_contexts(pool \\ :default), do: tuple_size(pool!(pool))

  @doc """
  All contexts of `pool`, in index order.

  ## Example

      [%Py.Context{index: 1} | _] = Py.Context.contexts(:default)
  """
  @spec contexts(atom) :: [t]
  def contexts(pool \\ :default), do: Tuple.to_list(pool!(pool))

  @doc """
  Every live context: the contexts of every started pool, in pool and index
  order, then the open dedicated contexts (`new/1`) of all processes. For
  listing them (with `info/1`) on a dashboard.

  ## Example

      ctx = Py.Context.new()
      true = ctx in Py.Context.all()
      true = Py.context(1) in Py.Context.all()
  """
  @spec all() :: [t]
  def all do
    pooled = Enum.flat_map(pools(), &contexts/1)
    dedicated = Enum.sort_by(Registry.dedicated(), & &1.index)
    pooled ++ dedicated
  end

  @doc """
  Whether `pool` has been started.

  ## Example

      true = Py.Context.pool_started?(:default)
      false = Py.Context.pool_started?(:no_such_pool)
  """
  @spec pool_started?(atom) :: boolean
  def pool_started?(pool) when is_atom(pool), do: Pools.lookup(pool) != nil

  @doc """
  The names of the started pools.

  ## Example

      [:default | _] = Py.Context.pools()
  """
  @spec pools() :: [atom]
  def pools, do: Pools.names()

  @doc """
  The process that stands for `ctx`: it lives exactly as long as the context
  and exits with reason `:shutdown` when the context is closed (a dedicated
  context by `close/1` or its owner's exit, a pool context when its pool
  stops). Monitor it to learn that a context went away; `from_pid/1` turns it
  back into the context. It runs no Python: calls never go through it, and
  killing it does not close the context.

  ## Example

      ctx = Py.Context.new()
      mref = Process.monitor(Py.Context.pid(ctx))
      :ok = Py.Context.close(ctx)
      receive do
        {:DOWN, ^mref, :process, _, :shutdown} -> :closed
      end
  """
  @spec pid(t) :: pid
  def pid(%__MODULE__{pid: pid}) when is_pid(pid), do: pid

  @doc """
  The context whose process (`pid/1`) is `pid`, or `nil` when `pid` is not
  the process of an open context of this node.

  Constant time: a `:persistent_term` read for pool contexts, an ETS read for
  dedicated ones.

  ## Example

      ctx = Py.context(1)
      ^ctx = Py.Context.from_pid(Py.Context.pid(ctx))
      nil = Py.Context.from_pid(self())
  """
  @spec from_pid(pid) :: t | nil
  def from_pid(pid) when is_pid(pid) do
    case :persistent_term.get({__MODULE__, pid}, nil) do
      nil -> Registry.dedicated_by_pid(pid)
      ctx -> ctx
    end
  end

  @doc false
  # Starts the process standing for a context being created (see `pid/1`),
  # linked to the caller, which owns the context and ends the process with
  # `stop_pid/1` when it closes the context.
  @spec start_pid() :: pid
  def start_pid, do: spawn_link(fn -> :timer.sleep(:infinity) end)

  @doc false
  @spec stop_pid(t) :: :ok
  def stop_pid(%__MODULE__{pid: pid}) when is_pid(pid) do
    Process.unlink(pid)
    Process.exit(pid, :shutdown)
    :ok
  end

  def stop_pid(%__MODULE__{}), do: :ok

  @doc """
  Routes calls of `module` (every function) to `pool`: from now on
  `Py.call/3,4` without an explicit context run them on `pool`'s context for
  the caller (its bound context when that belongs to `pool`). `pool` must be
  started. A registration for `{module, function}` (`register_pool/3`) takes
  precedence. Registrations are global to the node and meant to be made at
  start-up: each one rewrites a `:persistent_term`.

  ## Example

      :ok = Py.Context.register_pool(:default, :json)
      {:ok, "[1]"} = Py.call(:json, :dumps, [[1]])
      :ok = Py.Context.unregister_pool(:json)
  """
  @spec register_pool(atom, Py.name()) :: :ok
  def register_pool(pool, module) when is_atom(pool) do
    pool!(pool)
    put_route({route_module!(module), nil}, pool)
  end

  @doc """
  Routes calls of `module.function` to `pool`; see `register_pool/2`.

  ## Example

      :ok = Py.Context.register_pool(:default, :json, :dumps)
      :ok = Py.Context.unregister_pool(:json, :dumps)
  """
  @spec register_pool(atom, Py.name(), Py.name()) :: :ok
  def register_pool(pool, module, function) when is_atom(pool) do
    pool!(pool)
    put_route({route_module!(module), route_function!(function)}, pool)
  end

  @doc """
  Removes the routing of `module` made with `register_pool/2`. Returns `:ok`
  also when there was none.

  ## Example

      :ok = Py.Context.unregister_pool(:json)
  """
  @spec unregister_pool(Py.name()) :: :ok
  def unregister_pool(module), do: delete_route({route_module!(module), nil})

  @doc """
  Removes the routing of `module.function` made with `register_pool/3`.

  ## Example

      :ok = Py.Context.unregister_pool(:json, :dumps)
  """
  @spec unregister_pool(Py.name(), Py.name()) :: :ok
  def unregister_pool(module, function),
    do: delete_route({route_module!(module), route_function!(function)})

  @doc """
  The pool calls of `module.function` are routed to: the one registered for
  `{module, function}`, else for `module`, else `:default`.

  ## Example

      :default = Py.Context.pool_for(:math, :sqrt)
  """
  @spec pool_for(Py.name(), Py.name()) :: atom
  def pool_for(module, function) do
    case :persistent_term.get(@routes_key, nil) do
      nil -> :default
      routes -> lookup_route(routes, module, function)
    end
  end

  @doc false
  # The context of a routed call of `module.function` (Py.call, Py.stream,
  # Py.async_call): the caller's (route/0), unless the module or function
  # was routed to another pool with register_pool/2,3.
  @spec route_call(Py.name(), Py.name()) :: t
  def route_call(module, function) do
    case pool_for(module, function) do
      :default -> route()
      pool -> route(pool)
    end
  end

  defp lookup_route(routes, module, function) do
    module = route_key(module)
    function = route_key(function)

    case routes do
      %{{^module, ^function} => pool} -> pool
      %{{^module, nil} => pool} -> pool
      _ -> :default
    end
  end

  defp route_key(name) when is_atom(name), do: Atom.to_string(name)
  defp route_key(name) when is_binary(name), do: name
  defp route_key(_), do: nil

  defp route_module!(module),
    do: Py.Options.value!(module, :module, "module for Py.Context.register_pool")

  defp route_function!(function),
    do:
      Py.Options.value!(
        function,
        {:name, "function"},
        "function name for Py.Context.register_pool"
      )

  # Registrations are rare (start-up); a global lock keeps concurrent ones
  # from losing each other's update.
  defp put_route(key, pool), do: update_routes(&Map.put(&1, key, pool))
  defp delete_route(key), do: update_routes(&Map.delete(&1, key))

  defp update_routes(fun) do
    :global.trans(
      {@routes_key, self()},
      fn ->
        routes = fun.(:persistent_term.get(@routes_key, %{}))

        if routes == %{},
          do: :persistent_term.erase(@routes_key),
          else: :persistent_term.put(@routes_key, routes)
      end,
      [node()]
    )

    :ok
  end

  @doc """
  Whether this Python can run contexts in sub-interpreters with their own GIL
  (`mode: :subinterpreter`): CPython 3.12 or newer.

  ## Example

      true = Py.Context.subinterpreters_supported?() or Py.eval!("__import__('sys').version_info < (3, 12)")
  """
  @spec subinterpreters_supported?() :: boolean
  def subinterpreters_supported? do
    case Py.Runtime.info() do
      %{version_info: version} -> version >= {3, 12, 0}
      nil -> false
    end
  end

  @doc """
  Statistics of a context, as a map with these keys:

    * `:pool`, `:index` — which context this is;
    * `:mode` — `:main` or `:subinterpreter` (see `new/1`);
    * `:bound_processes` — processes bound to it (`bind/1`);
    * `:calls_total` — calls that ran to completion, successfully or not;
    * `:errors_total` — those of them that returned an error;
    * `:cancelled_total` — calls cancelled (timed out) while queued or running;
    * `:in_flight` — calls submitted and not finished yet (queued or running);
    * `:queue_length` — calls waiting for a worker;
    * `:busy_us` — time spent running calls, in microseconds;
    * `:compiles_total` — source compilations (`eval`/`exec` code not found
      in the context's code cache);
    * `:namespaces` — live process namespaces (one per process that ran
      `eval`/`exec` or called `:__main__` here and is still alive);
    * `:workers` — executor threads alive: the home worker and any overflow
      workers started while it was stuck in a long call;
    * `:idle_workers` — overflow workers parked, waiting for work;
    * `:max_queue` — the most calls its queue holds (see `new/1`);
    * `:overloaded_total` — calls refused as `:overloaded`, or sent to
      wait for room.

  The counters (`_total`, `busy_us`) only grow; the others are a snapshot.

  ## Example

      %{pool: :default, index: 1, mode: :main, workers: workers} = Py.Context.info(Py.context(1))
      true = workers >= 1
  """
  @spec info(t) :: info
  def info(%__MODULE__{pool: pool, index: index, ref: ref}) do
    ref
    |> Py.Native.context_info()
    |> Map.merge(%{pool: pool, index: index, bound_processes: Registry.bound_count(pool, index)})
  end

  @doc false
  # The tuple of contexts of `pool`; ArgumentError when it is not started.
  @spec pool!(atom) :: tuple
  def pool!(pool) do
    case Pools.lookup(pool) do
      nil -> unknown_pool!(pool)
      contexts -> contexts
    end
  end

  @doc false
  # Routing, the one implementation behind `Py.context/0,1`: the bound
  # context (of any pool for `route/0`, of `pool` for `route/1`), else a
  # context of the pool picked from the caller's pid, so a process always
  # lands on the same one and processes spread over the pool. O(1): a
  # process-dictionary read and a `:persistent_term` read.
  @spec route() :: t
  def route do
    case Process.get(@bound_key) do
      nil -> pick(:default)
      ctx -> ctx
    end
  end

  @doc false
  @spec route(atom) :: t
  def route(pool) do
    case Process.get(@bound_key) do
      %__MODULE__{pool: ^pool} = ctx -> ctx
      _ -> pick(pool)
    end
  end

  defp pick(pool) do
    contexts = pool!(pool)
    elem(contexts, :erlang.phash2(self(), tuple_size(contexts)))
  end

  defp unknown_pool!(pool) do
    expected =
      case Pools.names() do
        [] -> "a started pool (none is: is the :pybridge application running?)"
        names -> "one of the started pools #{inspect(names)}"
      end

    Py.Options.invalid!("context pool", expected, pool)
  end
end
