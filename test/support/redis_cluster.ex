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

  @doc """
  Starts a cluster of `n` masters (at least 3). A node's ports are picked
  free, but another program may take one before the node binds it: a
  cluster that fails to form is stopped and formed again on new ports, up
  to three times.
  """
  @spec start(pos_integer) :: t
  def start(n \\ 3), do: start(n, 3)

  defp start(n, attempts) do
    case try_start(n) do
      {:ok, cluster} -> cluster
      {:error, why} when attempts <= 1 -> raise why
      {:error, _why} -> start(n, attempts - 1)
    end
  end

  defp try_start(n) do
    # Each node's client port and cluster bus port, all distinct.
    ports = RedisServer.free_ports(2 * n) |> Enum.chunk_every(2)

    with {:ok, nodes} <- start_nodes(ports, []) do
      case form(nodes) do
        :ok ->
          {:ok, %__MODULE__{nodes: nodes, url: hd(nodes).url, urls: Enum.map(nodes, & &1.url)}}

        {:error, why} ->
          Enum.each(nodes, &RedisServer.stop/1)
          {:error, why}
      end
    end
  end

  defp start_nodes([], started), do: {:ok, Enum.reverse(started)}

  defp start_nodes([[port, bus] | rest], started) do
    node =
      RedisServer.start(
        ["--cluster-enabled", "yes", "--cluster-port", Integer.to_string(bus)] ++
          ["--cluster-config-file", "nodes.conf", "--appendonly", "no"],
        port
      )

    start_nodes(rest, [node | started])
  rescue
    # Its port taken meanwhile: the ones started are stopped.
    e ->
      Enum.each(started, &RedisServer.stop/1)
      {:error, Exception.message(e)}
  end

  # Joins the nodes into one cluster and waits until each says so.
  defp form(nodes) do
    addrs = for s <- nodes, do: "127.0.0.1:#{s.port}"

    {out, status} =
      System.cmd(
        "redis-cli",
        ["--cluster", "create" | addrs] ++ ["--cluster-replicas", "0", "--cluster-yes"],
        stderr_to_stdout: true
      )

    cond do
      status != 0 ->
        {:error, "redis-cli --cluster create failed: #{out}"}

      Enum.all?(nodes, &up?/1) ->
        :ok

      true ->
        {:error, "the cluster did not come up"}
    end
  end

  defp up?(s) do
    RedisServer.wait_until(
      fn -> RedisServer.cli(s, ["CLUSTER", "INFO"]) =~ "cluster_state:ok" end,
      20_000
    )
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
