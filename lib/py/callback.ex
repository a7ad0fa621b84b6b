defmodule Py.Callback do
  @moduledoc """
  Python calling back into the BEAM: the functions Python reaches with
  `erlang.call("name", *args)`, `erlang.name(*args)` or
  `from erlang import name`.

  Python code often needs something only the BEAM has (a lookup in ETS, a
  GenServer, a Phoenix PubSub): registering an Elixir or Erlang function
  under a name lets it call that function as if it were Python's.

  Register with `Py.register_function/2` (or `py:register_function/2,3`);
  the guide [Callbacks](callbacks.md) covers what runs where, errors and
  timeouts.

  ## Where a callback runs

    * During `Py.eval/exec/call` (and every other call), in the **calling
      process**, which waits for that call anyway: it sees that process's
      dictionary, bindings and Python namespace, and a `Py.call` it makes
      runs in the same context and namespace (reentrancy, to
      `max_depth/0` levels).
    * From a thread Python started itself (`threading.Thread`, a
      `ThreadPoolExecutor`), in a process of pybridge's supervised
      callback pool.

  This module is also the one place a callback is run (`run/1`): every
  request, whoever receives it, goes through it.
  """

  alias Py.Native

  @table __MODULE__
  # `{depth, deadline | nil}` while the process runs a callback: how many
  # callbacks nest here, and the deadline of the call the innermost serves.
  # One key, so a callback reads and restores the process dictionary once.
  @nesting_key {__MODULE__, :nesting}

  # How deep Python → BEAM → Python → ... may nest in one process (see
  # Py.Limits.max_callback_depth/0).
  @max_depth Py.Limits.max_callback_depth()

  @typedoc "What a registered name calls."
  @type callable :: (... -> term) | {module, atom}

  @typedoc false
  # As stored: Elixir style (the arguments spread), or erlang_python's (one
  # list of arguments, values in its dialect).
  @type entry ::
          {:apply, function}
          | {:apply, module, atom}
          | {:erlang, function}
          | {:erlang, module, atom}

  @typedoc false
  # A request as the NIF sends it: the reply slot, the name, the arguments
  # and the time left to the call waiting on it (ms, or :infinity).
  @type request :: {reference, binary, list, non_neg_integer | :infinity}

  @doc """
  The depth limit of nested callbacks in one process (Python → BEAM →
  Python → ...): a callback past it makes `erlang.call` raise
  `erlang.Error`. Set in `Py.Limits.max_callback_depth/0`.

  ## Example

      iex> Py.Callback.max_depth()
      64
  """
  @spec max_depth() :: pos_integer
  def max_depth, do: @max_depth

  @doc "`Py.register_function/2`: see there."
  @spec register_function(Py.name(), callable) :: :ok
  def register_function(name, fun) when is_function(fun), do: register(name, {:apply, fun})

  def register_function(name, {module, function})
      when is_atom(module) and is_atom(function),
      do: register(name, {:apply, module, function})

  def register_function(_name, other),
    do:
      Py.Options.invalid!(
        "function for Py.register_function/2",
        "a function or {module, function}",
        other
      )

  @doc false
  # Py.register_function/2 and py:register_function/2,3.
  @spec register(Py.name(), entry) :: :ok
  def register(name, entry) do
    :ets.insert(@table, {name!(name), entry})
    :ok
  end

  @doc false
  # Py.unregister_function/1.
  @spec unregister(Py.name()) :: :ok
  def unregister(name) do
    :ets.delete(@table, name!(name))
    :ok
  end

  @doc false
  # Py.registered_functions/0.
  @spec registered() :: [String.t()]
  def registered do
    @table |> :ets.select([{{:"$1", :_}, [], [:"$1"]}]) |> Enum.sort()
  end

  @doc false
  # The name as Python spells it.
  @spec name!(term) :: String.t()
  def name!(name) when is_atom(name) and name not in [nil, true, false],
    do: Atom.to_string(name)

  def name!(name) when is_binary(name) and name != "" do
    if String.valid?(name),
      do: name,
      else: raise(ArgumentError, "a callback name must be valid UTF-8, got: #{inspect(name)}")
  end

  def name!(name) when is_list(name), do: name!(List.to_string(name))

  def name!(name),
    do: raise(ArgumentError, "a callback name is an atom or a string, got: #{inspect(name)}")

  @doc false
  # Runs one callback request and answers it. Never raises: whatever the
  # function does becomes the answer Python gets.
  @spec run(request) :: :ok
  def run({_slot, _name, _args, remaining} = request) do
    _ = run(request, :pool, Py.Callback.deadline(remaining))
    :ok
  end

  @doc false
  # As run/1, by the process waiting for the call that made the callback
  # (Py.Call): the answer also waits a moment for what the call does next,
  # which comes back here: `{:done, reply, queue_us, run_us}` when the
  # Python code finished quickly, `{:callback, request}` when it called back
  # again (run that next), else `:ok` (what comes next comes by message).
  # `deadline` is the call's (`deadline/1` of the request's time left).
  @spec run_for_call(request, integer | :infinity) ::
          :ok | {:done, term, non_neg_integer, non_neg_integer} | {:callback, request}
  def run_for_call(request, deadline), do: run(request, :call, deadline)

  defp run({slot, name, args, _remaining}, how, deadline) do
    {depth, _} = nesting = Process.get(@nesting_key, {0, nil})
    span = span_start(name, depth)

    answer =
      cond do
        depth >= @max_depth ->
          {:failed,
           "callback depth limit reached: #{@max_depth} nested callbacks " <>
             "(Python -> BEAM -> Python ...) in one process; see Py.Callback.max_depth/0"}

        true ->
          case lookup(name) do
            {:ok, entry} -> call(entry, args, nesting, deadline, span)
            :error -> {:unknown, "no BEAM function is registered as #{inspect(name)}"}
            :stopped -> {:failed, "pybridge's callback registry is not running (stopping?)"}
          end
      end

    span_stop(span, answer)
    reply(slot, answer, how)
  end

  # The [:pybridge, :callback, _] span (Py.Telemetry): start, then stop, or
  # exception when the function raised, threw or exited. Compiled out
  # without the telemetry library.
  if Py.Telemetry.enabled?() do
    defp span_start(name, depth) do
      metadata = %{name: name, depth: depth, node: node()}
      start = System.monotonic_time()

      :telemetry.execute(
        [:pybridge, :callback, :start],
        %{monotonic_time: start, system_time: System.system_time()},
        metadata
      )

      {start, metadata}
    end

    defp span_stop(_span, {:raised, _kind, _reason, _banner}), do: :ok

    defp span_stop({start, metadata}, answer) do
      stop = System.monotonic_time()

      :telemetry.execute(
        [:pybridge, :callback, :stop],
        %{duration: stop - start, monotonic_time: stop},
        Map.put(metadata, :result, elem(answer, 0))
      )
    end

    defp span_exception({start, metadata}, kind, reason, stacktrace) do
      stop = System.monotonic_time()

      :telemetry.execute(
        [:pybridge, :callback, :exception],
        %{duration: stop - start, monotonic_time: stop},
        Map.merge(metadata, %{kind: kind, reason: reason, stacktrace: stacktrace})
      )
    end
  else
    defp span_start(_name, _depth), do: nil
    defp span_stop(_span, _answer), do: :ok
    defp span_exception(_span, _kind, _reason, _stacktrace), do: :ok
  end

  defp lookup(name) do
    case :ets.lookup(@table, name) do
      [{_, entry}] -> {:ok, entry}
      [] -> :error
    end
  rescue
    # The table went with Py.Callback.Pool (the application is stopping).
    ArgumentError -> :stopped
  end

  defp call(entry, args, {depth, outer} = nesting, deadline, span) do
    Process.put(@nesting_key, {depth + 1, nested_deadline(outer, deadline)})

    try do
      {:ok, apply_entry(entry, args)}
    catch
      kind, reason ->
        span_exception(span, kind, reason, __STACKTRACE__)
        {:raised, kind, reason, Exception.format_banner(kind, reason, __STACKTRACE__)}
    after
      restore(nesting)
    end
  end

  defp restore({0, _}), do: Process.delete(@nesting_key)
  defp restore(nesting), do: Process.put(@nesting_key, nesting)

  defp apply_entry({:apply, fun}, args), do: apply(fun, args)
  defp apply_entry({:apply, m, f}, args), do: apply(m, f, args)
  defp apply_entry({:erlang, fun}, args), do: :py_dialect.in(fun.(:py_dialect.out(args)))

  defp apply_entry({:erlang, m, f}, args),
    do: :py_dialect.in(apply(m, f, [:py_dialect.out(args)]))

  # The earlier of the enclosing callback's deadline and this call's.
  defp nested_deadline(outer, :infinity), do: outer
  defp nested_deadline(outer, deadline) when is_integer(outer), do: min(outer, deadline)
  defp nested_deadline(_outer, deadline), do: deadline

  defp reply(slot, answer, how) do
    sent =
      case how do
        :call -> Native.callback_reply_inline(slot, answer)
        :pool -> Native.callback_reply(slot, answer)
      end

    case sent do
      :dirty ->
        Native.callback_reply_dirty(slot, answer)
        :ok

      other ->
        other
    end
  rescue
    # Not an answer the NIF takes (cannot happen with the shapes above).
    ArgumentError ->
      Native.callback_reply(slot, {:failed, "pybridge could not encode the callback's answer"})
      :ok
  end

  @doc false
  # The timeout of a call made inside a callback: no later than the
  # deadline of the call the callback serves, so the outer call's timeout
  # still ends the whole chain.
  @compile {:inline, cap_timeout: 1}
  @spec cap_timeout(timeout) :: timeout
  def cap_timeout(timeout) do
    case Process.get(@nesting_key) do
      {_depth, deadline} when is_integer(deadline) ->
        cap(timeout, deadline - System.monotonic_time(:millisecond))

      _ ->
        timeout
    end
  end

  defp cap(_timeout, left) when left <= 0, do: 0
  defp cap(:infinity, left), do: left
  defp cap(timeout, left), do: min(timeout, left)

  @doc false
  # How long a call with `remaining` ms left may keep waiting (the receive
  # loop after a callback).
  @spec deadline(non_neg_integer | :infinity) :: integer | :infinity
  def deadline(:infinity), do: :infinity
  def deadline(remaining), do: System.monotonic_time(:millisecond) + remaining

  @doc false
  @spec left(integer | :infinity) :: timeout
  def left(:infinity), do: :infinity
  def left(deadline), do: max(deadline - System.monotonic_time(:millisecond), 0)

  @doc false
  # The registry's table, made by Py.Callback.Pool.
  @spec table() :: atom
  def table, do: @table
end
