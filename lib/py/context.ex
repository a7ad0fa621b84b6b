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
  defstruct [:pool, :index, :ref]

  @typedoc "A context handle. `ref` is the NIF resource; the handle is only valid on its node."
  @type t :: %__MODULE__{pool: atom, index: pos_integer, ref: reference()}

  @typedoc "The map returned by `info/1`."
  @type info :: %{
          required(:pool) => atom,
          required(:index) => pos_integer,
          required(:calls_total) => non_neg_integer,
          required(:errors_total) => non_neg_integer,
          required(:in_flight) => non_neg_integer,
          required(:queue_length) => non_neg_integer,
          required(:bound_processes) => non_neg_integer,
          required(:namespaces) => non_neg_integer,
          required(:busy_us) => non_neg_integer,
          required(:mode) => mode,
          optional(atom) => term
        }

  @typedoc "An option of `new/1`."
  @type new_option :: {:max_workers, pos_integer} | {:mode, mode}

  @typedoc "Where a context runs Python: the main interpreter or a sub-interpreter of its own."
  @type mode :: :main | :subinterpreter

  @bound_key :"$py_context"

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
      mode: Keyword.get_lazy(opts, :mode, &Pools.default_mode/0)
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

  def close(%__MODULE__{pool: pool}) do
    raise ArgumentError,
          "only dedicated contexts (Py.Context.new/1) can be closed; " <>
            "contexts of pool #{inspect(pool)} belong to the application"
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
  Statistics of a context, as a map with at least:

    * `:pool`, `:index` — which context this is;
    * `:calls_total`, `:errors_total` — jobs run and jobs that failed;
    * `:in_flight` — jobs submitted and not replied yet;
    * `:queue_length` — jobs waiting for a worker;
    * `:bound_processes` — processes bound to it (`bind/1`);
    * `:namespaces` — live process namespaces;
    * `:busy_us` — time spent running Python, in microseconds;
    * `:mode` — `:main` or `:subinterpreter` (see `new/1`).

  ## Example

      %{pool: :default, index: 1, mode: :main} = Py.Context.info(Py.context(1))
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
      nil -> raise ArgumentError, unknown_pool_message(pool)
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

  @doc false
  @spec unknown_pool_message(term) :: String.t()
  def unknown_pool_message(pool) do
    case Pools.names() do
      [] ->
        "pybridge contexts are not started (is the :pybridge application running?)"

      names ->
        "unknown context pool #{inspect(pool)}; started pools: #{inspect(names)}"
    end
  end
end
