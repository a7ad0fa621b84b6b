defmodule Py.SharedDict.Options do
  @moduledoc false
  # Validation of Py.SharedDict's options and arguments, up front: the
  # options of new/1 (backend, prefix, subscribe and the schema), put's
  # ttl:, keys and event lists. Every failure raises ArgumentError naming
  # the function and what it expects.

  @events [:put, :delete, :expire]

  @new_schema [
    name: {:name, "shared dict"},
    max_entries: :pos_integer,
    evict: {:in, [:lru, :none]},
    telemetry_keys: {:in, [true, false]},
    pool_size: :pos_integer
  ]
  @put_schema [ttl: :timeout]

  @doc "The events a subscriber may ask for."
  def events, do: @events

  @doc "Validates new/1's options: `{opts, backend, prefix, subscribe}`."
  def new!(opts) do
    {backend, opts} = pop_option(opts, :backend, :memory)
    {prefix, opts} = pop_option(opts, :prefix, "")
    {subscribe, opts} = pop_option(opts, :subscribe, nil)
    opts = Py.Options.validate!(opts, @new_schema, "Py.SharedDict.new/1")
    backend = backend!(backend)
    prefix = prefix!(prefix)
    subscribe = if subscribe, do: events!(subscribe, "new/1")

    if backend != :memory and (opts[:max_entries] || opts[:evict]) do
      Py.Options.invalid!(
        "options for Py.SharedDict.new/1",
        ":max_entries and :evict only with backend: :memory",
        opts
      )
    end

    {opts, backend, prefix, subscribe}
  end

  @doc "Validates the options of a put (`fun` names it): the ttl, or nil."
  def ttl!(opts, fun) do
    opts = Py.Options.validate!(opts, @put_schema, "Py.SharedDict.#{fun}")

    case Keyword.get(opts, :ttl, :infinity) do
      :infinity -> nil
      ms -> ms
    end
  end

  defp pop_option(opts, key, default) when is_list(opts) do
    case List.keyfind(opts, key, 0) do
      {^key, value} -> {value, List.keydelete(opts, key, 0)}
      nil -> {default, opts}
    end
  end

  defp pop_option(opts, _key, default), do: {default, opts}

  defp backend!(:memory), do: :memory

  defp backend!({:sqlite, path} = backend) do
    if (is_binary(path) or is_list(path)) and path not in ["", []] do
      {:sqlite, IO.chardata_to_string(path)}
    else
      backend_invalid!(backend)
    end
  rescue
    ArgumentError -> backend_invalid!(backend)
  end

  # Several URLs: seed nodes of one Redis Cluster. The native side takes
  # them as one string, separated by spaces (a URL has none).
  defp backend!({:redis, [first | _] = urls} = backend) when not is_integer(first) do
    urls = Enum.map(urls, &redis_url!(&1, backend))
    {:redis, Enum.join(urls, " ")}
  end

  defp backend!({:redis, url} = backend), do: {:redis, redis_url!(url, backend)}

  defp backend!(other), do: backend_invalid!(other)

  defp redis_url!(url, backend) when is_list(url) do
    redis_url!(List.to_string(url), backend)
  rescue
    ArgumentError -> backend_invalid!(backend)
  end

  defp redis_url!(url, backend) do
    if is_binary(url) and not String.contains?(url, [" ", "\t", "\n"]) and
         String.starts_with?(url, ["redis://", "rediss://", "unix://", "redis+unix://"]) do
      url
    else
      backend_invalid!(backend)
    end
  end

  defp backend_invalid!(other) do
    Py.Options.invalid!(
      ":backend option for Py.SharedDict.new/1",
      ":memory, {:sqlite, path} with a non-empty path, {:redis, \"redis://host:port/db\"}, or {:redis, [url, ...]} (seed nodes of a Redis Cluster)",
      other
    )
  end

  defp prefix!(prefix) when is_binary(prefix), do: prefix

  defp prefix!(prefix) when is_atom(prefix) and prefix not in [nil, true, false],
    do: Atom.to_string(prefix)

  defp prefix!(other),
    do: Py.Options.invalid!(":prefix option for Py.SharedDict.new/1", "a string", other)

  @doc "Validates an event list (`fun` names the function)."
  def events!(events, fun) do
    if is_list(events) and events != [] and Enum.all?(events, &(&1 in @events)) do
      events
    else
      Py.Options.invalid!(
        "events for Py.SharedDict.#{fun}",
        "a non-empty list of #{inspect(@events)}",
        events
      )
    end
  end

  @doc "Validates a key (`fun` names the function)."
  def key!(key, fun) do
    if is_binary(key) and String.valid?(key) do
      key
    else
      Py.Options.invalid!("key for Py.SharedDict.#{fun}", "a string (UTF-8 binary)", key)
    end
  end
end
