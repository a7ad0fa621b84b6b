defmodule Py.State do
  @moduledoc """
  One global key/value store for the whole VM, shared with every Python
  context: erlang_python's State API.

  It is a `Py.SharedDict` named `"pybridge.state"`, made on first use, so
  it has the same rules (string keys, plain-data values, atomic counters)
  and Python reaches the same data through `erlang.state_get` and friends,
  or `SharedDict("pybridge.state")`. Use it for a few process-wide values;
  give a feature its own `Py.SharedDict` when it needs expiry, bounds,
  events or its own lifetime.

  ## Example

      iex> Py.State.put("doc_state_greeting", "hello")
      :ok
      iex> Py.State.get("doc_state_greeting")
      "hello"
      iex> Py.State.incr("doc_state_hits")
      1
      iex> Py.State.decr("doc_state_hits", 5)
      -4
  """

  alias Py.SharedDict

  @name "pybridge.state"

  @doc "The name of the `Py.SharedDict` behind the State API."
  @spec name() :: String.t()
  def name, do: @name

  @doc """
  The `Py.SharedDict` behind the State API.

  ## Example

      iex> Py.State.dict().name
      "pybridge.state"
  """
  @spec dict() :: SharedDict.t()
  def dict do
    case SharedDict.lookup(@name) do
      {:ok, sd} ->
        sd

      :error ->
        case SharedDict.new(name: @name) do
          {:ok, sd} -> sd
          # Another process made it meanwhile.
          {:error, :exists} -> dict()
        end
    end
  end

  @doc """
  Stores `value` under `key` (a string).

  ## Example

      iex> Py.State.put("doc_state_put", %{a: 1})
      :ok
  """
  @spec put(SharedDict.key(), SharedDict.value()) :: :ok
  def put(key, value), do: SharedDict.put!(dict(), key, value)

  @doc """
  The value of `key`, or `default` when it is missing.

  ## Example

      iex> Py.State.get("doc_state_missing", 0)
      0
  """
  @spec get(SharedDict.key(), SharedDict.value()) :: SharedDict.value()
  def get(key, default \\ nil), do: SharedDict.get(dict(), key, default)

  @doc """
  `{:ok, value}`, or `:error` when `key` is missing.

  ## Example

      iex> Py.State.fetch("doc_state_missing")
      :error
  """
  @spec fetch(SharedDict.key()) :: {:ok, SharedDict.value()} | :error
  def fetch(key), do: SharedDict.fetch(dict(), key)

  @doc """
  Removes `key` (`:ok` also when it is missing).

  ## Example

      iex> Py.State.delete("doc_state_missing")
      :ok
  """
  @spec delete(SharedDict.key()) :: :ok
  def delete(key), do: SharedDict.delete(dict(), key)

  @doc """
  Every key.

  ## Example

      iex> Py.State.put("doc_state_keys", 1)
      iex> "doc_state_keys" in Py.State.keys()
      true
  """
  @spec keys() :: [SharedDict.key()]
  def keys, do: SharedDict.keys(dict())

  @doc """
  Removes every key.

  ## Example

      Py.State.clear()
      #=> :ok
  """
  @spec clear() :: :ok
  def clear, do: SharedDict.clear(dict())

  @doc """
  Adds `by` to the integer under `key` atomically (from 0 when missing) and
  returns the new value; raises `Py.Error` (`:not_integer`) for a value
  that is not an integer.

  ## Example

      iex> Py.State.incr("doc_state_incr", 10)
      10
  """
  @spec incr(SharedDict.key(), integer) :: integer
  def incr(key, by \\ 1), do: SharedDict.incr!(dict(), key, by)

  @doc """
  Subtracts `by` from the integer under `key` atomically; see `incr/2`.

  ## Example

      iex> Py.State.decr("doc_state_decr")
      -1
  """
  @spec decr(SharedDict.key(), integer) :: integer
  def decr(key, by \\ 1), do: SharedDict.incr!(dict(), key, if(is_integer(by), do: -by, else: by))
end
