defmodule Py.SharedDict do
  @moduledoc """
  A key/value store shared by Elixir, Erlang and Python, with per-key expiry.

  State that both sides need (configuration, sessions, caches, counters)
  lives in one store in the native library, not in Python: the BEAM reads
  and writes it without taking the GIL, and every context sees the same
  data. See the [SharedDict guide](shared-dict.md) for the model.

    * **Ownership.** `new/1` makes a dict owned by the calling process and
      destroyed when that process exits. `new(name: "sessions")` makes a
      named dict instead: it has no owner, lives until `destroy/1`, and is
      found by name with `lookup/1`.
    * **Keys** are strings (UTF-8 binaries); anything else raises
      `ArgumentError`.
    * **Values** are plain data, stored as pybridge converts it for Python:
      a value reads back as it would after a trip through Python (atom keys
      and atoms become strings, `nil` stays `nil`). Reads are copies.
    * **Expiry.** `put/4` with `ttl:` (milliseconds) makes a key expire.
      From that millisecond on the key is never returned, counted or
      listed; a background sweeper then removes it.
    * **Backends.** Entries live in this OS process (`backend: :memory`,
      the default) or in a SQLite file that survives restarts and
      `kill -9` (`backend: {:sqlite, path}`: every write is committed to
      disk before it returns, and every operation runs on a dirty IO
      scheduler). The guide says exactly what each promises.
    * **Errors.** A put beyond `max_entries:` is `{:error, :full}`. A
      backend that fails (a full disk, a corrupt file) is
      `{:error, %Py.Error{type: :backend}}`, and `get/3` reads it as a
      missing key rather than raise. Any
      operation on a destroyed dict raises `Py.Error` of type `:destroyed`;
      a handle that is not one (forged, or from another node) raises
      `ArgumentError`.

  ## Example

      iex> {:ok, sd} = Py.SharedDict.new()
      iex> Py.SharedDict.put(sd, "config", %{host: "localhost", port: 8080})
      :ok
      iex> Py.SharedDict.get(sd, "config")
      %{"host" => "localhost", "port" => 8080}
      iex> Py.SharedDict.incr(sd, "hits")
      {:ok, 1}
      iex> Py.SharedDict.keys(sd) |> Enum.sort()
      ["config", "hits"]
  """

  alias Py.Native
  alias Py.SharedDict.{Dispatch, Events, Locks, Options}

  # Remote calls, not imports: Dispatch and Locks use this module's struct.
  defp run(sd, op, args, fun), do: Dispatch.run(sd, op, args, fun)
  defp fetch_versioned(sd, key), do: Dispatch.fetch_versioned(sd, key)
  defp write(sd, key, value, ttl, cond), do: Dispatch.write(sd, key, value, ttl, cond)
  defp bang!(result), do: Dispatch.bang!(result)
  defp key!(key, fun), do: Options.key!(key, fun)

  @enforce_keys [:ref, :id]
  defstruct [:ref, :id, :name, io: false]

  @typedoc """
  A dict handle, as `new/1` returns it (`io` is true when its backend waits
  on a disk or network: its operations then run on a dirty IO scheduler,
  except a Redis put or get queued behind one of the dict's writes or
  reads on its way, whose caller waits for its answer in `receive`).
  """
  @type t :: %__MODULE__{ref: reference, id: pos_integer, name: String.t() | nil, io: boolean}

  @typedoc "Where a dict keeps its entries (see `new/1`)."
  @type backend ::
          :memory | {:sqlite, Path.t()} | {:redis, String.t()} | {:redis, [String.t(), ...]}

  @typedoc "Keys are strings (UTF-8 binaries)."
  @type key :: String.t()

  @typedoc "Anything `t:Py.value/0` covers, except `Py.Object` handles."
  @type value :: term

  @typedoc "Options of `new/1`."
  @type new_option ::
          {:name, String.t() | atom}
          | {:max_entries, pos_integer}
          | {:evict, :lru | :none}
          | {:telemetry_keys, boolean}
          | {:backend, backend}
          | {:prefix, String.t()}
          | {:pool_size, pos_integer}
          | {:subscribe, [:put | :delete | :expire]}

  # ── Lifecycle ───────────────────────────────────────────────────────────

  @doc """
  Makes a dict.

  Options:

    * `:name` — a string or atom: the dict is named, has no owner, lives
      until `destroy/1` and is found with `lookup/1` (an atom name is its
      string: `:sessions` and `"sessions"` are the same name). Without it the
      dict belongs to the caller and is destroyed when the caller exits.
    * `:max_entries` — the most keys it holds; a put of a new key beyond it
      is `{:error, :full}`.
    * `:evict` — `:lru` makes room for a new key by removing the least
      recently used one instead of refusing it (removals are `:delete`
      events); `:none` (the default) refuses.
    * `:telemetry_keys` — `true` puts the key in the metadata of the dict's
      `[:pybridge, :shared_dict, _]` telemetry events (default `false`: keys
      may be personal data; values are never in them). See the
      [telemetry guide](telemetry.md).
    * `:backend` — where the entries live: `:memory` (the default: in this
      OS process, gone with it) or `{:sqlite, path}` (a SQLite file that
      survives restarts and `kill -9`) or `{:redis, url}` (a Redis server that
      several BEAM nodes share: every node opening the same `:name` and
      `:prefix` there sees the same entries, events and locks; also a node
      of a Redis Cluster, or `{:redis, [url, ...]}` for several seed nodes
      of one cluster). See the guide
      for exactly what each promises. `:max_entries` and `:evict` are for
      `:memory` only.
    * `:prefix` — keeps this dict's keys apart from other dicts' in the same
      file or server (default `""`; on Redis every key of the dict is under
      the hash tag `{prefix:name}`).
    * `:pool_size` — connections to the backend (default 1: reading
      connections for SQLite; for Redis, how many operations of this dict
      can be in flight at once).
    * `:subscribe` — subscribes the caller to these events (as
      `subscribe/2`) before the dict is opened: with a durable backend it
      then also gets the `:expire` events of keys that expired while the
      file was closed, which opening raises once.

  Returns `{:error, :exists}` when a live dict has the name, and
  `{:error, %Py.Error{type: :backend}}` when the backend cannot be opened (a
  missing directory, a corrupt or read-only file).

  ## Example

      iex> {:ok, sd} = Py.SharedDict.new(name: "doc_new", max_entries: 1)
      iex> Py.SharedDict.put(sd, "a", 1)
      :ok
      iex> Py.SharedDict.put(sd, "b", 2)
      {:error, :full}
      iex> Py.SharedDict.new(name: "doc_new")
      {:error, :exists}
      iex> Py.SharedDict.destroy(sd)
      :ok
  """
  @spec new([new_option]) :: {:ok, t} | {:error, :exists | Py.Error.t()}
  def new(opts \\ []) do
    {opts, backend, prefix, subscribe} = Options.new!(opts)

    result =
      Native.shared_dict_new(
        Keyword.get(opts, :name),
        Keyword.get(opts, :max_entries),
        Keyword.get(opts, :evict, :none) == :lru,
        backend,
        prefix,
        Keyword.get(opts, :pool_size, 1)
      )

    with {:error, {type, message, traceback}} <- result do
      {:error, %Py.Error{type: type, message: message, traceback: traceback}}
    else
      {:ok, sd} ->
        if opts[:telemetry_keys], do: Native.shared_dict_telemetry_keys(sd.ref, true)
        opened(sd, subscribe)

      other ->
        other
    end
  end

  # Subscribes the caller, then raises the events of keys that expired
  # while a durable dict was closed.
  defp opened(sd, subscribe) do
    if subscribe, do: :ok = subscribe(sd, subscribe)

    case run(sd, :expire_due, [], fn _ref -> {:ok, 0} end) do
      {:ok, _count} ->
        {:ok, sd}

      {:error, _} = error ->
        # Closed again (a durable dict keeps its data), so that a later
        # new/1 with the same name can retry.
        destroy(sd)
        error
    end
  end

  @doc """
  Like `new/1`, but returns the dict and raises `ArgumentError` when the name
  is taken.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.size(sd)
      0
  """
  @spec new!([new_option]) :: t
  def new!(opts \\ []) do
    case new(opts) do
      {:ok, sd} ->
        sd

      {:error, :exists} ->
        raise ArgumentError, "a shared dict named #{inspect(opts[:name])} exists"

      {:error, %Py.Error{} = error} ->
        raise error
    end
  end

  @doc """
  The live dict named `name` (a string or an atom).

  ## Example

      iex> {:ok, sd} = Py.SharedDict.new(name: :doc_lookup)
      iex> Py.SharedDict.lookup("doc_lookup") == {:ok, sd}
      true
      iex> Py.SharedDict.destroy(sd)
      iex> Py.SharedDict.lookup(:doc_lookup)
      :error
  """
  @spec lookup(String.t() | atom) :: {:ok, t} | :error
  def lookup(name) do
    Native.shared_dict_lookup(
      Py.Options.value!(name, {:name, "shared dict"}, "name for Py.SharedDict.lookup/1")
    )
  end

  @doc """
  Every live dict of this node, named or not, made by the BEAM or by Python,
  in the order they were made (for listing them, with `stats/1`, on a
  dashboard; see `Py.Dashboard`).

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> sd in Py.SharedDict.all()
      true
  """
  @spec all() :: [t]
  def all, do: Native.shared_dict_all()

  @doc """
  The backend keeping the dict's entries: `:memory` (the only one so far).

  ## Example

      iex> Py.SharedDict.backend(Py.SharedDict.new!())
      :memory
  """
  @spec backend(t) :: atom
  def backend(sd), do: native(sd, &Native.shared_dict_backend/1)

  @doc """
  Destroys the dict: its entries are dropped, its name freed, and every
  later operation on it raises `Py.Error` of type `:destroyed`. Idempotent.

  ## Example

      iex> {:ok, sd} = Py.SharedDict.new()
      iex> Py.SharedDict.destroy(sd)
      :ok
      iex> Py.SharedDict.destroy(sd)
      :ok
      iex> Py.SharedDict.get(sd, "a")
      ** (Py.Error) destroyed: the shared dict was destroyed
  """
  @spec destroy(t) :: :ok
  def destroy(sd), do: run(sd, :destroy, [], &Native.shared_dict_destroy/1)

  # ── Reading ─────────────────────────────────────────────────────────────

  @doc """
  The value of `key`, or `default` when it is missing or expired.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.put(sd, "a", [1, :two])
      iex> Py.SharedDict.get(sd, "a")
      [1, "two"]
      iex> Py.SharedDict.get(sd, "missing", :none)
      :none
  """
  @spec get(t, key, value) :: value
  def get(sd, key, default \\ nil)

  # The hot path: straight to the NIF, which answers the value or `default`
  # and raises on anything else (a bad handle or key, a destroyed dict, a
  # value too big for a normal scheduler): the checked path below then
  # does it properly or raises the clear error.
  def get(%__MODULE__{ref: ref, io: false} = sd, key, default) when is_binary(key) do
    Native.shared_dict_value(ref, key, default)
  catch
    :error, _ -> checked_get(sd, key, default)
  end

  def get(sd, key, default), do: checked_get(sd, key, default)

  defp checked_get(sd, key, default) do
    case fetch_versioned(sd, key!(key, "get/3")) do
      {:ok, value, _version} -> value
      :error -> default
      # A backend that failed reads as missing: get/3 never raises in a
      # loop over a flaky disk; fetch/2 tells the two apart.
      {:error, %Py.Error{}} -> default
    end
  end

  @doc """
  `{:ok, value}` for a live key, `:error` for a missing or expired one.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.put(sd, "a", nil)
      iex> Py.SharedDict.fetch(sd, "a")
      {:ok, nil}
      iex> Py.SharedDict.fetch(sd, "b")
      :error
  """
  @spec fetch(t, key) :: {:ok, value} | :error | {:error, Py.Error.t()}
  def fetch(sd, key) do
    case fetch_versioned(sd, key!(key, "fetch/2")) do
      {:ok, value, _version} -> {:ok, value}
      other -> other
    end
  end

  @doc """
  The value of `key`; raises `KeyError` when it is missing or expired.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.put(sd, "a", 1)
      iex> Py.SharedDict.fetch!(sd, "a")
      1
  """
  @spec fetch!(t, key) :: value
  def fetch!(sd, key) do
    case fetch(sd, key) do
      {:ok, value} -> value
      :error -> raise KeyError, key: key, term: sd
      {:error, error} -> raise error
    end
  end

  @doc """
  The live keys, in no particular order.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.put(sd, "a", 1)
      iex> Py.SharedDict.keys(sd)
      ["a"]
  """
  @spec keys(t) :: [key] | {:error, Py.Error.t()}
  def keys(sd), do: run(sd, :keys, [], &Native.shared_dict_keys/1)

  @doc """
  How many keys are live.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.size(sd)
      0
  """
  @spec size(t) :: non_neg_integer | {:error, Py.Error.t()}
  def size(sd), do: run(sd, :size, [], &Native.shared_dict_size/1)

  @doc """
  Every live entry as a map.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.put(sd, "a", 1)
      iex> Py.SharedDict.to_map(sd)
      %{"a" => 1}
  """
  @spec to_map(t) :: %{key => value} | {:error, Py.Error.t()}
  def to_map(sd), do: run(sd, :to_map, [], &Native.shared_dict_to_map/1)

  @doc """
  Milliseconds before `key` expires, `:infinity` when it never does, `nil`
  when it is missing or expired.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.put(sd, "a", 1)
      iex> Py.SharedDict.ttl(sd, "a")
      :infinity
      iex> Py.SharedDict.put(sd, "b", 1, ttl: 60_000)
      iex> Py.SharedDict.ttl(sd, "b") in 1..60_000
      true
      iex> Py.SharedDict.ttl(sd, "c")
      nil
  """
  @spec ttl(t, key) :: non_neg_integer | :infinity | nil | {:error, Py.Error.t()}
  def ttl(sd, key) do
    key = key!(key, "ttl/2")
    run(sd, :ttl, [key], &Native.shared_dict_ttl(&1, key))
  end

  @doc """
  The dict's counters: `size` (live keys), `puts` (writes, increments and
  updates included), `deletes` (deleted, taken or evicted keys),
  `expired_total`, `recent_expiries`, the latest expiries as
  `{key, unix_ms}`, newest first (at most 32), and `callback_errors` and
  `callback_timeouts`, the Python callbacks (`sd.register_callback`) that
  raised or ran past their timeout (each is also logged). `clear/1` counts
  as none. On a Redis dict, `puts`, `deletes` and the expiries count every
  node's writes since this handle opened (kept in Redis, see
  guides/shared-dict.md).

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.put(sd, "a", 1)
      iex> Py.SharedDict.delete(sd, "a")
      iex> Py.SharedDict.stats(sd)
      %{size: 0, puts: 1, deletes: 1, expired_total: 0, recent_expiries: [],
        callback_errors: 0, callback_timeouts: 0}
  """
  @spec stats(t) ::
          %{
            size: non_neg_integer,
            puts: non_neg_integer,
            deletes: non_neg_integer,
            expired_total: non_neg_integer,
            recent_expiries: [{key, integer}],
            callback_errors: non_neg_integer,
            callback_timeouts: non_neg_integer
          }
          | {:error, Py.Error.t()}
  def stats(sd), do: run(sd, :stats, [], &Native.shared_dict_stats/1)

  # ── Writing ─────────────────────────────────────────────────────────────

  @doc """
  Stores `value` under `key`.

  Options: `ttl:` milliseconds before the key expires, or `:infinity` (the
  default). A put without `ttl:` removes any expiry the key had.

  Returns `{:error, :full}` for a new key beyond `max_entries:`, and
  `{:error, %Py.Error{type: :conversion}}` for a value that cannot be
  stored (a fun, a port, a `Py.Object` handle; see the guide).

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.put(sd, "session", %{user: 1}, ttl: 30_000)
      :ok
      iex> {:error, %Py.Error{type: :conversion}} = Py.SharedDict.put(sd, "f", fn -> 1 end)
  """
  @spec put(t, key, value, ttl: timeout) :: :ok | {:error, :full | Py.Error.t()}
  def put(sd, key, value, opts \\ [])

  # The hot path, as in get/3.
  def put(%__MODULE__{ref: ref, io: false} = sd, key, value, []) when is_binary(key) do
    case Native.shared_dict_set(ref, key, value) do
      :ok -> :ok
      _other -> checked_put(sd, key, value, [])
    end
  catch
    :error, _ -> checked_put(sd, key, value, [])
  end

  def put(sd, key, value, opts), do: checked_put(sd, key, value, opts)

  defp checked_put(sd, key, value, opts) do
    key = key!(key, "put/4")
    write(sd, key, value, Options.ttl!(opts, "put/4"), :always)
  end

  @doc """
  Like `put/4`, raising `Py.Error` (`:full` for a full dict) instead.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.put!(sd, "a", 1)
      :ok
  """
  @spec put!(t, key, value, ttl: timeout) :: :ok
  def put!(sd, key, value, opts \\ []), do: sd |> put(key, value, opts) |> bang!()

  @doc """
  Like `put/4`, only when `key` is missing (or expired); `{:error, :exists}`
  otherwise.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.put_new(sd, "a", 1)
      :ok
      iex> Py.SharedDict.put_new(sd, "a", 2)
      {:error, :exists}
  """
  @spec put_new(t, key, value, ttl: timeout) :: :ok | {:error, :exists | :full | Py.Error.t()}
  def put_new(sd, key, value, opts \\ []) do
    key = key!(key, "put_new/4")
    write(sd, key, value, Options.ttl!(opts, "put_new/4"), :new)
  end

  @doc """
  Removes `key`. `:ok` also when it was missing.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.delete(sd, "missing")
      :ok
  """
  @spec delete(t, key) :: :ok | {:error, Py.Error.t()}
  def delete(sd, key) do
    key = key!(key, "delete/2")
    run(sd, :delete, [key], &Native.shared_dict_delete(&1, key))
  end

  @doc """
  Removes `key` and returns its value: `{:ok, value}`, or `:error` when it
  was missing or expired.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.put(sd, "a", 1)
      iex> Py.SharedDict.take(sd, "a")
      {:ok, 1}
      iex> Py.SharedDict.take(sd, "a")
      :error
  """
  @spec take(t, key) :: {:ok, value} | :error | {:error, Py.Error.t()}
  def take(sd, key) do
    key = key!(key, "take/2")
    run(sd, :take, [key], &Native.shared_dict_take(&1, key))
  end

  @doc """
  Replaces the value of `key` with `fun.(value)` atomically: if another
  writer changed the key between the read and the write, `fun` runs again
  on the new value, so no write is lost. When `key` is missing, `default`
  is stored (`fun` is not called). The key keeps its expiry. `fun` runs in
  the caller and may run more than once: keep it free of side effects.

  Returns `{:ok, stored_value}`, or `{:error, :full}`.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.update(sd, "seen", ["a"], &["b" | &1])
      {:ok, ["a"]}
      iex> Py.SharedDict.update(sd, "seen", ["a"], &["b" | &1])
      {:ok, ["b", "a"]}
  """
  @spec update(t, key, value, (value -> value)) :: {:ok, value} | {:error, :full | Py.Error.t()}
  def update(sd, key, default, fun) when is_function(fun, 1) do
    update_loop(sd, key!(key, "update/4"), default, fun)
  end

  def update(_sd, _key, _default, fun),
    do: Py.Options.invalid!("fun for Py.SharedDict.update/4", "a function of arity 1", fun)

  defp update_loop(sd, key, default, fun) do
    case fetch_versioned(sd, key) do
      {:ok, value, version} -> update_write(sd, key, default, fun, fun.(value), version)
      :error -> update_write(sd, key, default, fun, default, :absent)
      {:error, _} = error -> error
    end
  end

  defp update_write(sd, key, default, fun, new, cond) do
    case write(sd, key, new, nil, cond) do
      :ok -> {:ok, new}
      {:error, :conflict} -> update_loop(sd, key, default, fun)
      error -> error
    end
  end

  @doc """
  Like `update/4`, returning the stored value and raising on an error.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.update!(sd, "n", 1, &(&1 * 10))
      1
  """
  @spec update!(t, key, value, (value -> value)) :: value
  def update!(sd, key, default, fun) do
    case update(sd, key, default, fun) do
      {:ok, value} -> value
      error -> bang!(error)
    end
  end

  @doc """
  Adds `by` (an integer, 1 by default) to the integer under `key` in one
  atomic step, starting from 0 when the key is missing, and returns the new
  value. The key keeps its expiry. A value that is not an integer gives
  `{:error, %Py.Error{type: :not_integer}}`.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.incr(sd, "hits")
      {:ok, 1}
      iex> Py.SharedDict.incr(sd, "hits", -5)
      {:ok, -4}
  """
  @spec incr(t, key, integer) :: {:ok, integer} | {:error, Py.Error.t()}
  def incr(sd, key, by \\ 1) do
    key = key!(key, "incr/3")

    unless is_integer(by) and by >= -0x8000000000000000 and by <= 0x7FFFFFFFFFFFFFFF do
      Py.Options.invalid!("increment for Py.SharedDict.incr/3", "a 64-bit integer", by)
    end

    run(sd, :incr, [key, by], &Native.shared_dict_incr(&1, key, by))
  end

  @doc """
  Like `incr/3`, returning the new value and raising `Py.Error` on an error.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.incr!(sd, "n", 2)
      2
  """
  @spec incr!(t, key, integer) :: integer
  def incr!(sd, key, by \\ 1), do: sd |> incr(key, by) |> bang!()

  @doc """
  Makes `key` expire `ms` milliseconds from now (0: at once). Returns
  `false` when the key is missing.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.put(sd, "a", 1)
      iex> Py.SharedDict.expire(sd, "a", 0)
      true
      iex> Py.SharedDict.get(sd, "a")
      nil
  """
  @spec expire(t, key, non_neg_integer) :: boolean | {:error, Py.Error.t()}
  def expire(sd, key, ms) do
    key = key!(key, "expire/3")

    ms =
      if ms == 0,
        do: 0,
        else: Py.Options.value!(ms, :pos_integer, "ms for Py.SharedDict.expire/3")

    run(sd, :expire, [key, ms], &Native.shared_dict_expire(&1, key, ms))
  end

  @doc """
  Removes `key`'s expiry. Returns `false` when the key is missing.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.put(sd, "a", 1, ttl: 1_000)
      iex> Py.SharedDict.persist(sd, "a")
      true
      iex> Py.SharedDict.ttl(sd, "a")
      :infinity
  """
  @spec persist(t, key) :: boolean | {:error, Py.Error.t()}
  def persist(sd, key) do
    key = key!(key, "persist/2")
    run(sd, :persist, [key], &Native.shared_dict_persist(&1, key))
  end

  @doc """
  Removes every key at once (no per-key events).

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.put(sd, "a", 1)
      iex> Py.SharedDict.clear(sd)
      :ok
      iex> Py.SharedDict.size(sd)
      0
  """
  @spec clear(t) :: :ok | {:error, Py.Error.t()}
  def clear(sd), do: run(sd, :clear, [], &Native.shared_dict_clear/1)

  # ── Events ──────────────────────────────────────────────────────────────

  @doc """
  Sends the caller `{:shared_dict, sd, event, key}` for every later event
  of `events` (`:put`, `:delete`, `:expire`; all three by default), with
  `sd` exactly as `new/1` returned it.

  `:put` is any write (put, update, incr); `:delete` a delete, a take or an
  LRU eviction; `:expire` a key that expired (sent when the sweeper or a
  write removes it, within about 100 ms of its expiry). `clear/1` sends
  nothing. Messages come from one thread, in the order the changes were
  made to each key. Subscribing again adds events; a subscriber that exits
  is dropped.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.subscribe(sd, [:put])
      :ok
      iex> Py.SharedDict.put(sd, "a", 1)
      iex> receive do
      ...>   {:shared_dict, ^sd, :put, key} -> key
      ...> after
      ...>   5_000 -> :timeout
      ...> end
      "a"
  """
  @spec subscribe(t, [:put | :delete | :expire]) :: :ok
  defdelegate subscribe(sd, events \\ Options.events()), to: Events

  @doc """
  Stops the caller's events: all of them, or only `events`.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.subscribe(sd)
      iex> Py.SharedDict.unsubscribe(sd)
      :ok
  """
  @spec unsubscribe(t, [:put | :delete | :expire] | nil) :: :ok
  defdelegate unsubscribe(sd, events \\ nil), to: Events

  # ── Per-key locks ───────────────────────────────────────────────────────

  @doc """
  Takes the per-key lock on `key` for the calling process, waiting up to
  `timeout:` milliseconds (5,000 by default; `:infinity`).

  Locks are advisory: they exclude other lockers (BEAM processes and Python
  threads), not reads or writes. A process holding a lock may take it again
  (it is not counted). The lock is released by `unlock/2`, or at once when
  the holder exits. A waiting process waits in `receive`, never on a
  scheduler. On a `{:redis, _}` dict the lock excludes holders on every
  node; it has a lease that the holder's node renews, so a lock whose node
  died is free again after the lease (see the guide).

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.lock(sd, "account:1")
      :ok
      iex> Task.async(fn -> Py.SharedDict.lock(sd, "account:1", timeout: 10) end) |> Task.await()
      {:error, :timeout}
      iex> Py.SharedDict.unlock(sd, "account:1")
      :ok
  """
  @spec lock(t, key, timeout: timeout) :: :ok | {:error, :timeout | Py.Error.t()}
  defdelegate lock(sd, key, opts \\ []), to: Locks

  @doc """
  Releases the caller's lock on `key`; `{:error, :not_held}` when the caller
  does not hold it.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.unlock(sd, "k")
      {:error, :not_held}
  """
  @spec unlock(t, key) :: :ok | {:error, :not_held | Py.Error.t()}
  defdelegate unlock(sd, key), to: Locks

  @doc """
  Runs `fun` holding the lock on `key` and releases it afterwards, also when
  `fun` raises or throws: `{:ok, fun_result}` or `{:error, :timeout}`.

  ## Example

      iex> sd = Py.SharedDict.new!()
      iex> Py.SharedDict.with_lock(sd, "k", fn -> :done end)
      {:ok, :done}
  """
  @spec with_lock(t, key, (() -> result), timeout: timeout) ::
          {:ok, result} | {:error, :timeout | Py.Error.t()}
        when result: term
  def with_lock(sd, key, fun, opts \\ []) when is_function(fun, 0) do
    Locks.with_lock(sd, key, fun, opts)
  end

  @doc false
  defdelegate native(sd, fun), to: Dispatch
end
