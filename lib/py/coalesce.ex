defmodule Py.Coalesce do
  @moduledoc """
  Request coalescing: concurrent callers asking for the same thing share one
  execution and its outcome, so a burst of identical requests (the same
  embedding, prediction or database read) costs one call.

      # Ten thousand processes ask at once; the function runs once.
      Py.Coalesce.run(:users, user_id, fn -> load_user(user_id) end)

      # The same for a Python call, keyed on module, function and arguments:
      Py.call(:model, :predict, [input], coalesce: true)

  Callers of `run/4` with the same `group` and `key` while an execution is in
  flight wait for it and all receive exactly what it returned, `{:ok, value}`
  and `{:error, reason}` alike. Once it has finished the key is free again:
  nothing is cached.

  Unlike Go's `singleflight`, on which the semantics are modelled:

    * **each caller has its own `timeout:`**. A caller that gives up gets
      `{:error, %Py.Error{type: :timeout}}`; the execution goes on for the
      others;
    * **no caller's departure ends the execution for the others.** A
      Python call runs from its first caller, with nothing spawned; if that
      caller times out or dies while others wait, the call is handed to a
      process of its own and its reply redirected there. An Elixir function
      runs in a process of its own from the start. Only when the last caller
      has gone (timed out or exited) is the execution cancelled: its process
      is killed, or its Python interrupted;
    * **a crash is shared as an error, never as a hang or a `nil`.** When the
      function raises, throws or exits, or its process is killed, every
      caller gets `{:error, %Py.Error{type: :coalesce_crashed}}` naming the
      process and the reason.

  `forget/2` and `forget_all/1` let new callers start a new execution while
  an old one still runs; its callers still get its result. Coalescing is
  local to a node. The [coalescing guide](coalescing.md) compares the
  semantics with singleflight's in detail.

  ## Statistics

  Counted per group (`stats/1`): `misses` executions started, `hits` callers
  that shared one instead, `errors` executions whose outcome was an error or
  a crash, `active` executions in flight now, and `hit_rate`,
  `hits / (hits + misses)`.

  Python code coalesces with `erlang.SharedCall` and `erlang.AsyncSharedCall`
  (shared-call-py's API); an instance given a name,
  `SharedCall(name="embeddings")`, appears in `stats/0` as the group
  `{:python, "embeddings"}`, summed over the instances of that name in every
  interpreter.
  """

  alias Py.Coalesce.{Flight, Leader, Stats}

  @typedoc "Counters of a group (see the moduledoc)."
  @type stats :: %{
          hits: non_neg_integer,
          misses: non_neg_integer,
          errors: non_neg_integer,
          active: non_neg_integer,
          hit_rate: float
        }

  @waiters :py_coalesce_waiters
  @run_schema [timeout: :timeout]

  @doc """
  Runs `fun`, or waits for the execution of the same `group` and `key`
  already in flight, and returns what it returned.

  `group` and `key` are any terms (compared exactly: `1` and `1.0` differ).
  Option `:timeout` (milliseconds or `:infinity`, default
  `config :pybridge, timeout:`, 30 s) bounds this caller's wait only.

  Returns `fun`'s value, `{:error, %Py.Error{type: :timeout}}` when this
  caller's timeout passed first, or
  `{:error, %Py.Error{type: :coalesce_crashed}}` when the execution raised,
  threw, exited or was killed.

  ## Examples

      iex> Py.Coalesce.run(:doc, :answer, fn -> {:ok, 42} end)
      {:ok, 42}
      iex> {:error, %Py.Error{type: :coalesce_crashed}} =
      ...>   Py.Coalesce.run(:doc, :boom, fn -> raise "boom" end)
  """
  @spec run(term, term, (() -> result), [{:timeout, timeout}]) ::
          result | {:error, Py.Error.t()}
        when result: term
  def run(group, key, fun, opts \\ [])

  def run(group, key, fun, opts) when is_function(fun, 0) do
    timeout =
      case opts do
        [] -> Py.default_timeout()
        opts -> opts |> Py.Options.validate!(@run_schema, "Py.Coalesce.run/4") |> timeout()
      end

    await(group, key, {:fun, fun}, timeout)
  end

  def run(_group, _key, fun, _opts),
    do: Py.Options.invalid!("function for Py.Coalesce.run/4", "a 0-arity function", fun)

  defp timeout(opts), do: Keyword.get_lazy(opts, :timeout, &Py.default_timeout/0)

  @doc false
  # Waits for the execution of {group, key}, starting it when there is none.
  # Py.Call.run/5 calls this for `coalesce:`.
  #
  # A Python call is run by its first caller itself (Py.Coalesce.Leader);
  # an Elixir function runs in a Flight process of its own. Both hold their
  # key in the native in-flight table (native/pybridge/src/coalesce).
  @spec await(term, term, Flight.execution(), timeout) :: term
  def await(group, key, execution, timeout), do: join({group, key}, execution, timeout, nil)

  @doc false
  # Joins the execution of `gk` in flight, or starts one. `deadline` is nil
  # until the caller first waits (see deadline/1).
  @spec join({term, term}, Flight.execution(), timeout, integer | :infinity | nil) :: term
  def join(gk, {:python, _, _, _} = execution, timeout, deadline),
    do: Leader.run(gk, execution, timeout, deadline)

  def join(gk, execution, timeout, deadline),
    do: found(Py.Native.coalesce_enter(gk, self(), nil), gk, execution, timeout, deadline)

  @doc false
  # join/4 with the in-flight table entered already: `entered` is what
  # Py.Native.coalesce_enter/3 answered, other than a claim.
  @spec found(term, {term, term}, Flight.execution(), timeout, integer | :infinity | nil) ::
          term
  def found(entered, gk, execution, timeout, nil) do
    # The deadline starts now: the first wait can take `timeout` as it is,
    # without reading the clock again.
    found(entered, gk, execution, timeout, deadline(timeout), timeout)
  end

  def found(entered, gk, execution, timeout, deadline),
    do: found(entered, gk, execution, timeout, deadline, remaining(deadline))

  defp found(entered, gk, execution, timeout, deadline, wait_ms) do
    case entered do
      {:joined, tag, leader} ->
        Leader.follow(gk, tag, leader, execution, timeout, deadline, wait_ms)

      {:flight, flight} ->
        mref = Process.monitor(flight)
        send(flight, {:join, self(), mref})
        wait(gk, execution, flight, flight, mref, mref, timeout, deadline)

      nil ->
        start(gk, execution, timeout, deadline)
    end
  end

  defp start(gk, {:fun, _} = execution, timeout, deadline) do
    tag = make_ref()
    {flight, mref} = spawn_monitor(Flight, :init, [gk, execution, self(), tag])
    wait(gk, execution, flight, flight, mref, tag, timeout, deadline)
  end

  @doc false
  # Waits for `flight`'s answer, `{tag, result}`; `id` is its marker.
  @spec wait(
          {term, term},
          Flight.execution(),
          pid,
          term,
          reference,
          reference,
          timeout,
          integer | :infinity
        ) :: term
  def wait(gk, execution, flight, id, mref, tag, timeout, deadline) do
    receive do
      {^tag, result} ->
        Process.demonitor(mref, [:flush])
        result

      {:DOWN, ^mref, :process, _, :normal} ->
        # The flight ended without answering us (we joined as it finished
        # or gave up, or another flight claimed the key): start over.
        join(gk, execution, timeout, deadline)

      {:DOWN, ^mref, :process, _, :noproc} ->
        # Found in the table but already dead (killed before it could
        # clean up): clear its entry and start over.
        Py.Native.coalesce_unmap_owner(gk, flight)
        join(gk, execution, timeout, deadline)

      {:DOWN, ^mref, :process, _, reason} ->
        flight_died(gk, flight, id, reason)
    after
      remaining(deadline) -> leave(flight, mref, tag, timeout)
    end
  end

  defp leave(flight, mref, tag, timeout) do
    send(flight, {:leave, tag})
    Process.demonitor(mref, [:flush])

    # The result may have arrived meanwhile: take it rather than lose it.
    receive do
      {^tag, result} -> result
    after
      0 -> Flight.timed_out(timeout)
    end
  end

  # The flight process itself was killed: it cannot clean up, so the first
  # waiter to notice takes its marker and counts it as an error.
  defp flight_died({group, _} = gk, flight, id, reason) do
    Py.Native.coalesce_unmap_owner(gk, flight)
    if :ets.take(@waiters, {id}) != [], do: Stats.finished(group, 0, true)
    Flight.crashed(flight, "exited: " <> inspect(reason))
  end

  @doc false
  # The monotonic time by which a caller with `timeout` stops waiting.
  @spec deadline(timeout) :: integer | :infinity
  def deadline(:infinity), do: :infinity
  def deadline(timeout), do: now() + timeout

  @doc false
  # What is left until `deadline`, for a receive's `after`.
  @spec remaining(integer | :infinity) :: timeout
  def remaining(:infinity), do: :infinity
  def remaining(deadline), do: max(deadline - now(), 0)

  defp now, do: System.monotonic_time(:millisecond)

  @doc false
  # For tests and benches: who holds {group, key} now, `{:leader, pid,
  # joiners}` (a Python call led by its first caller, with how many joiners
  # are in), `{:process, pid, 0}` (a flight) or nil.
  @spec in_flight({term, term}) :: {:leader | :process, pid, non_neg_integer} | nil
  def in_flight(gk), do: Py.Native.coalesce_lookup(gk)

  @doc """
  Forgets the execution of `group` and `key` in flight, if any: callers from
  now on start a new one, while the callers already waiting still get the
  old one's result. Returns `:ok`.

  ## Example

      iex> Py.Coalesce.forget(:doc, :answer)
      :ok
  """
  @spec forget(term, term) :: :ok
  def forget(group, key) do
    Py.Native.coalesce_forget({group, key})
    :ok
  end

  @doc """
  Forgets every execution of `group` in flight (see `forget/2`).

  ## Example

      iex> Py.Coalesce.forget_all(:doc)
      :ok
  """
  @spec forget_all(term) :: :ok
  def forget_all(group) do
    Py.Native.coalesce_forget_all(group)
    :ok
  end

  @doc """
  The counters of `group` (all zero for a group never used); `{:python,
  name}` reads the named Python groups (see the moduledoc).

  ## Example

      iex> {:ok, 1} = Py.Coalesce.run(:doc_stats, :k, fn -> {:ok, 1} end)
      iex> %{misses: 1, hits: 0, errors: 0, active: 0, hit_rate: 0.0} = Py.Coalesce.stats(:doc_stats)
  """
  @spec stats(term) :: stats
  def stats(group), do: Stats.get(group)

  @doc """
  The counters of every group used so far, as a map of group to `t:stats/0`:
  the BEAM's groups, and the named Python groups as `{:python, name}` (each
  interpreter is asked, for at most a second).

  ## Example

      iex> {:ok, 1} = Py.Coalesce.run(:doc_all, :k, fn -> {:ok, 1} end)
      iex> %{doc_all: %{misses: 1}} = Py.Coalesce.stats()
  """
  @spec stats() :: %{term => stats}
  def stats, do: Stats.all()

  @doc """
  Sets the `hits`, `misses` and `errors` of `group` back to zero (`active`
  stays: it counts executions still running). Returns `:ok`.

  ## Example

      iex> Py.Coalesce.reset_stats(:doc_stats)
      :ok
  """
  @spec reset_stats(term) :: :ok
  def reset_stats(group), do: Stats.reset(group)
end
