defmodule Py.SharedDictRedisClusterTest do
  # Redis-backed dicts on a three-master Redis Cluster of the suite's own
  # (Py.Test.RedisCluster.shared/0). The shared behaviour suite also runs
  # on it (Py.SharedDict.RedisClusterBehaviourTest); these are the
  # cluster's own cases: a dict whose slot is not on the node its URL
  # names (MOVED), seed URLs, and where the keys land.
  use ExUnit.Case, async: true

  alias Py.SharedDict, as: SD
  alias Py.Test.{RedisCluster, RedisServer}

  @moduletag :redis

  setup_all do
    {:ok, cluster: RedisCluster.shared()}
  end

  # A fresh dict name whose slot node `node` serves (`on`) or does not.
  defp name_where(cluster, node, on) do
    Stream.repeatedly(fn -> "c#{System.unique_integer([:positive])}" end)
    |> Enum.find(fn name -> RedisCluster.owner(cluster, "{p:#{name}}").port == node.port == on end)
  end

  defp open(backend, name) do
    sd = SD.new!(name: name, backend: backend, prefix: "p")
    on_exit(fn -> SD.destroy(sd) end)
    sd
  end

  test "dicts on two slots, one of them not on the first URL's node: put, get, TTL, events, locks",
       %{cluster: cluster} do
    first = hd(cluster.nodes)
    here = name_where(cluster, first, true)
    there = name_where(cluster, first, false)

    for name <- [here, there] do
      sd = open({:redis, cluster.url}, name)
      owner = RedisCluster.owner(cluster, "{p:#{name}}")
      :ok = SD.subscribe(sd, [:put, :delete, :expire])

      assert SD.put(sd, "k", %{"a" => [1, 2.5]}, ttl: 60_000) == :ok
      assert SD.get(sd, "k") == %{"a" => [1, 2.5]}
      # The value is on the slot's node, as a Redis expiry.
      pttl = RedisServer.cli(owner, ["PTTL", "{p:#{name}}:v:k"]) |> String.trim()
      assert String.to_integer(pttl) in 50_000..60_000
      assert {:ok, 2} = SD.incr(sd, "n", 2)
      assert SD.to_map(sd) == %{"k" => %{"a" => [1, 2.5]}, "n" => 2}
      :ok = SD.delete(sd, "k")
      :ok = SD.put(sd, "t", 1, ttl: 1)

      for {kind, key} <- [put: "k", put: "n", delete: "k", put: "t", expire: "t"] do
        assert_receive {:shared_dict, ^sd, ^kind, ^key}, 20_000
      end

      # A lock taken by one process excludes another until released.
      parent = self()
      :ok = SD.lock(sd, "l")

      waiter =
        spawn_link(fn ->
          send(parent, {:timeout, SD.lock(sd, "l", timeout: 0)})
          send(parent, {:got, SD.lock(sd, "l", timeout: :infinity)})
          SD.unlock(sd, "l")
        end)

      assert_receive {:timeout, {:error, :timeout}}, 20_000
      :ok = SD.unlock(sd, "l")
      assert_receive {:got, :ok}, 20_000
      ref = Process.monitor(waiter)
      assert_receive {:DOWN, ^ref, _, _, _}, 20_000
      assert SD.clear(sd) == :ok
      assert SD.size(sd) == 0
    end
  end

  test "several seed URLs: an unreachable one is skipped", %{cluster: cluster} do
    dead = "redis://127.0.0.1:#{RedisServer.free_port()}/"
    name = "seeds#{System.unique_integer([:positive])}"
    sd = open({:redis, [dead | cluster.urls]}, name)
    :ok = SD.put(sd, "a", 1)
    assert SD.get(sd, "a") == 1
    # Charlists too, as the Erlang facade passes them.
    {:ok, same} =
      :py.shared_dict_new(%{
        name: name <> "_erl",
        backend: {:redis, Enum.map(cluster.urls, &String.to_charlist/1)},
        prefix: "p"
      })

    :ok = SD.put(same, "b", 2)
    assert SD.get(same, "b") == 2
    SD.destroy(same)

    assert_raise ArgumentError, ~r/Redis Cluster/, fn ->
      SD.new(backend: {:redis, ["redis://a:1", "http://b"]})
    end

    assert_raise ArgumentError, fn -> SD.new(backend: {:redis, ["redis://a:1 redis://b:2"]}) end
  end

  test "every key of a dict is on its one slot's node", %{cluster: cluster} do
    name = "slot#{System.unique_integer([:positive])}"
    sd = open({:redis, cluster.url}, name)
    :ok = SD.put(sd, "x", 1, ttl: 60_000)
    :ok = SD.lock(sd, "x")
    owner = RedisCluster.owner(cluster, "{p:#{name}}")
    keys = RedisServer.cli(owner, ["KEYS", "{p:#{name}}*"]) |> String.split("\n", trim: true)
    assert length(keys) >= 6, inspect(keys)
    :ok = SD.unlock(sd, "x")
  end
end
