defmodule Py.Task do
  @moduledoc """
  A Python call started with `Py.async_call/4` and not awaited yet.

  Why: a coroutine (an `async def` function) mostly waits — on a socket, a
  timer, another service. pybridge awaits the coroutines of an interpreter on
  one event loop, on a thread of its own, so a waiting coroutine holds no
  context thread and thousands can wait at once; the caller gets a task at
  once and collects the result with `Py.await/2` or `Py.await_many/2`.

  A task belongs to the process that started it: only that process can await
  it. When its awaiting caller gives up (`Py.await/2` timed out), dies, or
  drops the task without awaiting it (once the task is garbage-collected),
  the coroutine is cancelled: `asyncio.CancelledError` is raised inside it,
  so its `finally` blocks and `async with` exits run.

  The fields are internal.
  """

  alias Py.{Call, Context, Options}

  @enforce_keys [:ref, :owner]
  defstruct [:ref, :handle, :owner, :result, :span]

  @typedoc "A started call; see the moduledoc."
  @type t :: %__MODULE__{
          ref: reference,
          handle: reference | nil,
          owner: pid,
          result: Py.result() | nil,
          span: term
        }

  @async_schema [kwargs: :kwargs, timeout: :timeout]

  @doc false
  # Py.async_call/4.
  @spec async_call(Py.name(), Py.name(), Py.args(), keyword) :: t
  def async_call(module, function, args, opts) do
    module = Options.value!(module, :module, "module for Py.async_call/4")
    function = Options.value!(function, {:name, "function"}, "function name for Py.async_call/4")
    args = Options.value!(args, :args, "arguments for Py.async_call/4")
    opts = Options.validate!(opts, @async_schema, "Py.async_call/4")
    timeout = Keyword.get(opts, :timeout, :infinity)
    job = {:call, module, function, args, Keyword.get(opts, :kwargs, %{})}

    %Py.Context{ref: cref} = ctx = Context.route_call(module, function)

    namespace = if module == "__main__", do: Call.namespace(cref), else: nil
    ref = make_ref()
    # A telemetry span (kind :async) from here to Py.await/2.
    span = Py.Telemetry.async_start(ctx, job)
    task = %__MODULE__{ref: ref, owner: self(), span: span}

    case Call.start(cref, namespace, ref, job, timeout) do
      {:done, result, timing} ->
        Py.Telemetry.async_stop(span, result, timing)
        %{task | result: result}

      {:running, handle} ->
        %{task | handle: handle}

      # It waited for room in a full queue (`overload: :wait`) first.
      {:running, handle, _left} ->
        %{task | handle: handle}
    end
  end

  @doc false
  # Py.await/2.
  @spec await(t, timeout) :: Py.result()
  def await(%__MODULE__{owner: owner} = task, timeout) do
    timeout = Options.value!(timeout, :timeout, "timeout for Py.await/2")

    if owner != self() do
      Options.invalid!(
        "task for Py.await/2",
        "a task started by the calling process (#{inspect(self())})",
        task
      )
    end

    case task do
      %{result: nil, handle: handle, ref: ref, span: span} ->
        {result, timing} = Call.wait(handle, ref, timeout)
        Py.Telemetry.async_stop(span, result, timing)
        result

      %{result: result} ->
        result
    end
  end

  def await(other, _timeout),
    do: Options.invalid!("task for Py.await/2", "a %Py.Task{}", other)

  @doc false
  # Py.await_many/2: every task's result, in order, within one deadline.
  @spec await_many([t], timeout) :: [Py.result()]
  def await_many(tasks, timeout) when is_list(tasks) do
    timeout = Options.value!(timeout, :timeout, "timeout for Py.await_many/2")
    deadline = if timeout == :infinity, do: :infinity, else: now() + timeout

    Enum.map(tasks, fn task ->
      remaining = if deadline == :infinity, do: :infinity, else: max(deadline - now(), 0)
      await(task, remaining)
    end)
  end

  def await_many(other, _timeout),
    do: Options.invalid!("tasks for Py.await_many/2", "a list of %Py.Task{}", other)

  defp now, do: System.monotonic_time(:millisecond)
end
