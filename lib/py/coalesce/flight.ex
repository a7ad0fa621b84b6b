defmodule Py.Coalesce.Flight do
  @moduledoc false
  # An execution that runs in a process of its own, so that no caller owns
  # it: every Elixir function given to Py.Coalesce.run/4, and a Python call
  # whose leading caller stopped waiting (or died) while others still wait
  # (Py.Coalesce.Leader hands it over with adopt/5). Its waiters monitor it; it
  # monitors them.
  #
  # Life of a flight started by init/4:
  #
  #   1. The first caller (the leader) spawns it. It claims the key in the
  #      native in-flight table (Py.Native.coalesce_enter/3); if another
  #      execution got there first it exits :normal and the leader joins
  #      that one instead.
  #   2. It runs the function in a monitored helper process.
  #   3. Meanwhile it takes {:join, pid, tag} and {:leave, tag} messages and
  #      its waiters' DOWN messages. When the last waiter has gone it cancels
  #      the execution (the helper is killed; an adopted Python call is
  #      interrupted by Py.Call.cancel), gives the key up and exits :normal.
  #   4. When the execution ends it gives the key up first (new callers start
  #      a new execution), takes the joins already in its mailbox, counts the
  #      execution once (Py.Coalesce.Stats) and sends {tag, result} to every
  #      waiter.
  #
  # A waiter that sees the flight exit :normal without an answer (1., or a
  # join that arrived after 3. or 4.) simply starts over.
  #
  # Every execution has a marker {{id}, _} in the waiters table (id is the
  # flight's pid here, the leader's reference for an adopted call): whoever
  # takes it counts the execution's end in Py.Coalesce.Stats, so an
  # execution is counted once even when its process is killed after a
  # forget/2 took its key.

  alias Py.Coalesce.Stats

  @waiters :py_coalesce_waiters

  # Exit reasons of the helper running an Elixir function.
  @value :"$py_coalesce_value"
  @crash :"$py_coalesce_crash"

  @typedoc "What a flight executes."
  @type execution ::
          {:fun, (() -> term)}
          | {:python, reference, reference | nil, Py.Call.job()}

  @doc false
  # Entry point of the spawned flight: `leader` waits for `{tag, result}`.
  @spec init({term, term}, execution, pid, reference) :: :ok
  def init({group, _key} = gk, {:fun, fun}, leader, tag) do
    :ets.insert(@waiters, {{self()}, nil})

    case Py.Native.coalesce_enter(gk, self(), :process) do
      {:claimed, hash, id} ->
        Stats.started(group)
        waiters = %{tag => watch(leader, tag)}
        {pid, mref} = :erlang.spawn_monitor(fn -> exit(apply_fun(fun)) end)
        state = %{entry: {hash, id}, id: self(), group: group, waiters: waiters, joined: 0}
        loop(state, {:fun, pid, mref})

      :held ->
        :ets.delete(@waiters, {self()})
        :ok
    end
  end

  @doc false
  # Entry point of a flight that takes over a running Python call from its
  # leader (Py.Coalesce.Leader): `waiters` are {pid, tag}, already told to wait
  # for this process; the call's reply comes here once redirected. The key
  # is no longer claimed (no new caller joins), and the marker of `id` is
  # in place.
  @spec adopt(term, reference, reference, reference, [{pid, reference}]) :: :ok
  def adopt(group, id, ref, handle, waiters) do
    watched = Map.new(waiters, fn {pid, tag} -> {tag, watch(pid, tag)} end)
    state = %{entry: nil, id: id, group: group, waiters: watched, joined: length(waiters)}
    loop(state, {:python, handle, ref})
  end

  # Waiters are kept as tag => {pid, monitor}.
  defp watch(pid, tag), do: {pid, :erlang.monitor(:process, pid, tag: {:waiter_down, tag})}

  defp apply_fun(fun) do
    {@value, fun.()}
  catch
    kind, reason -> {@crash, kind, reason, __STACKTRACE__}
  end

  defp loop(state, running) do
    receive do
      {:join, pid, tag} ->
        loop(join(state, pid, tag), running)

      {:leave, tag} ->
        case state.waiters do
          %{^tag => {_pid, mref}} -> Process.demonitor(mref, [:flush])
          _ -> :ok
        end

        gone(state, tag, running)

      {{:waiter_down, tag}, _mref, :process, _pid, _reason} ->
        gone(state, tag, running)

      {ref, reply, queue_us, run_us} when elem(running, 2) == ref ->
        {result, _timing} = Py.Call.finish(reply, queue_us, run_us)
        finish(state, result)

      # The shared execution calls back into the BEAM: run it here.
      {ref, :callback, request} when elem(running, 2) == ref ->
        Py.Callback.run(request)
        loop(state, running)

      # Its output and log records (Py.Output), written from here.
      {ref, :io, {stream, text}} when elem(running, 2) == ref ->
        Py.Output.write(stream, text)
        loop(state, running)

      {ref, :log, {levelno, name, message}} when elem(running, 2) == ref ->
        Py.Output.log(levelno, name, message)
        loop(state, running)

      {:DOWN, mref, :process, pid, reason} when elem(running, 2) == mref ->
        finish(state, fun_result(pid, reason))
    end
  end

  defp join(state, pid, tag) do
    %{state | waiters: Map.put(state.waiters, tag, watch(pid, tag)), joined: state.joined + 1}
  end

  defp gone(state, tag, running) do
    waiters = Map.delete(state.waiters, tag)
    state = drain_joins(%{state | waiters: waiters})

    if map_size(state.waiters) == 0 do
      # Nobody is left to answer: give the key up, then stop the execution.
      # A join that arrives from now on sees this process exit :normal and
      # its caller starts over.
      unmap(state)
      cancel(running)
      counted(state, false)
    else
      loop(state, running)
    end
  end

  defp cancel({:python, handle, _ref}), do: Py.Call.cancel(handle)
  defp cancel({:fun, pid, _mref}), do: Process.exit(pid, :kill)

  defp drain_joins(state) do
    receive do
      {:join, pid, tag} -> state |> join(pid, tag) |> drain_joins()
    after
      0 -> state
    end
  end

  # Gives the key up (new callers start a new execution), if it still holds
  # it.
  defp unmap(%{entry: nil}), do: false
  defp unmap(%{entry: {hash, id}}), do: Py.Native.coalesce_unmap(hash, id)

  defp finish(state, result) do
    unmap(state)
    state = drain_joins(state)
    # Counted before anyone is answered: a caller that has its result sees
    # the execution in Py.Coalesce.stats/1.
    counted(state, error?(result))
    Enum.each(state.waiters, fn {tag, {pid, _mref}} -> send(pid, {tag, result}) end)
  end

  defp counted(state, error?) do
    if :ets.take(@waiters, {state.id}) != [],
      do: Stats.finished(state.group, state.joined, error?)

    :ok
  end

  @doc false
  # Whether an execution's outcome counts as an error.
  @spec error?(term) :: boolean
  def error?({:error, _}), do: true
  def error?(:error), do: true
  def error?(_), do: false

  defp fun_result(_pid, {@value, value}), do: value

  defp fun_result(pid, {@crash, kind, reason, stack}) do
    what =
      case kind do
        :error ->
          exception = Exception.normalize(:error, reason, stack)
          "raised #{inspect(exception.__struct__)}: #{Exception.message(exception)}"

        :throw ->
          "threw #{inspect(reason)}"

        :exit ->
          "exited: #{inspect(reason)}"
      end

    {:error, error} = crashed(pid, what)
    {:error, %{error | traceback: Exception.format_stacktrace(stack)}}
  end

  defp fun_result(pid, reason), do: crashed(pid, "exited: " <> inspect(reason))

  @doc false
  # The error a caller gets when its own timeout passed first.
  @spec timed_out(timeout) :: {:error, Py.Error.t()}
  def timed_out(timeout) do
    {:error,
     %Py.Error{
       type: :timeout,
       message:
         "coalesced call exceeded #{timeout} ms (the shared execution goes on for other callers)"
     }}
  end

  @doc false
  # The error every waiter gets when the execution did not return.
  @spec crashed(pid, String.t()) :: {:error, Py.Error.t()}
  def crashed(pid, what) do
    {:error,
     %Py.Error{
       type: :coalesce_crashed,
       message: "the shared execution (process #{inspect(pid)}) #{what}"
     }}
  end
end
