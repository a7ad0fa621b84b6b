defmodule Py.Test.RedisCluster do
  @moduledoc """
  A Redis Cluster of a test's own: three masters (`redis-server
  --cluster-enabled yes`, each a `Py.Test.RedisServer` on free loopback
  ports, its cluster bus on another free port), joined by `redis-cli
  --cluster create … --cluster-replicas 0`, and waited for until every node
  says `cluster_state:ok`. `stop/1` stops them all.
  """

  alias Py.Test.RedisServer

  defstruct [:nodes, :url, :urls]

  @type t :: %__MODULE__{}

  @doc "Starts a cluster of `n` masters (at least 3)."
  @spec start(pos_integer) :: t
  def start(n \\ 3) do
    nodes =
      for _ <- 1..n do
        RedisServer.start(
          [
            "--cluster-enabled",
            "yes",
            "--cluster-port",
            Integer.to_string(RedisServer.free_port())
          ] ++
            ["--cluster-config-file", "nodes.conf", "--appendonly", "no"]
        )
      end

    addrs = for s <- nodes, do: "127.0.0.1:#{s.port}"

    {out, status} =
      System.cmd(
        "redis-cli",
        ["--cluster", "create" | addrs] ++ ["--cluster-replicas", "0", "--cluster-yes"],
        stderr_to_stdout: true
      )

    if status != 0 do
      Enum.each(nodes, &RedisServer.stop/1)
      raise "redis-cli --cluster create failed: #{out}"
    end

    for s <- nodes do
      RedisServer.wait_until(
        fn -> RedisServer.cli(s, ["CLUSTER", "INFO"]) =~ "cluster_state:ok" end,
        20_000
      ) ||
        raise "the cluster did not come up"
    end

    %__MODULE__{nodes: nodes, url: hd(nodes).url, urls: Enum.map(nodes, & &1.url)}
  end

  @doc """
  The one cluster shared by every test of this run that needs just "a
  cluster": started on the first call, stopped after the suite.
  """
  @spec shared() :: t
  def shared, do: RedisServer.shared_once(__MODULE__, &start/0, &stop/1)

  @doc "Stops every node and removes their files."
  @spec stop(t) :: :ok
  def stop(%__MODULE__{nodes: nodes}) do
    Enum.each(nodes, &RedisServer.stop/1)
  end

  @doc "The node (a `Py.Test.RedisServer`) serving the hash slot of `key`."
  @spec owner(t, String.t()) :: RedisServer.t()
  def owner(%__MODULE__{nodes: [first | _] = nodes}, key) do
    slot =
      RedisServer.cli(first, ["CLUSTER", "KEYSLOT", key]) |> String.trim() |> String.to_integer()

    Enum.find(nodes, &serves?(&1, slot)) || raise "no node serves slot #{slot}"
  end

  # Whether node `s` serves `slot`: its own line of CLUSTER NODES lists
  # its slot ranges from the 9th field on.
  defp serves?(s, slot) do
    RedisServer.cli(s, ["CLUSTER", "NODES"])
    |> String.split("\n", trim: true)
    |> Enum.find(&String.contains?(&1, "myself"))
    |> String.split(" ")
    |> Enum.drop(8)
    |> Enum.any?(fn range ->
      case String.split(range, "-") do
        [lo, hi] -> String.to_integer(lo) <= slot and slot <= String.to_integer(hi)
        [one] -> String.match?(one, ~r/^\d+$/) and String.to_integer(one) == slot
        _ -> false
      end
    end)
  end
end
