defmodule Py.Coalesce.Leader do
  @moduledoc false
  # A coalesced Python call, run by its first caller (the leader) itself,
  # with no process in between, and the callers that join it.
  #
  # Tables (owned by Py.Coalesce.Tables):
  #
  #   * the in-flight entry, {{group, key}, joiners, seq, id, pid}, in the
  #     flights table: whoever finds it joins `id`; `joiners` counts the
  #     joiners that committed to it, `seq` (a unique integer) tells this
  #     execution's entry from a later one of the same key;
  #   * each joiner's entry, {{id, pid, tag}}, in the ordered waiters table
  #     (the waiters of one execution are one range of keys);
  #   * the execution's marker, {{id}, call}, beside them: made by the first
  #     joiner (call nil) or by the leader once its call did not answer at
  #     once (call {handle, ref}, kept for whoever takes the call over). A
  #     call nobody joins that answers at once never has one.
  #
  # An uncontended call costs an :ets.lookup that finds nothing and an
  # :ets.insert_new to claim the key, an :ets.take that gives it up and
  # finds the joiner count 0, and one counter update (Py.Coalesce.Stats):
  # the hot path of `coalesce: true` (bench/coalesce.exs). A joiner only
  # reads the marker once it exists, and only its commit writes to the
  # in-flight entry, so a herd of joiners does not queue on one lock.
  #
  # The one rule everything rests on: whoever ends an execution (its leader,
  # the guard of a dead leader, the first waiter to see it die) removes the
  # in-flight entry first, then takes the marker, then (when there is one)
  # takes the waiters' entries one by one. A joiner puts its entry in, makes
  # sure the marker exists, and only then commits: one :ets.update_counter
  # adds it to the entry's joiner count and reads the entry's `seq`, atomic
  # with the removal. If the entry stood and was its execution's, whoever
  # ends the execution removes it after the commit and takes the marker
  # after that, and sees the joiner. A leader whose call answered at once
  # removes its entry with :ets.take and, when the count it reads is 0 (no
  # joiner committed, and none can any more), skips the marker and the
  # waiters: the uncontended case. The other enders remove the entry only
  # if it is still their execution's (its `seq`) and always take the
  # marker.
  #
  # If the commit fails (the execution ended, forget/2 took the key, or the
  # key is another execution's now), the joiner takes its own entry back:
  # gone means somebody took it and will answer; there means nobody did,
  # and it starts over. Either way, when no joiner's entry is left, it
  # deletes a marker without a call: one made after the end would otherwise
  # stay, and no joiner can need it any more (a committed joiner's entry
  # stays until it is answered or leaves).
  #
  # One imprecision, with forget/2 only: a leader whose call answered at
  # once takes whatever entry its key holds. Should forget/2 have taken its
  # own and another caller claimed the key again within those microseconds,
  # it takes that newer entry: a flight's is put back; another leader's is
  # not (that leader may have ended meanwhile, and its entry would stay),
  # so that newer execution counts as forgotten too and is answered through
  # its marker as any forgotten one.
  #
  # Should the leader time out or die while others wait, its running call
  # is handed to a Flight process (hand_over/3), its reply redirected there.

  alias Py.Coalesce
  alias Py.Coalesce.{Flight, Stats, Tables}

  @flights :py_coalesce_flights
  @waiters :py_coalesce_waiters

  @doc false
  # Runs the Python call `execution` for {group, key} as its leader, or,
  # when another caller holds the key already, joins (Py.Coalesce.join/4).
  # `deadline` is nil until this caller has had to wait: an uncontended
  # call answered at once never reads the clock.
  @spec run({term, term}, Flight.execution(), timeout, integer | :infinity | nil) :: term
  def run({_group, _} = gk, execution, timeout, deadline) do
    {flights, _waiters, _stats} = tids = Tables.tids()

    # Looked up first: a herd of callers of one key then only reads its
    # entry, where a failed :ets.insert_new each would take its write lock
    # (about 0.3 µs more per joiner, more than the lookup costs a caller
    # nobody joins).
    case :ets.lookup(flights, gk) do
      [] -> claim(gk, execution, timeout, deadline, tids)
      rows -> Coalesce.found(rows, gk, execution, timeout, deadline)
    end
  end

  @doc false
  # Claims `gk`, found free, and runs its call as its leader; joins when
  # another caller claimed it first.
  @spec claim({term, term}, Flight.execution(), timeout, integer | :infinity | nil) :: term
  def claim(gk, execution, timeout, deadline),
    do: claim(gk, execution, timeout, deadline, Tables.tids())

  defp claim(gk, {:python, cref, namespace, job} = execution, timeout, deadline, tids) do
    # The execution's id tags its call's reply messages too; its sequence
    # number is what a joiner checks when it counts itself in.
    id = make_ref()
    seq = :erlang.unique_integer()

    if :ets.insert_new(elem(tids, 0), {gk, 0, seq, id, self()}) do
      # :infinity: the leader cancels the call itself, and only when nobody
      # else waits for it; each caller applies its own timeout.
      case Py.Call.start(cref, namespace, id, job, :infinity) do
        {:done, result, _timing} ->
          settle(gk, seq, id, result, false, tids)

        {:running, handle} ->
          led(gk, seq, id, handle, id, timeout, deadline)

        # Waited for room in a full queue (`overload: :wait`) first; the
        # caller's time counts from its call being queued.
        {:running, handle, _left} ->
          led(gk, seq, id, handle, id, timeout, deadline)
      end
    else
      Coalesce.join(gk, execution, timeout, deadline)
    end
  end

  # The call did not answer at once: it is counted as active, put in the
  # marker for whoever takes it over, and watched over (should the leader
  # die with nobody else waiting, no waiter would notice, and the call
  # would run on with its key claimed).
  defp led({group, _} = gk, seq, id, handle, ref, timeout, deadline) do
    Stats.started(group)
    mark(id, {handle, ref})
    leader = self()
    guard = spawn(fn -> guard(gk, seq, id, leader) end)
    lead(gk, seq, id, handle, ref, guard, timeout, deadline || Coalesce.deadline(timeout))
  end

  # A joiner may have made the marker already: then the call goes into it.
  defp mark(id, call) do
    cond do
      :ets.insert_new(@waiters, {{id}, call}) -> :ok
      :ets.update_element(@waiters, {id}, {2, call}) -> :ok
      # A joiner that made it took it back just now: again.
      true -> mark(id, call)
    end
  end

  defp guard({group, _} = gk, seq, id, leader) do
    mref = Process.monitor(leader)

    receive do
      :done ->
        :ok

      {:DOWN, ^mref, :process, _, reason} ->
        unclaim(gk, seq)

        case :ets.take(@waiters, {id}) do
          [{_, call}] -> died(group, id, call, leader, reason)
          [] -> :ok
        end
    end
  end

  # The leader waits for its call's reply, running the callbacks the Python
  # code makes meanwhile (Py.Callback), as any caller does.
  defp lead(gk, seq, id, handle, ref, guard, timeout, deadline) do
    receive do
      {^ref, reply, queue_us, run_us} ->
        send(guard, :done)
        {result, _timing} = Py.Call.finish(reply, queue_us, run_us)
        settle(gk, seq, id, result, true, Tables.tids())

      {^ref, :callback, request} ->
        Py.Callback.run(request)
        lead(gk, seq, id, handle, ref, guard, timeout, deadline)

      # Its output and log records (Py.Output), written from here.
      {^ref, :io, {stream, text}} ->
        Py.Output.write(stream, text)
        lead(gk, seq, id, handle, ref, guard, timeout, deadline)

      {^ref, :log, {levelno, name, message}} ->
        Py.Output.log(levelno, name, message)
        lead(gk, seq, id, handle, ref, guard, timeout, deadline)
    after
      Coalesce.remaining(deadline) ->
        send(guard, :done)
        timed_out(gk, seq, id, handle, ref, timeout)
    end
  end

  # The leader's call ended: give the key up, then answer every waiter.
  # `started?`: whether the execution was counted as started (active).
  defp settle({group, _} = gk, seq, id, result, started?, {_, _, stats} = tids) do
    waiters = if started?, do: give_up(gk, seq, id, tids), else: give_up_inline(gk, seq, id, tids)
    hits = length(waiters)
    error? = Flight.error?(result)

    # Counted before anyone is answered, as a Flight does.
    if started?,
      do: Stats.finished(group, hits, error?),
      else: Stats.ran(group, hits, error?, stats)

    Enum.each(waiters, fn {pid, tag} -> send(pid, {tag, result}) end)
    result
  end

  # Ends execution `id` of the leader (self()) whose call answered at once:
  # the key is given up and its entry read in one :ets.take. No joiner
  # counted in (the count is 0) is the uncontended case: nothing else to do.
  # Else the waiters that have not left are taken, as {pid, tag}.
  defp give_up_inline(gk, seq, id, {flights, waiters, _stats}) do
    case :ets.take(flights, gk) do
      [{_, 0, ^seq, _, _}] ->
        []

      taken ->
        # Joiners counted in, or the key was forgotten (forget/2) meanwhile.
        # An entry of another execution, claimed after that forget/2, was
        # taken with it: a flight's is put back (should that flight have
        # ended, its joiners see it gone and start over); another leader's
        # cannot be (that leader may have ended meanwhile, and nobody would
        # take it again), so that execution counts as forgotten too.
        with [{_, flight}] <- taken, do: :ets.insert_new(flights, {gk, flight})
        take_joiners(waiters, id)
    end
  end

  # Ends execution `id` of the leader (self()) after its call ran: the key
  # is given up (if it is still this execution's), and the waiters that
  # have not left are taken, as {pid, tag}.
  defp give_up(gk, seq, id, {_flights, waiters, _stats}) do
    unclaim(gk, seq)
    take_joiners(waiters, id)
  end

  defp take_joiners(waiters, id) do
    case :ets.take(waiters, {id}) do
      [] -> []
      [_marker] -> if joined?(id), do: take_waiters(id), else: []
    end
  end

  # Deletes the in-flight entry of `gk` if it is still execution `seq`'s
  # (:ets.delete_object of the entry as read, again while a joiner's commit
  # changed its count in between; a select_delete costs ~2 µs).
  defp unclaim(gk, seq) do
    case :ets.lookup(@flights, gk) do
      [{_, _joiners, ^seq, _, _} = entry] ->
        :ets.delete_object(@flights, entry)
        unclaim(gk, seq)

      _ ->
        true
    end
  end

  # Whether any joiner's entry {id, pid, tag} is in: the first key after
  # {id, 0, 0} (a number sorts before every pid).
  defp joined?(id), do: match?({^id, _, _}, :ets.next(@waiters, {id, 0, 0}))

  # The waiters of execution `id` that have not left, taken out one by one
  # (:ets.take is atomic per entry, so a waiter leaving at the same moment
  # is either taken here or gone, never both).
  defp take_waiters(id) do
    @waiters
    |> :ets.select([{{{id, :"$1", :"$2"}}, [], [{{:"$1", :"$2"}}]}])
    |> Enum.filter(fn {pid, tag} -> :ets.take(@waiters, {id, pid, tag}) != [] end)
  end

  defp timed_out({group, _} = gk, seq, id, handle, ref, timeout) do
    case give_up(gk, seq, id, Tables.tids()) do
      [] ->
        result =
          case Py.Call.cancel(handle) do
            :cancelled -> Flight.timed_out(timeout)
            :replied -> receive_reply(ref, timeout)
          end

        Stats.finished(group, 0, Flight.error?(result))
        result

      waiters ->
        case hand_over(group, {handle, ref}, waiters) do
          :handed_over ->
            Flight.timed_out(timeout)

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

  @doc false
  # Joins execution `id`, which `leader` runs (see the moduledoc), for at
  # most `wait_ms`, the time left until `deadline`.
  @spec follow(
          {term, term},
          integer,
          reference,
          pid,
          Flight.execution(),
          timeout,
          integer | :infinity,
          timeout
        ) :: term
  def follow(gk, seq, id, leader, execution, timeout, deadline, wait_ms) do
    tag = make_ref()
    entry = {id, self(), tag}
    mref = Process.monitor(leader)
    # From here to the count below, the entry is in but the join not yet
    # sure: keep it short.
    :ets.insert(@waiters, {entry})
    :ets.member(@waiters, {id}) or :ets.insert_new(@waiters, {{id}, nil})

    if counted_in?(gk, seq) do
      follow_wait(gk, seq, id, entry, leader, mref, execution, timeout, deadline, wait_ms)
    else
      # The execution ended, or the key was forgotten.
      served? = :ets.take(@waiters, entry) == []
      unjoin(id)

      Process.demonitor(mref, [:flush])

      if served?,
        # Somebody took the entry and answers it; the marker was theirs.
        do: follow_wait(gk, seq, id, entry, leader, nil, execution, timeout, deadline, wait_ms),
        else: Coalesce.join(gk, execution, timeout, deadline)
    end
  end

  # The joiner's commit: adds one to the count of joiners of the in-flight
  # entry of `gk` if it is still execution `seq`'s (atomic with the leader's
  # :ets.take of that entry). Counting in another execution's entry (the
  # key was claimed again meanwhile) only sends that one's leader down its
  # slower path; a flight's entry, {gk, pid}, has no count (badarg).
  defp counted_in?(gk, seq) do
    match?([_, ^seq], :ets.update_counter(@flights, gk, [{2, 1}, {3, 0}]))
  catch
    :error, :badarg -> false
  end

  # A joiner that found its execution ended: the last one out deletes a
  # marker without a call (see the moduledoc).
  defp unjoin(id) do
    unless joined?(id), do: :ets.delete_object(@waiters, {{id}, nil})
  end

  # `mref` monitors the leader; nil when this caller is answered by whoever
  # took its entry, and need not watch anyone. `wait_ms`: the time left
  # until `deadline`.
  defp follow_wait(
         {group, _} = gk,
         seq,
         id,
         {_, _, tag} = entry,
         leader,
         mref,
         execution,
         timeout,
         deadline,
         wait_ms
       ) do
    receive do
      {^tag, :adopted, flight, flight_id} ->
        demonitor(mref)
        fmref = Process.monitor(flight)
        Coalesce.wait(gk, execution, flight, flight_id, fmref, tag, timeout, deadline)

      {^tag, result} ->
        demonitor(mref)
        result

      {:DOWN, ^mref, :process, _, reason} when mref != nil ->
        # The leader died before answering: the first waiter to notice
        # takes the call over (or, when it cannot, tells everyone).
        unclaim(gk, seq)

        case :ets.take(@waiters, {id}) do
          [{_, call}] -> died(group, id, call, leader, reason)
          [] -> :ok
        end

        wait_ms = Coalesce.remaining(deadline)
        follow_wait(gk, seq, id, entry, leader, nil, execution, timeout, deadline, wait_ms)
    after
      wait_ms ->
        demonitor(mref)

        case :ets.take(@waiters, entry) do
          [_] ->
            Flight.timed_out(timeout)

          [] ->
            # Taken by the leader (or a successor) just now: its message is
            # on the way.
            receive do
              {^tag, :adopted, flight, _flight_id} ->
                send(flight, {:leave, tag})
                Flight.timed_out(timeout)

              {^tag, result} ->
                result
            after
              Py.Limits.promised_reply_ms() -> Flight.timed_out(timeout)
            end
        end
    end
  end

  @doc false
  # For tests and benches: how many callers the Python call in flight for
  # `gk` has, its leader and the joiners sure to be answered (waiting in
  # follow_wait/9: a joiner whose entry is in may still find the call
  # ended and start over), or nil when no caller leads one.
  @spec callers({term, term}) :: pos_integer | nil
  def callers(gk) do
    case :ets.lookup(@flights, gk) do
      [{_, _joiners, _seq, id, _leader}] ->
        @waiters
        |> :ets.select([{{{id, :"$1", :_}}, [], [:"$1"]}])
        |> Enum.count(&following?/1)
        |> Kernel.+(1)

      _ ->
        nil
    end
  end

  @doc false
  # For benches: the same count from the in-flight entry alone, its leader
  # and the joiners that committed to it (each sure to be answered, though
  # it may not be in its receive yet), or nil when no caller leads one. One
  # :ets.lookup, where callers/1 asks every joiner process where it is
  # (a signal round trip each: ~5 µs a joiner in a 10,000-caller herd).
  @spec committed({term, term}) :: pos_integer | nil
  def committed(gk) do
    case :ets.lookup(@flights, gk) do
      [{_, joiners, _seq, _id, _leader}] -> joiners + 1
      _ -> nil
    end
  end

  defp following?(pid),
    do:
      Process.info(pid, :current_function) ==
        {:current_function, {__MODULE__, :follow_wait, 10}}

  defp demonitor(nil), do: true
  defp demonitor(mref), do: Process.demonitor(mref, [:flush])

  # Run by whoever took the marker of a dead leader's call (so it runs once
  # per call): the call goes on in a Flight for every waiter, or, when it
  # had not started, had answered at once, or its reply went to the dead
  # leader, every waiter gets the error.
  defp died(group, id, call, leader, reason) do
    case take_waiters(id) do
      [] ->
        # Nobody waits for it: stop it.
        with {handle, _ref} <- call, do: Py.Call.cancel(handle)
        ended(group, call)

      waiters ->
        crashed = Flight.crashed(leader, "exited: " <> inspect(reason))
        adopted = call != nil and hand_over(group, call, waiters) == :handed_over

        unless adopted do
          ended(group, call)
          Enum.each(waiters, fn {pid, tag} -> send(pid, {tag, crashed}) end)
        end
    end
  end

  # An execution that ended in a crash: counted as started (active) only
  # once its call had left the inline path.
  defp ended(group, nil), do: Stats.ran(group, 0, true)
  defp ended(group, _call), do: Stats.finished(group, 0, true)
end
