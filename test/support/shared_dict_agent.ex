defmodule Py.Test.SharedDictAgent do
  @moduledoc """
  A process on another BEAM node (started with `Node.spawn/4`) that
  opens a SharedDict there, subscribes to it, forwards its events to the
  test, and runs `Py.SharedDict` functions on it for the test. It lives in
  test/support (compiled, on the code path) because the other node cannot
  run closures made in a test module.
  """

  alias Py.SharedDict, as: SD

  @doc "Spawned on the other node: opens the dict with `opts` and serves `test`."
  @spec start(pid, keyword) :: no_return
  def start(test, opts) do
    sd = SD.new!(opts)
    :ok = SD.subscribe(sd, [:put, :delete, :expire])
    send(test, {:agent_ready, self()})
    loop(test, sd)
  end

  @doc "Runs `Py.SharedDict.fun(sd, args...)` on the agent's node; its result."
  @spec run(pid, atom, list) :: term
  def run(agent, fun, args) do
    send(agent, {:run, self(), fun, args})

    receive do
      {:ran, result} -> result
    after
      30_000 -> raise "the remote agent did not answer"
    end
  end

  defp loop(test, sd) do
    receive do
      {:shared_dict, _sd, kind, key} ->
        send(test, {:remote_event, kind, key})

      {:run, from, fun, args} ->
        send(from, {:ran, apply(SD, fun, [sd | args])})
    end

    loop(test, sd)
  end
end
