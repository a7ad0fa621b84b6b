defmodule Py.Coalesce.Leader do
  @moduledoc false
  # A coalesced Python call, run by its first caller (the leader) itself,
  # with no process in between, and the callers that join it.
  #
  # The execution is a flight in the native in-flight table
  # (native/pybridge/src/coalesce, through Py.Native.coalesce_*), found by
  # its key until it ends or is forgotten, and holding the joiners
  # themselves. One NIF call, coalesce_submit/6, finds the key's flight and
  # joins it ({:joined, {joiners, slot}, leader}: the tag {joiners, slot} is
  # what the joiner is answered with, `joiners` a resource made for the
  # first joiner) or claims the key and submits the call ({:claimed, hash,
  # id, answer}: the flight's name, `name` below, and what the submission
  # answered; or the call's reply, the flight ended already, when it
  # answered at once).
  #
  # Whoever ends an execution (its leader; when it died, the NIF's monitor
  # of it if nobody is joined, else the first waiter to see it die) takes
  # the flight, coalesce_take/2 by its name or coalesce_take_joined/1 by a
  # tag's resource: it leaves the table
  # and ends at once, and the taker gets back the call the leader recorded
  # (coalesce_mark/3, once its call did not answer at once) and every joiner
  # that has not left, {pid, tag}; a flight is taken once, so it is counted
  # and answered once. A joiner that stops waiting leaves with
  # coalesce_leave/2: true means it was still in (nobody will answer it),
  # false that it was taken with the flight (its answer is on the way).
  # Joiners come in only while the flight can be found, under the table's
  # lock, so none can join an ended one.
  #
  # An uncontended call answered at once costs that one NIF call: the key
  # encoded, hashed, claimed and given up again around the submission, and
  # the miss counted there (Py.Coalesce.Stats reads those counts): the hot
  # path of `coalesce: true` (bench/coalesce.exs), as a plain call costs
  # submit/6.
  #
  # forget/2 only hides the flight from new callers: its leader still takes
  # it, with its joiners, and answers them. (A leader killed after its call
  # was submitted but before it recorded it, with nobody joined, leaves its
  # flight behind: found by the next caller, who takes it as any dead
  # leader's; forgotten, it stays in the table, a few dozen bytes.)
  #
  # Should the leader time out or die while others wait, its running call
  # is handed to a Flight process (hand_over/3), its reply redirected there.

  alias Py.Coalesce
  alias Py.Coalesce.{Flight, Stats}

  @waiters :py_coalesce_waiters

  # Whether the NIF counts an uncontended call that succeeded
  # (Py.Coalesce.Stats reads those counts with its own): not when
  # telemetry is compiled in, which raises an event for each miss here.
  @count_natively not Py.Telemetry.enabled?()

  @doc false
  # Runs the Python call `execution` for {group, key} as its leader, or,
  # when another caller holds the key already, joins it. `deadline` is nil
  # until this caller has had to wait: an uncontended call answered at once
  # never reads the clock.
  @spec run({term, term}, Flight.execution(), timeout, integer | :infinity | nil) :: term
  def run(gk, {:python, cref, namespace, job} = execution, timeout, deadline) do
    # The call's reply messages are tagged with `ref`.
    ref = make_ref()

    # One NIF call claims the key and submits the job (with no timeout:
    # the leader cancels the call itself, and only when nobody else waits
    # for it; each caller applies its own timeout).
    case Py.Native.coalesce_submit(cref, namespace, ref, job, gk, @count_natively) do
      # Answered at once, nobody joined, succeeded: counted in the NIF.
      {:done, reply, _queue_us, _run_us} ->
        Py.Call.reply(reply)

      # Answered at once, and the flight ended: its joiners get the result.
      {:ran, reply, joiners} ->
        answer(gk, joiners, Py.Call.reply(reply), false)

      {:claimed, hash, id, answer} ->
        case Py.Call.submitted(answer, cref, namespace, ref, job, :infinity) do
          {:done, result, _timing} -> settle(gk, {hash, id}, result, false)
          {:running, handle} -> led(gk, {hash, id}, handle, ref, timeout, deadline)
          # Waited for room in a full queue (`overload: :wait`) first; the
          # caller's time counts from its call being queued.
          {:running, handle, _left} -> led(gk, {hash, id}, handle, ref, timeout, deadline)
        end

      # Not a job (the flight ended): whoever joined meanwhile is told.
      {:badarg, _hash, _id, joiners} ->
        error = ArgumentError.exception("not a Python job: #{inspect(job)}")
        answer(gk, joiners, {:error, error}, false)
        raise error

      entered ->
        Coalesce.found(entered, gk, execution, timeout, deadline)
    end
  end

  # The call did not answer at once: it is counted as active, and recorded
  # in the flight for whoever takes it over, which also has the NIF monitor
  # the leader (should it die with nobody else waiting, no waiter would
  # notice, and the call would run on with its key claimed: the monitor
  # ends the flight then, see native/pybridge/src/nif/coalesce/watch.rs).
  defp led({group, _} = gk, flight, handle, ref, timeout, deadline) do
    Stats.started(group)
    # Nobody else takes the flight while its leader lives: always :ok.
    {hash, id} = flight
    Py.Native.coalesce_mark(hash, id, {handle, ref})
    lead(gk, flight, handle, ref, timeout, deadline || Coalesce.deadline(timeout))
  end

  # Whoever takes a dead leader's flight (the first joiner to see it die,
  # or one that left and found it dead) ends the execution.
  defp take_over(group, taken, leader, reason) do
    case taken do
      {call, joiners} -> died(group, call, joiners, leader, reason)
      nil -> :ok
    end
  end

  # Ends the flight named {hash, id} (see the moduledoc).
  defp take({hash, id}), do: Py.Native.coalesce_take(hash, id)

  # The leader waits for its call's reply, running the callbacks the Python
  # code makes meanwhile (Py.Callback), as any caller does.
  defp lead(gk, flight, handle, ref, timeout, deadline) do
    receive do
      {^ref, reply, _queue_us, _run_us} ->
        settle(gk, flight, Py.Call.reply(reply), true)

      {^ref, :callback, request} ->
        Py.Callback.run(request)
        lead(gk, flight, handle, ref, timeout, deadline)

      # Its output and log records (Py.Output), written from here.
      {^ref, :io, {stream, text}} ->
        Py.Output.write(stream, text)
        lead(gk, flight, handle, ref, timeout, deadline)

      {^ref, :log, {levelno, name, message}} ->
        Py.Output.log(levelno, name, message)
        lead(gk, flight, handle, ref, timeout, deadline)
    after
      Coalesce.remaining(deadline) ->
        timed_out(gk, flight, handle, ref, timeout)
    end
  end

  # The leader's call ended: give the key up, then answer every waiter.
  # `started?`: whether the execution was counted as started (active).
  defp settle(gk, flight, result, started?),
    do: answer(gk, take_joiners(flight), result, started?)

  # Counts the ended execution, then answers its joiners.
  defp answer({group, _}, joiners, result, started?) do
    hits = length(joiners)
    error? = Flight.error?(result)

    # Counted before anyone is answered, as a Flight does.
    if started?,
      do: Stats.finished(group, hits, error?),
      else: Stats.ran(group, hits, error?)

    Enum.each(joiners, fn {pid, tag} -> send(pid, {tag, result}) end)
    result
  end

  # Ends the leader's flight: the key is given up (if the flight still
  # holds it) and the joiners that have not left come back, as {pid, tag}.
  defp take_joiners(flight) do
    case take(flight) do
      {_call, joiners} -> joiners
      nil -> []
    end
  end

  defp timed_out({group, _} = gk, flight, handle, ref, timeout) do
    case take_joiners(flight) do
      [] ->
        result =
          case Py.Call.cancel(handle) do
            :cancelled -> Flight.timed_out(timeout)
            :replied -> receive_reply(ref, timeout)
          end

        Stats.finished(group, 0, Flight.error?(result))
        result

      joiners ->
        case hand_over(group, {handle, ref}, joiners) do
          :handed_over ->
            Flight.timed_out(timeout)

          :sent ->
            # The reply came here already: share it from here.
            answer(gk, joiners, receive_reply(ref, timeout), true)
        end
    end
  end

  # Gives a running call with waiters to a Flight of its own, under a
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
      {^ref, reply, _queue_us, _run_us} ->
        Py.Call.reply(reply)
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
  # Waits as a joiner of a leader's flight, answered with `tag` ({flight,
  # slot}); `leader` runs the call. For at most `wait_ms`, the time left
  # until `deadline`.
  @spec follow(
          {term, term},
          {reference, non_neg_integer},
          pid,
          Flight.execution(),
          timeout,
          integer | :infinity,
          timeout
        ) :: term
  def follow(gk, tag, leader, execution, timeout, deadline, wait_ms) do
    # Joined already: a leader that died before this monitor is reported
    # at once (:noproc), and its flight taken as for any dead leader.
    mref = Process.monitor(leader)
    follow_wait(gk, tag, leader, mref, execution, timeout, deadline, wait_ms)
  end

  # `mref` monitors the leader; nil once the leader died and somebody took
  # its flight (who answers this joiner). `wait_ms`: the time left until
  # `deadline`.
  defp follow_wait(
         {group, _} = gk,
         {joiners, slot} = tag,
         leader,
         mref,
         execution,
         timeout,
         deadline,
         wait_ms
       ) do
    receive do
      {^tag, :adopted, process, process_id} ->
        demonitor(mref)
        pmref = Process.monitor(process)
        Coalesce.wait(gk, execution, process, process_id, pmref, tag, timeout, deadline)

      {^tag, result} ->
        demonitor(mref)
        result

      {:DOWN, ^mref, :process, _, reason} when mref != nil ->
        # The leader died before answering: the first waiter to notice
        # takes the call over (or, when it cannot, tells everyone, this
        # one included).
        take_over(group, Py.Native.coalesce_take_joined(joiners), leader, reason)
        wait_ms = Coalesce.remaining(deadline)
        follow_wait(gk, tag, leader, nil, execution, timeout, deadline, wait_ms)
    after
      wait_ms ->
        demonitor(mref)

        if Py.Native.coalesce_leave(joiners, slot) do
          # Should the leader have died meanwhile, its monitor may have
          # found this joiner still in: whoever is left last ends the flight
          # (see native/pybridge/src/nif/coalesce/watch.rs).
          unless Process.alive?(leader),
            do: take_over(group, Py.Native.coalesce_take_alone(joiners), leader, :left)

          Flight.timed_out(timeout)
        else
          # Taken by the leader (or a successor) just now: its message is
          # on the way.
          receive do
            {^tag, :adopted, process, _process_id} ->
              send(process, {:leave, tag})
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
  # follow_wait/8), or nil when no caller leads one.
  @spec callers({term, term}) :: pos_integer | nil
  def callers(gk) do
    case Py.Native.coalesce_joiners(gk) do
      nil -> nil
      pids -> Enum.count(pids, &following?/1) + 1
    end
  end

  @doc false
  # For benches: the same count from the flight alone, its leader and the
  # joiners in it (each sure to be answered, though it may not be in its
  # receive yet), or nil when no caller leads one. One NIF call, where
  # callers/1 asks every joiner process where it is (a signal round trip
  # each: ~5 µs a joiner in a 10,000-caller herd).
  @spec committed({term, term}) :: pos_integer | nil
  def committed(gk) do
    case Coalesce.in_flight(gk) do
      {:leader, _pid, joiners} -> joiners + 1
      _ -> nil
    end
  end

  defp following?(pid),
    do:
      Process.info(pid, :current_function) ==
        {:current_function, {__MODULE__, :follow_wait, 8}}

  defp demonitor(nil), do: true
  defp demonitor(mref), do: Process.demonitor(mref, [:flush])

  # Run by whoever took a dead leader's flight (so it runs once per call):
  # the call goes on in a Flight for every waiter, or, when it had not
  # started, had answered at once, or its reply went to the dead leader,
  # every waiter gets the error.
  defp died(group, call, joiners, leader, reason) do
    case joiners do
      [] ->
        # Nobody waits for it: stop it.
        with {handle, _ref} <- call, do: Py.Call.cancel(handle)
        ended(group, call)

      joiners ->
        crashed = Flight.crashed(leader, "exited: " <> inspect(reason))
        adopted = call != nil and hand_over(group, call, joiners) == :handed_over

        unless adopted do
          ended(group, call)
          Enum.each(joiners, fn {pid, tag} -> send(pid, {tag, crashed}) end)
        end
    end
  end

  # An execution that ended in a crash: counted as started (active) only
  # once its call had left the inline path.
  defp ended(group, nil), do: Stats.ran(group, 0, true)
  defp ended(group, _call), do: Stats.finished(group, 0, true)
end
