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

  alias Py.Coalesce.{Flight, Stats}

  @typedoc "Counters of a group (see the moduledoc)."
  @type stats :: %{
          hits: non_neg_integer,
          misses: non_neg_integer,
          errors: non_neg_integer,
          active: non_neg_integer,
          hit_rate: float
        }

  @flights :py_coalesce_flights
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
  # A Python call is run by its first caller (the leader) itself, with no
  # process in between: the in-flight entry is {gk, {:leader, id, pid}}, and
  # the callers that join it put themselves in the waiters table as
  # {{id, pid, tag}} (an ordered range the leader takes when the call ends).
  # A joiner is sure to be served once its entry is in and the in-flight
  # entry still stands; if the key was given up meanwhile, :ets.take of its
  # own entry tells whether the leader took it (wait) or not (start over).
  # Should the leader time out or die while others wait, the call is handed
  # to a Flight process (adopt/5), its reply redirected there.
  #
  # An Elixir function runs in a Flight process of its own ({gk, pid}).
  @spec await(term, term, Flight.execution(), timeout) :: term
  def await(group, key, execution, timeout) do
    deadline = if timeout == :infinity, do: :infinity, else: now() + timeout
    join({group, key}, execution, timeout, deadline)
  end

  defp join(gk, execution, timeout, deadline) do
    case :ets.lookup(@flights, gk) do
      [{_, {:leader, id, leader}}] ->
        follow(gk, id, leader, execution, timeout, deadline)

      [{_, flight}] ->
        mref = Process.monitor(flight)
        send(flight, {:join, self(), mref})
        wait(gk, execution, flight, flight, mref, mref, timeout, deadline)

      [] ->
        start(gk, execution, timeout, deadline)
    end
  end

  defp start(gk, {:fun, _} = execution, timeout, deadline) do
    tag = make_ref()
    {flight, mref} = spawn_monitor(Flight, :init, [gk, execution, self(), tag])
    wait(gk, execution, flight, flight, mref, tag, timeout, deadline)
  end

  defp start({group, _} = gk, {:python, cref, namespace, job} = execution, timeout, deadline) do
    id = make_ref()
    :ets.insert(@waiters, {{id}, nil})

    if :ets.insert_new(@flights, {gk, {:leader, id, self()}}) do
      Stats.started(group)
      ref = make_ref()

      # :infinity: the leader cancels the call itself, and only when nobody
      # else waits for it; each caller applies its own timeout.
      case Py.Call.start(cref, namespace, ref, job, :infinity) do
        {:done, result, _timing} ->
          settle(gk, id, result)

        {:running, handle} ->
          run_led(gk, id, handle, ref, timeout, deadline)

        # Waited for room in a full queue (`overload: :wait`) first.
        {:running, handle, _left} ->
          run_led(gk, id, handle, ref, timeout, deadline)
      end
    else
      :ets.delete(@waiters, {id})
      join(gk, execution, timeout, deadline)
    end
  end

  defp run_led(gk, id, handle, ref, timeout, deadline) do
    # Kept with the marker, for whoever takes the call over.
    :ets.insert(@waiters, {{id}, {handle, ref}})
    # A call that did not answer at once is watched over: should the leader
    # die with nobody else waiting, no waiter would notice, and the call
    # would run on with its key claimed.
    leader = self()
    guard = spawn(fn -> guard(gk, id, leader) end)
    lead(gk, id, handle, ref, guard, timeout, deadline)
  end

  defp guard({group, _} = gk, id, leader) do
    mref = Process.monitor(leader)

    receive do
      :done ->
        :ok

      {:DOWN, ^mref, :process, _, reason} ->
        :ets.delete_object(@flights, {gk, {:leader, id, leader}})

        case :ets.take(@waiters, {id}) do
          [{_, call}] -> leader_died(group, id, call, leader, reason)
          [] -> :ok
        end
    end
  end

  # The leader waits for its call's reply, running the callbacks the Python
  # code makes meanwhile (Py.Callback), as any caller does.
  defp lead(gk, id, handle, ref, guard, timeout, deadline) do
    receive do
      {^ref, reply, queue_us, run_us} ->
        send(guard, :done)
        {result, _timing} = Py.Call.finish(reply, queue_us, run_us)
        settle(gk, id, result)

      {^ref, :callback, request} ->
        Py.Callback.run(request)
        lead(gk, id, handle, ref, guard, timeout, deadline)

      # Its output and log records (Py.Output), written from here.
      {^ref, :io, {stream, text}} ->
        Py.Output.write(stream, text)
        lead(gk, id, handle, ref, guard, timeout, deadline)

      {^ref, :log, {levelno, name, message}} ->
        Py.Output.log(levelno, name, message)
        lead(gk, id, handle, ref, guard, timeout, deadline)
    after
      remaining(deadline) ->
        send(guard, :done)
        leader_timed_out(gk, id, handle, ref, timeout)
    end
  end

  # The leader's call ended: give the key up, then answer every waiter.
  defp settle({group, _} = gk, id, result) do
    :ets.delete_object(@flights, {gk, {:leader, id, self()}})
    waiters = take_waiters(id)
    :ets.delete(@waiters, {id})
    # Counted before anyone is answered, as a Flight does.
    Stats.finished(group, length(waiters), Flight.error?(result))
    Enum.each(waiters, fn {pid, tag} -> send(pid, {tag, result}) end)
    result
  end

  # The waiters of execution `id` that have not left, taken out one by one
  # (:ets.take is atomic per entry, so a waiter leaving at the same moment
  # is either taken here or gone, never both).
  defp take_waiters(id) do
    @waiters
    |> :ets.select([{{{id, :"$1", :"$2"}}, [], [{{:"$1", :"$2"}}]}])
    |> Enum.filter(fn {pid, tag} -> :ets.take(@waiters, {id, pid, tag}) != [] end)
  end

  defp leader_timed_out({group, _} = gk, id, handle, ref, timeout) do
    :ets.delete_object(@flights, {gk, {:leader, id, self()}})

    case take_waiters(id) do
      [] ->
        :ets.delete(@waiters, {id})

        result =
          case Py.Call.cancel(handle) do
            :cancelled -> timeout_error(timeout)
            :replied -> receive_reply(ref, timeout)
          end

        Stats.finished(group, 0, Flight.error?(result))
        result

      waiters ->
        :ets.delete(@waiters, {id})

        case hand_over(group, {handle, ref}, waiters) do
          :handed_over ->
            timeout_error(timeout)

          :sent ->
            # The reply came here already: share it from here.
            result = receive_reply(ref, timeout)
            Stats.finished(group, length(waiters), Flight.error?(result))
            Enum.each(waiters, fn {pid, tag} -> send(pid, {tag, result}) end)
            result
        end
    end
  end

  # Gives a running call with waiters to a Flight of its own, under a new
  # marker (the flight counts the execution's end through it). `:sent` when
  # the reply has gone to the leader already: nothing was handed over.
  defp hand_over(group, {handle, ref}, waiters) do
    id = make_ref()
    :ets.insert(@waiters, {{id}, nil})
    flight = spawn(Flight, :adopt, [group, id, ref, handle, waiters])

    case Py.Call.redirect(handle, flight) do
      :ok ->
        Enum.each(waiters, fn {pid, tag} -> send(pid, {tag, :adopted, flight, id}) end)
        :handed_over

      :sent ->
        Process.exit(flight, :kill)
        :ets.delete(@waiters, {id})
        :sent
    end
  end

  defp receive_reply(ref, timeout) do
    receive do
      {^ref, reply, queue_us, run_us} ->
        {result, _timing} = Py.Call.finish(reply, queue_us, run_us)
        result
    after
      Py.Limits.promised_reply_ms() ->
        {:error,
         %Py.Error{
           type: :timeout,
           message: "coalesced Python call exceeded #{timeout} ms and its reply was lost"
         }}
    end
  end

  defp timeout_error(timeout) do
    {:error,
     %Py.Error{
       type: :timeout,
       message:
         "coalesced call exceeded #{timeout} ms (the shared execution goes on for other callers)"
     }}
  end

  # Joins the Python call `leader` runs.
  defp follow(gk, id, leader, execution, timeout, deadline) do
    tag = make_ref()
    entry = {id, self(), tag}
    :ets.insert(@waiters, {entry})
    mref = Process.monitor(leader)

    served? =
      case :ets.lookup(@flights, gk) do
        [{_, {:leader, ^id, ^leader}}] -> true
        # The key was given up meanwhile: served if the leader took us.
        _ -> :ets.take(@waiters, entry) == []
      end

    if served? do
      follow_wait(gk, id, entry, leader, mref, execution, timeout, deadline)
    else
      Process.demonitor(mref, [:flush])
      join(gk, execution, timeout, deadline)
    end
  end

  defp follow_wait(
         {group, _} = gk,
         id,
         {_, _, tag} = entry,
         leader,
         mref,
         execution,
         timeout,
         deadline
       ) do
    receive do
      {^tag, :adopted, flight, flight_id} ->
        Process.demonitor(mref, [:flush])
        fmref = Process.monitor(flight)
        wait(gk, execution, flight, flight_id, fmref, tag, timeout, deadline)

      {^tag, result} ->
        Process.demonitor(mref, [:flush])
        result

      {:DOWN, ^mref, :process, _, reason} ->
        # The leader died before answering: the first waiter to notice
        # takes the call over (or, when it cannot, tells everyone).
        :ets.delete_object(@flights, {gk, {:leader, id, leader}})

        case :ets.take(@waiters, {id}) do
          [{_, call}] -> leader_died(group, id, call, leader, reason)
          [] -> :ok
        end

        follow_wait(gk, id, entry, leader, make_ref(), execution, timeout, deadline)
    after
      remaining(deadline) ->
        Process.demonitor(mref, [:flush])

        case :ets.take(@waiters, entry) do
          [_] ->
            timeout_error(timeout)

          [] ->
            # Taken by the leader (or a successor) just now: its message is
            # on the way.
            receive do
              {^tag, :adopted, flight, _flight_id} ->
                send(flight, {:leave, tag})
                timeout_error(timeout)

              {^tag, result} ->
                result
            after
              Py.Limits.promised_reply_ms() -> timeout_error(timeout)
            end
        end
    end
  end

  # Run by the waiter that took the marker of a dead leader's call (so it
  # runs once per call): the
  # call goes on in a Flight for every waiter, or, when it had not started
  # or its reply went to the dead leader, every waiter gets the error.
  defp leader_died(group, id, call, leader, reason) do
    case take_waiters(id) do
      [] ->
        # Nobody waits for it: stop it.
        with {handle, _ref} <- call, do: Py.Call.cancel(handle)
        Stats.finished(group, 0, true)

      waiters ->
        crashed = Flight.crashed(leader, "exited: " <> inspect(reason))
        adopted = call != nil and hand_over(group, call, waiters) == :handed_over

        unless adopted do
          Stats.finished(group, 0, true)
          Enum.each(waiters, fn {pid, tag} -> send(pid, {tag, crashed}) end)
        end
    end
  end

  defp wait(gk, execution, flight, id, mref, tag, timeout, deadline) do
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
        :ets.delete_object(@flights, {gk, flight})
        join(gk, execution, timeout, deadline)

      {:DOWN, ^mref, :process, _, reason} ->
        flight_died(gk, flight, id, reason)
    after
      remaining(deadline) -> give_up(flight, mref, tag, timeout)
    end
  end

  defp give_up(flight, mref, tag, timeout) do
    send(flight, {:leave, tag})
    Process.demonitor(mref, [:flush])

    # The result may have arrived meanwhile: take it rather than lose it.
    receive do
      {^tag, result} -> result
    after
      0 -> timeout_error(timeout)
    end
  end

  # The flight process itself was killed: it cannot clean up, so the first
  # waiter to notice takes its marker and counts it as an error.
  defp flight_died({group, _} = gk, flight, id, reason) do
    :ets.delete_object(@flights, {gk, flight})
    if :ets.take(@waiters, {id}) != [], do: Stats.finished(group, 0, true)
    Flight.crashed(flight, "exited: " <> inspect(reason))
  end

  defp now, do: System.monotonic_time(:millisecond)

  defp remaining(:infinity), do: :infinity
  defp remaining(deadline), do: max(deadline - now(), 0)

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
    :ets.delete(@flights, {group, key})
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
    :ets.match_delete(@flights, {{group, :_}, :_})
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
