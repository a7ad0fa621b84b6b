defmodule Py.StreamTest do
  use ExUnit.Case, async: true

  import Py.TestHelpers

  # A Python module shared by every process (modules are per interpreter,
  # not per namespace): generators that record how far they ran and whether
  # they were closed, under a key of the test's own.
  @module_source """
  import asyncio

  produced = {}
  closed = {}

  def counter(key):
      produced[key] = 0
      try:
          i = 0
          while True:
              produced[key] = i + 1
              yield i
              i += 1
      finally:
          closed[key] = True

  def failing(key, n):
      for i in range(n):
          yield i
      raise ValueError("boom after %d" % n)

  async def acounter(key, n=None):
      produced[key] = 0
      try:
          i = 0
          while n is None or i < n:
              await asyncio.sleep(0)
              produced[key] = i + 1
              yield i
              i += 1
      finally:
          closed[key] = True

  async def afailing(n):
      for i in range(n):
          yield i
      raise KeyError("async boom")

  def state(key):
      return (produced.get(key), closed.get(key, False))
  """

  setup_all do
    :ok = install_module("pybridge_stream_test", @module_source)
  end

  @mod :pybridge_stream_test

  defp key, do: "k#{System.unique_integer([:positive])}"

  defp state(key), do: Py.call!(@mod, :state, [key])

  test "streams a range, a list and a generator expression" do
    assert Enum.to_list(Py.stream(:builtins, :range, [5])) == [0, 1, 2, 3, 4]
    assert Enum.to_list(Py.stream(:builtins, :list, [["a", 1.5, nil]])) == ["a", 1.5, nil]

    assert Py.stream_eval("(x * x for x in range(n))", locals: %{n: 4}) |> Enum.to_list() ==
             [0, 1, 4, 9]

    # Dict iteration gives the keys, as in Python.
    assert Py.stream(:builtins, :dict, [], kwargs: [a: 1]) |> Enum.to_list() == ["a"]
  end

  test "is lazy: nothing runs before consumption" do
    stream = Py.stream(:no_such_module_for_streams, :f)
    assert is_function(stream, 2)

    assert_raise Py.Error, ~r/no_such_module_for_streams/, fn -> Enum.to_list(stream) end
  end

  test "taking 10 items of an infinite generator runs it at most one batch further, then closes it" do
    for batch <- [1, 3, 7, 1000] do
      k = key()
      assert Py.stream(@mod, :counter, [k], batch: batch) |> Enum.take(10) == Enum.to_list(0..9)
      {produced, closed} = state(k)
      assert produced >= 10 and produced <= 10 + batch, "batch #{batch}: produced #{produced}"
      assert closed, "batch #{batch}: the generator's finally did not run"
    end
  end

  test "batches cross in one call each: a 100,000-item range in batches of 10,000" do
    assert Py.stream(:builtins, :range, [100_000], batch: 10_000) |> Enum.sum() ==
             Enum.sum(0..99_999)
  end

  test "an exception mid-stream raises Py.Error after the items before it" do
    for batch <- [1, 2, 1000] do
      parent = self()

      error =
        assert_raise Py.Error, fn ->
          Py.stream(@mod, :failing, [key(), 3], batch: batch)
          |> Enum.each(&send(parent, {:item, &1}))
        end

      assert error.type == "ValueError"
      assert error.message == "boom after 3"
      assert error.traceback =~ "failing"
      for i <- 0..2, do: assert_received({:item, ^i})
    end
  end

  test "a consumer that raises closes the generator" do
    k = key()

    assert_raise RuntimeError, fn ->
      Py.stream(@mod, :counter, [k], batch: 2)
      |> Enum.each(fn i -> if i == 3, do: raise("stop") end)
    end

    assert {_, true} = state(k)
  end

  # The same kill, of a generator and of an async generator.
  for {function, what, name} <- [
        {:counter, "generator",
         "a consumer killed mid-stream: the generator is closed, its handle released"},
        {:acounter, "async generator",
         "a consumer killed mid-stream of an async generator: it is closed too (on the loop)"}
      ] do
    test "#{name}" do
      k = key()
      test = self()

      consumer =
        spawn(fn ->
          Py.stream(@mod, unquote(function), [k], batch: 2)
          |> Enum.each(fn i ->
            send(test, {:item, i})
            if i == 2, do: Process.sleep(:infinity)
          end)
        end)

      assert_receive {:item, 2}, 5_000
      assert {_, false} = state(k)
      Process.exit(consumer, :kill)

      assert eventually(fn -> match?({_, true}, state(k)) end, 5_000),
             "the #{unquote(what)} was never closed"
    end
  end

  test "a __main__ generator function of the consuming process's namespace" do
    :ok = Py.exec("def gen3():\n    yield from 'abc'\n")
    assert Py.stream(:__main__, :gen3) |> Enum.to_list() == ["a", "b", "c"]
  end

  test "an object that is not iterable is a TypeError" do
    assert_raise Py.Error, ~r/not iterable/, fn ->
      Py.stream(:builtins, :int, [3]) |> Enum.to_list()
    end
  end

  test "async generators: items in order, closed (aclose) when halted early" do
    assert Py.stream(@mod, :acounter, [key(), 5]) |> Enum.to_list() == [0, 1, 2, 3, 4]

    k = key()
    assert Py.stream(@mod, :acounter, [k], batch: 4) |> Enum.take(5) == [0, 1, 2, 3, 4]
    {produced, closed} = state(k)
    assert produced <= 5 + 4
    assert closed

    error = assert_raise Py.Error, fn -> Py.stream(@mod, :afailing, [2]) |> Enum.to_list() end

    assert error.type == "KeyError"
  end

  test "options are validated when the stream is made" do
    assert_raise ArgumentError, ~r/:batch option/, fn ->
      Py.stream(:builtins, :range, [3], batch: 0)
    end

    assert_raise ArgumentError, ~r/unknown option :colour/, fn ->
      Py.stream(:builtins, :range, [3], colour: :red)
    end

    assert_raise ArgumentError, ~r/module for Py.stream/, fn -> Py.stream(Enum, :range) end
    assert_raise ArgumentError, ~r/:locals option/, fn -> Py.stream_eval("x", locals: 3) end
  end

  test "each batch is bounded by the timeout" do
    stream = Py.stream_eval("(__import__('time').sleep(10) for _ in range(2))", timeout: 100)
    error = assert_raise Py.Error, fn -> Enum.to_list(stream) end
    assert error.type == :timeout
  end
end
