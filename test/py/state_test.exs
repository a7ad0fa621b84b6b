defmodule Py.StateTest do
  use ExUnit.Case, async: true

  doctest Py.State

  test "the State API is one named SharedDict, not a second store" do
    :ok = Py.State.put("state_test_shared", [1, :two])
    {:ok, sd} = Py.SharedDict.lookup("pybridge.state")
    assert Py.SharedDict.get(sd, "state_test_shared") == [1, "two"]
    assert Py.State.dict() == sd
    Py.SharedDict.put(sd, "state_test_shared", 3)
    assert Py.State.get("state_test_shared") == 3
    assert Py.State.delete("state_test_shared") == :ok
    assert Py.State.fetch("state_test_shared") == :error
  end

  test "counters are atomic across processes" do
    1..20
    |> Enum.map(fn _ ->
      Task.async(fn -> for _ <- 1..500, do: Py.State.incr("state_test_counter") end)
    end)
    |> Task.await_many(60_000)

    assert Py.State.get("state_test_counter") == 10_000
    assert Py.State.decr("state_test_counter", 10_000) == 0
    assert_raise ArgumentError, fn -> Py.State.decr("state_test_counter", 0.5) end
    assert_raise ArgumentError, fn -> Py.State.put(:not_a_string, 1) end
    Py.State.delete("state_test_counter")
  end
end
