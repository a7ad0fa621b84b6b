defmodule Py.RemoteTest do
  # Starts distribution and a second BEAM node with :peer, so not async.
  use ExUnit.Case, async: false

  @moduletag :distributed

  setup_all do
    {peer, node} = Py.TestHelpers.start_node_peer("pybridge_test")
    on_exit(fn -> :peer.stop(peer) end)
    {:ok, node: node}
  end

  test "coalesce: and group: are handed to the other node, which coalesces there",
       %{node: node} do
    group = {:remote_test, make_ref()}
    assert Py.call(:math, :sqrt, [16], node: node, coalesce: true, group: group) == {:ok, 4.0}
    assert Py.eval("1 + 1", %{}, node: node, coalesce: :two, group: group) == {:ok, 2}
    assert Py.exec("z = 1", node: node, coalesce: true, group: group) == :ok
    assert %{misses: 3} = :erpc.call(node, Py.Coalesce, :stats, [group])
    assert %{misses: 0} = Py.Coalesce.stats(group)
  end

  test "eval, exec and call run on the other node's Python", %{node: node} do
    assert Py.eval("1 + 1", %{}, node: node) == {:ok, 2}
    assert Py.eval("x * 2", %{x: 21}, node: node, timeout: 5_000) == {:ok, 42}
    assert Py.call(:math, :sqrt, [16], node: node) == {:ok, 4.0}
    assert Py.call(:builtins, :int, ["ff"], node: node, kwargs: [base: 16]) == {:ok, 255}

    {:ok, local_pid} = Py.call(:os, :getpid)
    {:ok, remote_pid} = Py.call(:os, :getpid, [], node: node)
    assert local_pid != remote_pid
    assert remote_pid == :erpc.call(node, System, :pid, []) |> String.to_integer()
  end

  test "exec on the other node does not touch the local namespace", %{node: node} do
    assert Py.exec("remote_only = 1", node: node) == :ok
    assert {:error, %Py.Error{type: "NameError"}} = Py.eval("remote_only")
    assert Py.eval!("2 + 2", %{}, node: node) == 4
    assert Py.exec!("y = 1", node: node) == :ok
  end

  test "Python errors are passed through untouched", %{node: node} do
    assert {:error, %Py.Error{type: "ZeroDivisionError", message: "division by zero"} = error} =
             Py.eval("1 / 0", %{}, node: node)

    assert is_binary(error.traceback)
    assert {:error, %Py.Error{type: "SyntaxError"}} = Py.exec("def (", node: node)

    assert {:error, %Py.Error{type: "ModuleNotFoundError"}} =
             Py.call(:no_such_xyz, :f, [], node: node)

    assert_raise Py.Error, ~r/ZeroDivisionError/, fn -> Py.eval!("1 / 0", %{}, node: node) end
  end

  test "timeouts are applied and reported by the other node", %{node: node} do
    # An endless loop: only the timeout ends it.
    assert {:error, %Py.Error{type: :timeout, message: "Python call exceeded 200 ms"}} =
             Py.exec("while True:\n    pass\n", node: node, timeout: 200)

    assert Py.eval("1 + 1", %{}, node: node, timeout: 5_000) == {:ok, 2}
  end

  test "BEAM-side misuse raises locally, with the remote reason", %{node: node} do
    assert_raise ArgumentError, ~r/Elixir module/, fn -> Py.call(Foo, :f, [], node: node) end
  end

  test "an unreachable node is a :noconnection error" do
    assert {:error, %Py.Error{type: :noconnection}} =
             Py.eval("1", %{}, node: :"nobody_here@127.0.0.1", timeout: 5_000)

    assert {:error, %Py.Error{type: :noconnection}} =
             Py.call(:math, :sqrt, [4], node: :"nobody_here@127.0.0.1")
  end

  test "node: node() runs locally" do
    assert Py.eval("1 + 1", %{}, node: node()) == {:ok, 2}
  end

  test "Py.Dashboard.snapshot/1 reads the other node's contexts, groups and dicts",
       %{node: node} do
    name = "remote_dashboard_#{System.unique_integer([:positive])}"
    {:ok, sd} = :erpc.call(node, Py.SharedDict, :new, [[name: name]])
    :ok = :erpc.call(node, Py.SharedDict, :put, [sd, "k", "SECRET-REMOTE"])
    group = {:remote_dashboard, name}
    {:ok, 2.0} = Py.call(:math, :sqrt, [4], node: node, coalesce: true, group: group)
    {:ok, 2} = Py.eval("1 + 1", %{}, node: node)

    snapshot = Py.Dashboard.snapshot(node)
    assert snapshot.node == node
    assert {:ok, %{node: ^node}} = Py.Dashboard.fetch(node)

    assert %{backend: :memory, size: 1, puts: 1} =
             Enum.find(snapshot.shared_dicts, &(&1.name == name))

    assert %{side: :beam, misses: 1} = Enum.find(snapshot.coalescing, &(&1.group == group))
    assert Enum.sum(Enum.map(snapshot.contexts, & &1.calls_total)) >= 1
    refute inspect(snapshot, limit: :infinity) =~ "SECRET-REMOTE"

    # None of it is this node's.
    local = Py.Dashboard.snapshot()
    refute Enum.any?(local.shared_dicts, &(&1.name == name))
    refute Enum.any?(local.coalescing, &(&1.group == group))
  end
end
