defmodule Py.Context.Pools do
  @moduledoc """
  Owns the context pools: creates their contexts at start, publishes them for
  routing, and closes them on shutdown.

  Each pool is published as a tuple of `%Py.Context{}` in `:persistent_term`
  under `{Py.Context, pool}`, so routing a call (`Py.context/0`) costs a
  constant-time read and a hash, with no message to any process. The tuples
  are written once at start (and erased at shutdown), which is the access
  pattern `:persistent_term` is made for.

  See `Py.Context.Supervisor` for the configuration keys.

  ## Example

      {_, _, _} = Py.Context.Pools.lookup(:default)   # with num_contexts: 3
      nil = Py.Context.Pools.lookup(:no_such_pool)
  """

  use GenServer
  require Logger

  @names_key {__MODULE__, :names}
  @reserved [:dedicated]
  @default_max_workers 256
  @modes [:main, :subinterpreter]

  @typedoc "Settings of one native context, as `Py.Native.context_new/3` takes them."
  @type native_opts :: %{max_workers: pos_integer, mode: :main | :subinterpreter}

  @doc """
  Starts the pool owner (registered as `Py.Context.Pools`); `opts` override
  the application environment (`:num_contexts`, `:pools`, `:max_workers`,
  `:context_mode`).

  ## Example

      {:ok, _pid} = Py.Context.Pools.start_link(num_contexts: 2)
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
  Validates the options of `Py.Context.new/1` (`:max_workers`, `:mode`) and
  returns the settings of the native context.

  ## Example

      %{max_workers: 8, mode: :main} =
        Py.Context.Pools.context_opts!([max_workers: 8, mode: :main], "Py.Context.new/1")
  """
  @spec context_opts!(keyword, String.t()) :: native_opts
  def context_opts!(opts, fun) when is_list(opts) do
    defaults = %{max_workers: default_max_workers([]), mode: default_mode([])}

    Enum.reduce(opts, defaults, fn
      {:max_workers, n}, acc when is_integer(n) and n > 0 ->
        %{acc | max_workers: n}

      {:max_workers, n}, _ ->
        raise ArgumentError,
              "invalid value for :max_workers option of #{fun}: expected a positive integer, got: #{inspect(n)}"

      {:mode, mode}, acc ->
        %{acc | mode: mode!(mode, ":mode option of #{fun}")}

      {key, _}, _ when is_atom(key) ->
        raise ArgumentError,
              "unknown option #{inspect(key)} for #{fun}; valid options: [:max_workers, :mode]"

      other, _ ->
        raise ArgumentError,
              "expected a keyword list of options for #{fun}, got entry: #{inspect(other)}"
    end)
  end

  def context_opts!(opts, fun) do
    raise ArgumentError, "expected a keyword list of options for #{fun}, got: #{inspect(opts)}"
  end

  @impl true
  def init(opts) do
    Process.flag(:trap_exit, true)
    config = config!(opts)
    pools = create_all(config, [])
    publish(pools)
    {:ok, pools}
  end

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
    max_workers = default_max_workers(opts)
    positive!(max_workers, :max_workers)
    defaults = %{max_workers: max_workers, mode: default_mode(opts)}

    num = setting(opts, :num_contexts, System.schedulers_online())
    positive!(num, :num_contexts)

    extra =
      case setting(opts, :pools, []) do
        pools when is_list(pools) ->
          Enum.map(pools, &pool_config!(&1, defaults))

        other ->
          raise ArgumentError,
                "invalid :pools setting for :pybridge: expected a keyword list such as [io: 8], got: #{inspect(other)}"
      end

    case extra -- Enum.uniq_by(extra, &elem(&1, 0)) do
      [] -> :ok
      [{dup, _, _} | _] -> raise ArgumentError, "context pool #{inspect(dup)} is configured twice"
    end

    [{:default, num, defaults} | extra]
  end

  defp pool_config!({:default, _}, _) do
    raise ArgumentError,
          "the :default pool is sized with `config :pybridge, num_contexts: n`, not under :pools"
  end

  defp pool_config!({name, _}, _) when name in @reserved do
    raise ArgumentError, "#{inspect(name)} is reserved and cannot be used as a pool name"
  end

  defp pool_config!({name, size}, defaults) when is_atom(name) and is_integer(size) do
    positive!(size, {:pools, name})
    {name, size, defaults}
  end

  defp pool_config!({name, kw}, defaults) when is_atom(name) and is_list(kw) do
    Enum.each(kw, fn
      {key, _} when key in [:size, :max_workers, :mode] ->
        :ok

      other ->
        raise ArgumentError,
              "invalid entry #{inspect(other)} for pool #{inspect(name)}; valid keys: [:size, :max_workers, :mode]"
    end)

    size = Keyword.get(kw, :size)
    workers = Keyword.get(kw, :max_workers, defaults.max_workers)
    positive!(size, {:pools, name, :size})
    positive!(workers, {:pools, name, :max_workers})

    mode =
      case Keyword.fetch(kw, :mode) do
        :error -> defaults.mode
        {:ok, mode} -> mode!(mode, ":mode of pool #{inspect(name)}")
      end

    {name, size, %{max_workers: workers, mode: mode}}
  end

  defp pool_config!(other, _) do
    raise ArgumentError,
          "invalid pool #{inspect(other)} in :pools; expected name: size or name: [size: n, max_workers: m]"
  end

  defp setting(opts, key, default) do
    case Keyword.fetch(opts, key) do
      {:ok, value} -> value
      :error -> Application.get_env(:pybridge, key, default)
    end
  end

  defp default_max_workers(opts), do: setting(opts, :max_workers, @default_max_workers)

  defp default_mode(opts) do
    opts |> setting(:context_mode, :main) |> mode!(":context_mode setting for :pybridge")
  end

  defp mode!(mode, _what) when mode in @modes, do: mode

  defp mode!(mode, what) do
    raise ArgumentError,
          "invalid #{what}: expected :main or :subinterpreter, got: #{inspect(mode)}"
  end

  defp positive!(n, _key) when is_integer(n) and n > 0, do: :ok

  defp positive!(n, key) do
    raise ArgumentError,
          "invalid #{inspect(key)} setting for :pybridge: expected a positive integer, got: #{inspect(n)}"
  end

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

      Tuple.append(contexts, %Py.Context{pool: pool, index: index, ref: ref})
    end)
  end

  defp close_all(contexts) do
    for %Py.Context{ref: ref} = ctx <- Tuple.to_list(contexts) do
      try do
        Py.Native.context_close(ref)
      catch
        kind, reason ->
          Logger.warning(
            "pybridge: closing #{inspect(ctx.pool)} context #{ctx.index} failed: " <>
              Exception.format_banner(kind, reason)
          )
      end
    end

    :ok
  end

  defp publish(pools) do
    Enum.each(pools, fn {pool, contexts} -> :persistent_term.put({Py.Context, pool}, contexts) end)

    :persistent_term.put(@names_key, Enum.map(pools, &elem(&1, 0)))
  end

  defp unpublish(pools) do
    :persistent_term.erase(@names_key)
    Enum.each(pools, fn {pool, _} -> :persistent_term.erase({Py.Context, pool}) end)
  end
end
