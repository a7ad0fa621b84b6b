defmodule Py.Context.Pools do
  @moduledoc """
  Owns the context pools: creates their contexts at start, publishes them for
  routing, and closes them on shutdown.

  Each pool is published as a tuple of `%Py.Context{}` in `:persistent_term`
  under `{Py.Context, pool}`, so routing a call (`Py.context/0`) costs a
  constant-time read and a hash, with no message to any process. The tuples
  are written once at start (and erased at shutdown), which is the access
  pattern `:persistent_term` is made for. Each context is also published
  under its process (`Py.Context.pid/1`), for `Py.Context.from_pid/1`.

  See `Py.Context.Supervisor` for the configuration keys.

  ## Example

      {_, _, _} = Py.Context.Pools.lookup(:default)   # with num_contexts: 3
      nil = Py.Context.Pools.lookup(:no_such_pool)
  """

  use GenServer
  require Logger
  require Py.Telemetry

  alias Py.Options

  @names_key {__MODULE__, :names}
  # Pool names that mean something else: `:default` is sized by
  # `num_contexts`, `:dedicated` is the pool of `Py.Context.new/1`.
  @reserved [:default, :dedicated]
  @default_max_workers Py.Limits.default_max_workers()
  @default_max_queue Py.Limits.default_max_queue()
  @mode {:in, [:main, :subinterpreter]}
  @overload {:in, [:error, :wait]}
  @context_schema [
    max_workers: :pos_integer,
    mode: @mode,
    max_queue: :pos_integer,
    overload: @overload
  ]
  @pool_schema [size: :pos_integer] ++ @context_schema
  @pools_expected "a keyword list of pool names and sizes, such as [io: 8] or " <>
                    "[io: [size: 8, max_workers: 16, mode: :subinterpreter]]"

  @typedoc "Settings of one native context, as `Py.Native.context_new/3` takes them."
  @type native_opts :: %{
          max_workers: pos_integer,
          mode: :main | :subinterpreter,
          max_queue: pos_integer,
          overload: :error | :wait
        }

  @doc """
  Starts the pool owner (registered as `Py.Context.Pools`); `opts` override
  the application environment (`:num_contexts`, `:pools`, `:max_workers`,
  `:context_mode`, `:max_queue`, `:overload`).

  Started by `Py.Context.Supervisor`, once per VM.

  ## Example

      # With the :pybridge application running, the owner exists already:
      {:error, {:already_started, _pid}} = Py.Context.Pools.start_link(num_contexts: 2)
  """
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(opts \\ []) do
    GenServer.start_link(__MODULE__, opts, name: __MODULE__)
  end

  @doc """
  The tuple of contexts of `pool`, or `nil` when it is not started.

  ## Example

      nil = Py.Context.Pools.lookup(:no_such_pool)
  """
  @spec lookup(atom) :: tuple | nil
  def lookup(pool), do: :persistent_term.get({Py.Context, pool}, nil)

  @doc """
  The names of the started pools, `:default` first.

  ## Example

      [:default | _] = Py.Context.Pools.names()
  """
  @spec names() :: [atom]
  def names, do: :persistent_term.get(@names_key, [])

  @doc """
  The schema (see `Py.Options`) of one context's settings, which
  `Py.Context.new/1` takes as options and a pool takes beside its `:size`.

  ## Example

      [max_workers: :pos_integer, mode: {:in, [:main, :subinterpreter]}, max_queue: :pos_integer,
       overload: {:in, [:error, :wait]}] = Py.Context.Pools.context_schema()
  """
  @spec context_schema() :: Py.Options.schema()
  def context_schema, do: @context_schema

  @doc false
  # `config :pybridge, max_workers:`, validated.
  @spec default_max_workers() :: pos_integer
  def default_max_workers, do: Options.setting!(:max_workers, :pos_integer, @default_max_workers)

  @doc false
  # `config :pybridge, max_queue:`, validated.
  @spec default_max_queue() :: pos_integer
  def default_max_queue, do: Options.setting!(:max_queue, :pos_integer, @default_max_queue)

  @doc false
  # `config :pybridge, overload:`, validated.
  @spec default_overload() :: :error | :wait
  def default_overload, do: Options.setting!(:overload, @overload, :error)

  @doc false
  # `config :pybridge, context_mode:`, validated.
  @spec default_mode() :: :main | :subinterpreter
  def default_mode, do: Options.setting!(:context_mode, @mode, :main)

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    config = config!(opts)
    pools = create_all(config, [])
    publish(pools)
    {:ok, pools}
  end

  # A context's process (Py.Context.pid/1) is linked to this one; if someone
  # kills it, the context lives on (its calls never went through it).
  @impl true
  def handle_info({:EXIT, _pid, _reason}, pools), do: {:noreply, pools}

  @impl true
  def terminate(_reason, pools) do
    unpublish(pools)
    Enum.each(pools, fn {_pool, contexts} -> close_all(contexts) end)
  end

  ## Configuration

  @doc false
  # [{pool, size, native_opts}], :default first.
  @spec config!(keyword) :: [{atom, pos_integer, native_opts}]
  def config!(opts) do
    defaults = %{
      max_workers: Options.setting!(opts, :max_workers, :pos_integer, @default_max_workers),
      mode: Options.setting!(opts, :context_mode, @mode, :main),
      max_queue: Options.setting!(opts, :max_queue, :pos_integer, @default_max_queue),
      overload: Options.setting!(opts, :overload, @overload, :error)
    }

    num = Options.setting!(opts, :num_contexts, :pos_integer, System.schedulers_online())

    pools =
      case Keyword.fetch(opts, :pools) do
        {:ok, pools} -> pools
        :error -> Application.get_env(:pybridge, :pools, [])
      end

    extra =
      if is_list(pools) and Enum.all?(pools, &match?({name, _} when is_atom(name), &1)),
        do: Enum.map(pools, &pool_config!(&1, defaults)),
        else: Options.invalid!(":pools setting for :pybridge", @pools_expected, pools)

    case extra -- Enum.uniq_by(extra, &elem(&1, 0)) do
      [] ->
        :ok

      [{dup, _, _} | _] ->
        Options.invalid!(
          ":pools setting for :pybridge",
          "each pool once",
          Keyword.take(pools, [dup])
        )
    end

    [{:default, num, defaults} | extra]
  end

  defp pool_config!({name, _} = entry, _) when name in @reserved do
    Options.invalid!(
      ":pools setting for :pybridge",
      "pool names other than #{Options.expected({:in, @reserved})} " <>
        "(the :default pool is sized by `config :pybridge, num_contexts:`)",
      entry
    )
  end

  defp pool_config!({name, size}, defaults) when is_integer(size) do
    {name, Options.value!(size, :pos_integer, "size of pool #{inspect(name)}"), defaults}
  end

  defp pool_config!({name, kw}, defaults) when is_list(kw) do
    where = "pool #{inspect(name)} in the :pools setting for :pybridge"
    kw = Options.validate!(kw, @pool_schema, where)

    case Keyword.fetch(kw, :size) do
      {:ok, size} ->
        settings = %{
          max_workers: Keyword.get(kw, :max_workers, defaults.max_workers),
          mode: Keyword.get(kw, :mode, defaults.mode),
          max_queue: Keyword.get(kw, :max_queue, defaults.max_queue),
          overload: Keyword.get(kw, :overload, defaults.overload)
        }

        {name, size, settings}

      :error ->
        Options.invalid!("options for #{where}", "a :size among them", kw)
    end
  end

  defp pool_config!(entry, _defaults),
    do: Options.invalid!(":pools setting for :pybridge", @pools_expected, entry)

  ## Contexts

  defp create_all([], acc), do: Enum.reverse(acc)

  defp create_all([{pool, size, opts} | rest], acc) do
    contexts = create(pool, size, opts, acc)
    create_all(rest, [{pool, contexts} | acc])
  end

  defp create(pool, size, opts, created) do
    Enum.reduce(1..size, {}, fn index, contexts ->
      ref =
        try do
          Py.Native.context_new(pool, index, opts)
        catch
          kind, reason ->
            # Do not leak the executors already started.
            close_all(contexts)
            Enum.each(created, fn {_, cs} -> close_all(cs) end)
            :erlang.raise(kind, reason, __STACKTRACE__)
        end

      ctx = %Py.Context{pool: pool, index: index, ref: ref, pid: Py.Context.start_pid()}
      started(ctx)
      apply_imports(ctx)
      Tuple.append(contexts, ctx)
    end)
  end

  @doc false
  # Every new context, pooled or dedicated, passes here once, and every
  # closed one through `close_context/1`: the dashboard's samples and the
  # `[:pybridge, :context, _]` events start and stop here.
  @spec started(Py.Context.t()) :: :ok
  def started(ctx) do
    Py.Dashboard.Samples.started(ctx.ref)

    Py.Telemetry.execute(
      [:pybridge, :context, :start],
      %{monotonic_time: System.monotonic_time(), system_time: System.system_time()},
      context_metadata(ctx)
    )

    :ok
  end

  if Py.Telemetry.enabled?() do
    defp stopped(metadata, started_at) do
      stop = System.monotonic_time()

      measurements =
        if started_at,
          do: %{monotonic_time: stop, duration: stop - started_at},
          else: %{monotonic_time: stop}

      :telemetry.execute([:pybridge, :context, :stop], measurements, metadata)
    end
  else
    defp stopped(_metadata, _started_at), do: :ok
  end

  defp context_metadata(ctx) do
    mode =
      try do
        Py.Native.context_info(ctx.ref).mode
      rescue
        _ -> nil
      end

    %{context: ctx, pool: ctx.pool, index: ctx.index, mode: mode, node: node()}
  end

  @doc false
  # A new context gets the imports and paths of Py.Imports; one that fails
  # is logged and the context is used all the same (its calls import on
  # their own and report what fails).
  @spec apply_imports(Py.Context.t()) :: :ok
  def apply_imports(ctx) do
    case Py.Imports.apply_to(ctx) do
      :ok ->
        :ok

      {:error, error} ->
        Logger.warning(
          "pybridge: #{inspect(ctx.pool)} context #{ctx.index} could not apply " <>
            "Py.Imports: " <> Exception.message(error)
        )
    end
  end

  defp close_all(contexts) do
    contexts |> Tuple.to_list() |> Enum.each(&close_context/1)
  end

  @doc false
  # Closes a context's executor; a failure is logged, never raised, so that
  # shutting down and cleaning up after an exited owner always go on.
  @spec close_context(Py.Context.t()) :: :ok
  def close_context(%Py.Context{ref: ref} = ctx) do
    Py.Context.stop_pid(ctx)
    # Read before closing: a closed context has no mode to tell.
    metadata = if Py.Telemetry.enabled?(), do: context_metadata(ctx)
    Py.Native.context_close(ref)
    stopped(metadata, Py.Dashboard.Samples.stopped(ref))
  catch
    kind, reason ->
      Logger.warning(
        "pybridge: closing #{inspect(ctx.pool)} context #{ctx.index} failed: " <>
          Exception.format_banner(kind, reason)
      )
  end

  # Each context is also published under its pid, for Py.Context.from_pid/1.
  defp publish(pools) do
    Enum.each(pools, fn {pool, contexts} ->
      for ctx <- Tuple.to_list(contexts), do: :persistent_term.put({Py.Context, ctx.pid}, ctx)
      :persistent_term.put({Py.Context, pool}, contexts)
    end)

    :persistent_term.put(@names_key, Enum.map(pools, &elem(&1, 0)))
  end

  defp unpublish(pools) do
    :persistent_term.erase(@names_key)

    Enum.each(pools, fn {pool, contexts} ->
      :persistent_term.erase({Py.Context, pool})
      for ctx <- Tuple.to_list(contexts), do: :persistent_term.erase({Py.Context, ctx.pid})
    end)
  end
end
