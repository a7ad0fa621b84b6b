defmodule Py.Remote do
  @moduledoc false
  # The `node:` option: run a Py function on another connected node (its own
  # embedded Python) over :erpc. The remote node applies its own timeout and
  # interrupts its Python; the erpc timeout is a little longer so the remote
  # answer, with its precise error, normally wins. Transport failures become
  # %Py.Error{} with an atom type; a remote {:error, %Py.Error{}} passes through
  # untouched; an exception raised by Py on the remote node (ArgumentError for
  # bad input, UndefinedFunctionError when pybridge is not loaded there) is
  # raised again here with its remote stacktrace.

  alias Py.Error

  @margin_ms Py.Limits.remote_margin_ms()

  @spec call(node, atom, list, timeout) :: Py.Call.result()
  def call(node, fun, args, timeout) do
    if node == node() do
      apply(Py, fun, args)
    else
      erpc(node, fun, args, timeout)
    end
  end

  defp erpc(node, fun, args, timeout) do
    # The margin lets the remote side's own timeout error arrive first; erpc
    # takes no longer timeout than the BEAM's longest timer.
    erpc_timeout =
      if timeout == :infinity,
        do: :infinity,
        else: min(timeout + @margin_ms, Py.Limits.max_timeout_ms())

    try do
      :erpc.call(node, Py, fun, args, erpc_timeout)
    catch
      :error, {:erpc, :noconnection} ->
        {:error, %Error{type: :noconnection, message: "node #{inspect(node)} is not reachable"}}

      :error, {:erpc, :timeout} ->
        {:error,
         %Error{
           type: :timeout,
           message: "Python call on node #{inspect(node)} exceeded #{timeout} ms (no answer)"
         }}

      :error, {:erpc, reason} ->
        {:error,
         %Error{type: :erpc, message: "call to node #{inspect(node)} failed: #{inspect(reason)}"}}

      :error, {:exception, reason, stack} ->
        :erlang.raise(:error, reason, stack)

      :exit, {:exception, reason} ->
        {:error,
         %Error{
           type: :remote_exit,
           message: "the call on node #{inspect(node)} exited: #{inspect(reason)}"
         }}

      :exit, {:signal, reason} ->
        {:error,
         %Error{
           type: :remote_exit,
           message: "the call on node #{inspect(node)} was killed: #{inspect(reason)}"
         }}
    end
  end
end
