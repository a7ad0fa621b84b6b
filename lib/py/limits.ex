defmodule Py.Limits do
  @moduledoc """
  Every limit and default of the Elixir side, in one place.

  The native side keeps its own in `native/pybridge/src/limits.rs` (nesting
  depth, atom length, truncation lengths, batch sizes); this module holds
  the ones the BEAM enforces or falls back to: the longest timeout a caller
  may ask for, the defaults of settings that `config :pybridge` leaves out,
  and the grace periods the call path allows itself. The modules that own
  each option read their value here, so changing a limit is one line and
  the documentation of every limit is in one page.

  Where a value has a twin in `limits.rs`, the two are checked to agree by
  the test suite.
  """

  @doc """
  The longest finite timeout, in milliseconds, that a `:timeout` option may
  have: 4,294,967,295 (about 49.7 days), the BEAM's limit for a timer
  (`receive ... after`, `:erpc`).

      iex> Py.Limits.max_timeout_ms()
      4_294_967_295
  """
  @spec max_timeout_ms() :: pos_integer
  def max_timeout_ms, do: 4_294_967_295

  @doc """
  The timeout of a call when neither the call nor `config :pybridge,
  timeout:` sets one, in milliseconds. The Erlang facade's `await/1`
  waits this long too.

      iex> Py.Limits.default_timeout_ms()
      30_000
  """
  @spec default_timeout_ms() :: pos_integer
  def default_timeout_ms, do: 30_000

  @doc """
  How long a caller waits for a reply the NIF promised (its cancel said the
  reply was already sent) before giving up with a `:timeout` error, in
  milliseconds. Only reachable if the native side broke its contract.

      iex> Py.Limits.promised_reply_ms()
      10_000
  """
  @spec promised_reply_ms() :: pos_integer
  def promised_reply_ms, do: 10_000

  @doc """
  How deep callbacks may nest in one process (Python → BEAM → Python → …,
  see `Py.Callback`): a callback past this depth makes `erlang.call` raise
  `erlang.Error` ("callback depth limit reached") instead of recursing for
  ever. Each level holds one worker thread of the context.

      iex> Py.Limits.max_callback_depth()
      64
  """
  @spec max_callback_depth() :: pos_integer
  def max_callback_depth, do: 64

  @doc """
  How much longer than a call's own timeout `Py.Remote` waits for the other
  node's answer, in milliseconds (the remote call times out first and its
  error travels back within this margin).

      iex> Py.Limits.remote_margin_ms()
      2_000
  """
  @spec remote_margin_ms() :: non_neg_integer
  def remote_margin_ms, do: 2_000

  @doc """
  How long `Py.Coalesce.stats/0` waits for each interpreter's Python-side
  statistics, in milliseconds, so that statistics never hang on a context
  whose workers are all busy.

      iex> Py.Limits.python_stats_timeout_ms()
      1_000
  """
  @spec python_stats_timeout_ms() :: pos_integer
  def python_stats_timeout_ms, do: 1_000

  @doc """
  The default of `config :pybridge, switch_interval_ms:` (Python's
  `sys.setswitchinterval`; Python's own default is 5 ms, see `Py.Runtime`).

      iex> Py.Limits.default_switch_interval_ms()
      1
  """
  @spec default_switch_interval_ms() :: pos_integer
  def default_switch_interval_ms, do: 1

  @doc """
  The default of `config :pybridge, max_result_items:`: the most items
  (values, keys, container elements) one converted result may hold. The
  same number as `DEFAULT_MAX_RESULT_ITEMS` in `limits.rs`.

      iex> Py.Limits.default_max_result_items()
      10_000_000
  """
  @spec default_max_result_items() :: pos_integer
  def default_max_result_items, do: 10_000_000

  @doc """
  The default of `config :pybridge, max_workers:` and of a pool's
  `:max_workers`: how many threads (home worker plus overflow workers) one
  context may use.

      iex> Py.Limits.default_max_workers()
      256
  """
  @spec default_max_workers() :: pos_integer
  def default_max_workers, do: 256

  @doc """
  The default of `config :pybridge, max_queue:` and of a pool's
  `:max_queue`: how many calls may wait in one context's queue; a call
  beyond it is refused as `:overloaded` (or waits for room with `overload:
  :wait`). Twin of `DEFAULT_MAX_QUEUE` in limits.rs.

      iex> Py.Limits.default_max_queue()
      10_000
  """
  @spec default_max_queue() :: pos_integer
  def default_max_queue, do: 10_000

  @doc """
  The most items one batch of a stream may fetch (`Py.stream/4`'s
  `:batch`). The same number as `MAX_STREAM_BATCH` in `limits.rs`.

      iex> Py.Limits.max_stream_batch()
      1_000_000
  """
  @spec max_stream_batch() :: pos_integer
  def max_stream_batch, do: 1_000_000

  @doc """
  Items a stream fetches per call unless `:batch` says otherwise.

      iex> Py.Limits.default_stream_batch()
      1_000
  """
  @spec default_stream_batch() :: pos_integer
  def default_stream_batch, do: 1_000
end
