defmodule Py.TestHelpers do
  @moduledoc false
  # Small helpers shared by the pybridge test suites.

  @doc """
  Calls `fun` until it returns a truthy value or `timeout` ms have passed;
  returns the last value. Used for effects that happen asynchronously
  (monitors firing, resources being garbage-collected).
  """
  @spec eventually((() -> term), non_neg_integer, pos_integer) :: term
  def eventually(fun, timeout \\ 3_000, interval \\ 20) do
    deadline = System.monotonic_time(:millisecond) + timeout
    loop(fun, deadline, interval)
  end

  defp loop(fun, deadline, interval) do
    case fun.() do
      result when result not in [nil, false] ->
        result

      result ->
        if System.monotonic_time(:millisecond) >= deadline do
          result
        else
          Process.sleep(interval)
          loop(fun, deadline, interval)
        end
    end
  end

  @doc "Runs `fun` in a fresh process and returns its result (re-raising its exceptions)."
  @spec in_process((() -> result)) :: result when result: term
  def in_process(fun) do
    fun |> Task.async() |> Task.await(30_000)
  end

  @doc "Milliseconds `fun` takes, and its result."
  @spec timed((() -> result)) :: {non_neg_integer, result} when result: term
  def timed(fun) do
    t0 = System.monotonic_time(:millisecond)
    result = fun.()
    {System.monotonic_time(:millisecond) - t0, result}
  end
end
