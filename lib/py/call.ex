defmodule Py.Call do
  @moduledoc false
  # The one path every Python call takes: pick the caller's namespace in the
  # context (when the job needs one), submit the job to the context's executor
  # through the NIF, and wait for the reply message. Timeouts cancel the job in
  # the executor, which interrupts the running Python.
  #
  # This is the hot path (benchmarked at a few microseconds per call): keep it
  # free of option handling, extra processes and GenServer calls. Later layers
  # (telemetry spans, coalescing) hook in here and only here: `run/4,5` is
  # the one exit every eval/exec/call returns through (the telemetry span
  # wraps it, Py.Telemetry.call_span/4), and `measured/4,5` gives what the
  # worker measured of the call for them.

  alias Py.{Error, Native}

  require Py.Telemetry

  @typedoc "A job as defined by the NIF contract (see Py.Native)."
  @type job ::
          {:eval, binary, map}
          | {:exec, binary}
          | {:call, binary, binary, list, map}
          | {:getattr, Py.Object.t(), binary}
          | {:call_method, Py.Object.t(), binary, list, map}
          | {:reload, binary}
          | {:iterate, {:eval, binary, map} | {:call, binary, binary, list, map}}
          | {:next, Py.Object.t(), pos_integer}
          | {:close, Py.Object.t()}

  @type result :: :ok | {:ok, term} | {:error, Error.t()}

  @typedoc """
  What the worker measured of a call, in microseconds: how long it waited in
  the context's queue and how long it ran. `nil` when no worker answered (the
  context refused the call, or it timed out).
  """
  @type timing :: %{queue_us: non_neg_integer, run_us: non_neg_integer} | nil

  @promised_reply_ms Py.Limits.promised_reply_ms()

  @typedoc """
  `nil`, or `{group, key}`: concurrent callers with the same group and key
  share one execution (Py.Coalesce), which runs in the namespace of the
  caller that started it.
  """
  @type coalesce :: {term, term} | nil

  @doc false
  # Every eval/exec/call, coalesced or not, returns through here.
  @spec run(Py.Context.t(), boolean, job, timeout) :: result
  @spec run(Py.Context.t(), boolean, job, timeout, coalesce) :: result
  def run(ctx, namespace?, job, timeout, coalesce \\ nil) do
    # The [:pybridge, :call, _] span when telemetry is compiled in; else
    # just the result of measured/5.
    Py.Telemetry.call_span ctx, job, coalesce do
      measured(ctx, namespace?, job, timeout, coalesce)
    end
  end

  @doc false
  # The call's result and its timing (`nil` for a coalesced call: the
  # execution it shared was timed in Py.Coalesce's flight).
  @spec measured(Py.Context.t(), boolean, job, timeout) :: {result, timing}
  @spec measured(Py.Context.t(), boolean, job, timeout, coalesce) :: {result, timing}
  def measured(ctx, namespace?, job, timeout, coalesce \\ nil)

  def measured(%Py.Context{ref: cref}, namespace?, job, timeout, {group, key}) do
    namespace = if namespace?, do: namespace(cref), else: nil
    {Py.Coalesce.await(group, key, {:python, cref, namespace, job}, timeout), nil}
  end

  def measured(%Py.Context{ref: cref}, namespace?, job, timeout, nil) do
    namespace = if namespace?, do: namespace(cref), else: nil
    # Inside a callback, no later than the deadline of the call it serves.
    timeout = Py.Callback.cap_timeout(timeout)
    # make_ref/0 and the receive below stay in this one function so the
    # compiler's selective-receive optimisation skips older messages: a call
    # from a process with a long mailbox stays O(1).
    ref = make_ref()

    case start(cref, namespace, ref, job, timeout, nil) do
      {:done, result, timing} ->
        {result, timing}

      # The Python code called back while the NIF waited for it: the
      # request came back with the handle instead of by message.
      {:callback, handle, request} ->
        handle(handle, ref, timeout, {:callback, request}, nil)

      {:running, handle} ->
        # The one receive of a call: every message kind tagged with `ref`
        # is dispatched here (see `handle/3`).
        receive do
          {^ref, reply, queue_us, run_us} -> finish(reply, queue_us, run_us)
          {^ref, kind, payload} -> handle(handle, ref, timeout, {kind, payload}, nil)
        after
          timeout -> timed_out(handle, ref, timeout)
        end

      # It waited for room in a full queue (`overload: :wait`) first: the
      # same receive, for the time left.
      {:running, handle, left} ->
        receive do
          {^ref, reply, queue_us, run_us} ->
            finish(reply, queue_us, run_us)

          {^ref, kind, payload} ->
            handle(handle, ref, timeout, {kind, payload}, Py.Callback.deadline(left))
        after
          left -> timed_out(handle, ref, timeout)
        end
    end
  end

  @doc false
  # A message of a running call other than its reply: a callback the
  # Python code makes (`{:callback, request}`, run here, in the caller), or
  # its output and log records (`{:io, _}`, `{:log, _}`, see Py.Output).
  # Then waits on for the reply, up to the call's deadline (which the first
  # callback's request carries); not in `measured/5`'s receive, since only
  # calls that call back get here.
  @spec handle(reference, reference, timeout, {atom, term}, integer | :infinity | nil) ::
          {result, timing}
  def handle(handle, ref, timeout, {:callback, request}, deadline) do
    deadline = deadline || Py.Callback.deadline(elem(request, 3))
    # The answer may bring the call's result back with it (see
    # Py.Callback.run_for_call/2).
    done = Py.Callback.run_for_call(request, deadline)

    # A callback that ran past the call's deadline timed the call out, even
    # if Python, answered just in time, replied meanwhile.
    late? = Py.Callback.left(deadline) == 0

    case done do
      :ok when late? -> late(handle, ref, timeout)
      :ok -> await(handle, ref, timeout, deadline)
      # The call's next callback, handed to the answering NIF.
      {:callback, _next} when late? -> late(handle, ref, timeout)
      {:callback, next} -> handle(handle, ref, timeout, {:callback, next}, deadline)
      {:done, _, _, _} when late? -> timeout_error(timeout)
      {:done, result, queued_us, run_us} -> finish(result, queued_us, run_us)
    end
  end

  # Python's output and log records during the call (see Py.Output): they
  # arrive before the reply, in the order they were made.
  def handle(handle, ref, timeout, {:io, {stream, text}}, deadline) do
    Py.Output.write(stream, text)
    await(handle, ref, timeout, deadline || Py.Callback.deadline(timeout))
  end

  def handle(handle, ref, timeout, {:log, {levelno, name, message}}, deadline) do
    Py.Output.log(levelno, name, message)
    await(handle, ref, timeout, deadline || Py.Callback.deadline(timeout))
  end

  # A kind this version does not know: ignored, the call's time still runs
  # (from now, when no callback has told the deadline yet).
  def handle(handle, ref, timeout, _unknown, deadline) do
    await(handle, ref, timeout, deadline || Py.Callback.deadline(timeout))
  end

  @doc false
  # Waits for the reply of a call that has made callbacks.
  @spec await(reference, reference, timeout, integer | :infinity) :: {result, timing}
  def await(handle, ref, timeout, deadline) do
    receive do
      {^ref, reply, queue_us, run_us} -> finish(reply, queue_us, run_us)
      {^ref, kind, payload} -> handle(handle, ref, timeout, {kind, payload}, deadline)
    after
      Py.Callback.left(deadline) -> timed_out(handle, ref, timeout)
    end
  end

  @doc false
  # Submits `job`: its result when the NIF answered at once (or refused),
  # else the handle of the running job, whose reply arrives as
  # `{ref, reply, queue_us, run_us}` (pass it to `finish/3`). When the
  # context's queue was full and the context lets callers wait
  # (`overload: :wait`), it first waits for room, up to `timeout`, and
  # then gives the time left with the handle.
  # Until the reply, the caller must also run callback requests the Python
  # code makes, `{ref, :callback, request}`, with `Py.Callback.run/1` (as
  # `measured/5` and a coalesced call's flight do), or they wait for the
  # call's deadline.
  @spec start(reference, reference | nil, reference, job, timeout) ::
          {:done, result, timing} | {:running, reference} | {:running, reference, timeout}
  def start(cref, namespace, ref, job, timeout) do
    cref
    |> Native.submit(namespace, ref, job, timeout, nil)
    |> submitted(cref, namespace, ref, job, timeout)
  end

  @doc false
  # start/5 of a job the NIF was given already (Py.Native.coalesce_submit/6
  # submits a coalesced call's job as it claims its key): `answer` is what
  # the NIF answered; the rest as for start/5.
  @spec submitted(term, reference, reference | nil, reference, job, timeout) ::
          {:done, result, timing} | {:running, reference} | {:running, reference, timeout}
  def submitted(answer, cref, namespace, ref, job, timeout) do
    answer
    |> answered(cref, namespace, ref, job, timeout, nil)
    |> by_message(ref)
  end

  # As start/5, and `{:callback, handle, request}` when the Python code
  # called back while the NIF waited: run it, then wait as for `{:running,
  # handle}`. After waiting for room, such a callback comes by message
  # (`{:running, handle, left}`, see `wait_for_room/7`).
  # `ticket`: nil, or this caller's turn in a full queue, whose place it
  # takes (see `wait_for_room/7`).
  defp start(cref, namespace, ref, job, timeout, ticket) do
    cref
    |> Native.submit(namespace, ref, job, timeout, ticket)
    |> answered(cref, namespace, ref, job, timeout, ticket)
  end

  # What the NIF answered a submission: big arguments go to a dirty
  # scheduler first.
  defp answered(answer, cref, namespace, ref, job, timeout, ticket) do
    handle =
      case answer do
        :dirty -> Native.submit_dirty(cref, namespace, ref, job, timeout, ticket)
        handle -> handle
      end

    case handle do
      {:done, reply, queue_us, run_us} ->
        {:done, reply(reply), %{queue_us: queue_us, run_us: run_us}}

      {:error, _} = refused ->
        {:done, reply(refused), nil}

      {:wait, id, ticket} ->
        wait_for_room(cref, namespace, ref, job, timeout, id, ticket)

      {:callback, _handle, _request} = callback ->
        callback

      handle ->
        {:running, handle}
    end
  end

  # The NIF registered this process as waiting for room under `id`; it
  # sends `{:py_room, id}` when a place in the queue is kept for this
  # process (FIFO: nobody else can take it), or the context closed. Then
  # submit again with the ticket, which takes that place, and the time
  # left. On timeout, give the turn up (a place kept meanwhile goes to the
  # next waiter); a process that dies while waiting gives it up with its
  # ticket.
  defp wait_for_room(cref, namespace, ref, job, timeout, id, ticket) do
    since = System.monotonic_time(:millisecond)

    receive do
      {:py_room, ^id} ->
        left = left(timeout, since)

        # A callback handed back here takes the way of one sent by
        # message: every call that waited for room is answered by the
        # receive that knows the time left.
        case by_message(start(cref, namespace, ref, job, left, ticket), ref) do
          {:running, handle} -> {:running, handle, left}
          other -> other
        end
    after
      timeout ->
        Native.context_cancel_wait(ticket)

        receive do
          {:py_room, ^id} -> :ok
        after
          0 -> :ok
        end

        {:done,
         {:error,
          %Error{
            type: :overloaded,
            message:
              "the context's queue stayed full (max_queue) for the call's whole timeout " <>
                "(#{timeout} ms); it did not run"
          }}, nil}
    end
  end

  # A callback request the NIF took while it waited, put where it would
  # have come by message (nothing else of the call is on its way before
  # it): then the call is running like any other.
  defp by_message({:callback, handle, request}, ref) do
    send(self(), {ref, :callback, request})
    {:running, handle}
  end

  defp by_message(started, _ref), do: started

  defp left(:infinity, _since), do: :infinity
  defp left(timeout, since), do: max(timeout - (System.monotonic_time(:millisecond) - since), 0)

  @doc false
  # The result and timing of a reply message.
  @compile {:inline, finish: 3}
  @spec finish(term, non_neg_integer, non_neg_integer) :: {result, timing}
  def finish(reply, queue_us, run_us), do: {reply(reply), %{queue_us: queue_us, run_us: run_us}}

  @doc false
  # Sends a running job's reply (see `start/5`) to `pid` instead: `:ok`, or
  # `:sent` when it has come to this process already.
  @spec redirect(reference, pid) :: :ok | :sent
  def redirect(handle, pid), do: Native.redirect(handle, pid)

  @doc false
  # Waits up to `timeout` for the reply of a job `start/5` left running
  # (`Py.await/2`, for a `%Py.Task{}`); on timeout the job is cancelled (a
  # coroutine then gets CancelledError). The receive of `measured/5` does the
  # same inline, where the compiler can skip older messages; callbacks the
  # Python code makes meanwhile run here, as there.
  @spec wait(reference, reference, timeout) :: {result, timing}
  def wait(handle, ref, timeout) do
    receive do
      {^ref, reply, queue_us, run_us} -> finish(reply, queue_us, run_us)
      {^ref, kind, payload} -> handle(handle, ref, timeout, {kind, payload}, nil)
    after
      timeout -> timed_out(handle, ref, timeout)
    end
  end

  @doc false
  # Cancels a running job (see `start/5`): `:cancelled`, or `:replied` when
  # its reply is on its way.
  @spec cancel(reference) :: :cancelled | :replied
  def cancel(handle), do: Native.cancel(handle)

  @doc false
  # The caller's namespace in this context, created on first use. It lives in
  # the process dictionary, so it dies (and the NIF frees it) with the process.
  @spec namespace(reference) :: reference
  def namespace(cref) do
    key = {Py.Namespace, cref}

    case Process.get(key) do
      nil ->
        namespace = Native.namespace_new(cref)
        Process.put(key, namespace)
        namespace

      namespace ->
        namespace
    end
  end

  @doc false
  # Drops the calling process's namespace in the context `cref` (the NIF
  # frees it once nothing refers to it).
  @spec forget_namespace(reference) :: :ok
  def forget_namespace(cref) do
    Process.delete({Py.Namespace, cref})
    :ok
  end

  defp timeout_error(timeout),
    do: {{:error, %Error{type: :timeout, message: "Python call exceeded #{timeout} ms"}}, nil}

  # The call's deadline passed while this process ran a callback for it.
  defp late(handle, ref, timeout) do
    timeout_error = timeout_error(timeout)

    case Native.cancel(handle) do
      :cancelled ->
        flush_callbacks(ref)
        timeout_error

      :replied ->
        # Take the reply out of the mailbox; the call still timed out.
        receive do
          {^ref, _reply, _queue_us, _run_us} -> timeout_error
        after
          @promised_reply_ms -> timeout_error
        end
    end
  end

  # Callback requests of a call given up on: dropping them answers their
  # Python side (which has timed out too) through the slot's destructor.
  defp flush_callbacks(ref) do
    receive do
      # Callback requests, output and log records of the given-up call.
      {^ref, _kind, _payload} -> flush_callbacks(ref)
    after
      0 -> :ok
    end
  end

  defp timed_out(handle, ref, timeout) do
    case Native.cancel(handle) do
      :cancelled ->
        flush_callbacks(ref)
        {{:error, %Error{type: :timeout, message: "Python call exceeded #{timeout} ms"}}, nil}

      :replied ->
        receive do
          {^ref, reply, queue_us, run_us} -> finish(reply, queue_us, run_us)
        after
          @promised_reply_ms ->
            {{:error,
              %Error{
                type: :timeout,
                message: "Python call exceeded #{timeout} ms and its reply was lost"
              }}, nil}
        end
    end
  end

  @doc false
  # The NIF's result: `:ok`, `{:ok, value}`, or
  # `{:error, {type, message, traceback | nil}}` (native/pybridge/src/nif/error.rs),
  # as a call answers it (a coalesced call's leader, which has no timing to
  # give, takes this instead of finish/3).
  @compile {:inline, reply: 1}
  @spec reply(term) :: result
  def reply({:ok, _} = ok), do: ok
  def reply(:ok), do: :ok

  def reply({:error, {type, message, traceback}}),
    do: {:error, %Error{type: type, message: message, traceback: traceback}}
end
