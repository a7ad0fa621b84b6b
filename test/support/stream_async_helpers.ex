defmodule Py.StreamAsyncHelpers do
  @moduledoc false
  # Streams and coroutines in a fresh context of a given mode, for the tests
  # that run them on other CPythons (peer VMs) and in sub-interpreters.

  @source """
  import asyncio
  log = []

  def gen():
      try:
          i = 0
          while True:
              yield i
              i += 1
      finally:
          log.append("closed")

  async def agen(n):
      for i in range(n):
          await asyncio.sleep(0)
          yield i

  async def add(a, b):
      await asyncio.sleep(0.001)
      return a + b

  cancelled = []
  started = []

  async def sleeper():
      started.append(True)
      try:
          await asyncio.sleep(60)
      except asyncio.CancelledError:
          cancelled.append(True)
          raise
  """

  @doc """
  Runs a stream, an async stream, coroutine calls, an await that times out
  and the closing of the context in a new context of `mode`; returns what
  each gave, for the caller to compare with `expected/0`.
  """
  @spec check(Py.Context.mode()) :: map
  def check(mode) do
    ctx = Py.Context.new(mode: mode)

    result =
      Py.with_context(ctx, fn ->
        :ok = Py.exec(@source)

        taken = Py.stream(:__main__, :gen, [], batch: 4) |> Enum.take(3)
        {:ok, log} = Py.eval("log")

        tasks = for n <- 1..20, do: Py.async_call(:__main__, :add, [n, 1])
        awaited = Py.await_many(tasks)

        # Once it runs (a coroutine cancelled before it starts never runs),
        # the await gives up on it.
        sleeper = Py.async_call(:__main__, :sleeper)
        Py.TestHelpers.eventually(fn -> Py.eval("started") == {:ok, [true]} end, 5_000)
        timed_out = Py.await(sleeper, 50)

        cancelled =
          Py.TestHelpers.eventually(fn -> Py.eval("cancelled") == {:ok, [true]} end, 5_000)

        %{
          taken: taken,
          closed: log,
          async_stream: Py.stream(:__main__, :agen, [4]) |> Enum.to_list(),
          call: Py.call(:__main__, :add, [1, 2]),
          awaited: awaited,
          timed_out: match?({:error, %Py.Error{type: :timeout}}, timed_out),
          cancelled: cancelled
        }
      end)

    # Closing a context whose interpreter has a running event loop: the
    # loop's thread must end before a sub-interpreter can.
    :ok = Py.Context.close(ctx)
    Map.put(result, :after_close, Py.eval("1 + 1"))
  end

  @doc "What `check/1` gives when everything works."
  @spec expected() :: map
  def expected do
    %{
      taken: [0, 1, 2],
      closed: ["closed"],
      async_stream: [0, 1, 2, 3],
      call: {:ok, 3},
      awaited: Enum.map(1..20, &{:ok, &1 + 1}),
      timed_out: true,
      cancelled: true,
      after_close: {:ok, 2}
    }
  end
end
