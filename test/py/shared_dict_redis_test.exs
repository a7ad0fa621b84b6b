defmodule Py.SharedDictRedisTest do
  # A redis-server of its own (free loopback port, temp dir) and a second
  # BEAM node (:peer): not async.
  use ExUnit.Case, async: false

  import Py.TestHelpers

  alias Py.Native
  alias Py.SharedDict, as: SD
  alias Py.Test.RedisServer

  @moduletag :redis

  setup_all do
    server = RedisServer.start()
    on_exit(fn -> RedisServer.stop(server) end)
    {:ok, server: server}
  end

  defp unique, do: "t#{System.unique_integer([:positive])}"

  # Named dicts live until destroyed: destroyed when the test ends, so none
  # is left behind pointing at this module's server once it has stopped.
  defp open(server, name, opts \\ []) do
    sd = SD.new!([name: name, backend: {:redis, server.url}, prefix: "p"] ++ opts)
    on_exit(fn -> SD.destroy(sd) end)
    sd
  end

  defp start_peer, do: Py.TestHelpers.start_node_peer("pybridge_redis")

  defp remote_agent(node, url, name) do
    # Not linked: the test stops that node while the agent holds a lock.
    Node.spawn(node, Py.Test.SharedDictAgent, :start, [
      self(),
      [name: name, backend: {:redis, url}, prefix: "p"]
    ])

    receive do
      {:agent_ready, pid} -> pid
    after
      60_000 -> flunk("the remote agent did not start")
    end
  end

  defp on_agent(agent, fun, args), do: Py.Test.SharedDictAgent.run(agent, fun, args)

  # Holds every write the server gets (CLIENT PAUSE WRITE; reads and the
  # event stream go on) until `release_writes/1`: a put sent meanwhile
  # stays on its way, so the dict's next puts queue behind it. A latch, not
  # a delay; released well within the pool's 2 s command deadline.
  defp hold_writes(server) do
    assert RedisServer.cli(server, ["CLIENT", "PAUSE", "60000", "WRITE"]) =~ "OK"
    on_exit(fn -> RedisServer.cli(server, ["CLIENT", "UNPAUSE"]) end)
  end

  defp release_writes(server),
    do: assert(RedisServer.cli(server, ["CLIENT", "UNPAUSE"]) =~ "OK")

  # Starts a put of `key` (the public API; with nothing on its way it goes
  # to Redis at once, where writes are held) and returns once it is on its
  # way: once `shared_dict_put_later` queues a put behind it (`:wait`; a
  # `:dirty` answer before that queued nothing). The queued put's tag.
  defp in_flight_then_queued(sd, key, queued_key, queued_value, ttl \\ nil) do
    task = Task.async(fn -> SD.put(sd, key, 0) end)
    tag = make_ref()

    assert RedisServer.wait_until(
             fn ->
               Native.shared_dict_put_later(sd.ref, queued_key, queued_value, ttl, :always, tag) ==
                 :wait
             end,
             10_000
           ),
           "the first put never got on its way"

    {task, tag}
  end

  test "a put queued behind a batch on its way answers :wait, then {tag, {:ok, version}}",
       %{server: s} do
    sd = open(s, unique())
    :ok = SD.subscribe(sd, [:put])
    hold_writes(s)
    {first, tag} = in_flight_then_queued(sd, "first", "queued", [1, 2])
    # Queued, not written: its answer waits for the batch.
    refute_received {^tag, _}
    release_writes(s)
    assert Task.await(first) == :ok
    assert_receive {^tag, {:ok, version}}, 10_000
    assert is_integer(version)
    # Answered once written and its event raised.
    assert SD.get(sd, "queued") == [1, 2]
    assert_receive {:shared_dict, ^sd, :put, "first"}, 5_000
    assert_receive {:shared_dict, ^sd, :put, "queued"}, 5_000
    # Through the public API, a put that queues is answered as any other.
    hold_writes(s)
    {first, tag} = in_flight_then_queued(sd, "first", "queued2", 3)
    put = Task.async(fn -> SD.put(sd, "public", 4) end)
    release_writes(s)
    assert Task.await(first) == :ok
    assert Task.await(put) == :ok
    assert_receive {^tag, {:ok, _}}, 10_000
    assert SD.get(sd, "public") == 4
  end

  test "a queued put's value that cannot be stored is answered at once, as a put's",
       %{server: s} do
    sd = open(s, unique())
    fun = fn -> :not_data end
    hold_writes(s)
    {first, tag} = in_flight_then_queued(sd, "first", "queued", 1)
    # A batch is on its way: this put would queue, but its value fails to
    # convert; the conversion error comes back from the call itself.
    bad_tag = make_ref()

    assert {:error, {:conversion, message, nil}} =
             Native.shared_dict_put_later(sd.ref, "bad", fun, nil, :always, bad_tag)

    assert message =~ "function"
    assert {:error, %Py.Error{type: :conversion, message: ^message}} = SD.put(sd, "bad", fun)
    release_writes(s)
    assert Task.await(first) == :ok
    assert_receive {^tag, {:ok, _}}, 10_000
    refute_received {^bad_tag, _}
    assert SD.get(sd, "bad") == nil
    # The same error a put gives on a dict nothing queues on.
    mem = SD.new!()

    assert SD.put(mem, "bad", fun) ==
             {:error, %Py.Error{type: :conversion, message: message, traceback: nil}}
  end

  test "a put queued when its dict is destroyed is still written and answered",
       %{server: s} do
    name = unique()
    sd = open(s, name)
    hold_writes(s)
    {first, tag} = in_flight_then_queued(sd, "first", "queued", 9)
    # destroy/1 waits for the put on its way; the queued one was accepted
    # before it.
    destroy = Task.async(fn -> SD.destroy(sd) end)
    release_writes(s)
    assert Task.await(first) == :ok
    assert Task.await(destroy) == :ok
    assert_receive {^tag, {:ok, _}}, 10_000
    # Destroyed: a put now neither queues nor writes.
    assert_raise Py.Error, fn -> SD.put(sd, "after", 1) end
    reopened = open(s, name)
    assert SD.get(reopened, "queued") == 9
    assert SD.get(reopened, "after") == nil
  end

  # Gets share round trips: with a read on its way (the read script is a
  # script, so CLIENT PAUSE WRITE holds it too), the next gets queue behind
  # it without a dirty scheduler and are answered by message.
  test "gets queued behind a read on its way: each answered its own key's value by message" do
    server = RedisServer.start()

    try do
      name = unique()
      sd = open(server, name)
      for i <- 1..20, do: :ok = SD.put(sd, "k#{i}", %{"i" => i})
      :ok = SD.put(sd, "short", 1, ttl: 100)
      hold_writes(server)
      first = Task.async(fn -> SD.get(sd, "k1") end)
      tag = make_ref()

      assert RedisServer.wait_until(
               fn -> Native.shared_dict_get_later(sd.ref, "k2", tag) == :wait end,
               10_000
             ),
             "the first get never got on its way"

      readers = for i <- 3..20, do: Task.async(fn -> SD.fetch(sd, "k#{i}") end)
      missing = Task.async(fn -> SD.get(sd, "nope", :default) end)
      # Past its expiry on Redis's clock before the queued read goes (PTTL
      # reads that clock; -2: expired).
      assert RedisServer.wait_until(
               fn -> RedisServer.cli(server, ["PTTL", "{p:#{name}}:v:short"]) =~ "-2" end,
               10_000
             )

      expired = Task.async(fn -> SD.fetch(sd, "short") end)
      refute_received {^tag, _}
      release_writes(server)
      assert Task.await(first) == %{"i" => 1}
      assert_receive {^tag, {:ok, %{"i" => 2}, version}}, 10_000
      assert is_integer(version)

      for {task, i} <- Enum.zip(readers, 3..20),
          do: assert(Task.await(task) == {:ok, %{"i" => i}})

      assert Task.await(missing) == :default
      assert Task.await(expired) == :error

      # Redis down with gets queued: an error each, never a raise.
      hold_writes(server)
      _first = Task.async(fn -> SD.fetch(sd, "k1") end)
      tag = make_ref()

      assert RedisServer.wait_until(
               fn -> Native.shared_dict_get_later(sd.ref, "k2", tag) == :wait end,
               10_000
             )

      fetch = Task.async(fn -> SD.fetch(sd, "k3") end)
      get = Task.async(fn -> SD.get(sd, "k4", :default) end)
      RedisServer.kill(server)
      assert_receive {^tag, {:error, {:backend, _, _}}}, 10_000
      assert {:error, %Py.Error{type: :backend}} = Task.await(fetch)
      assert Task.await(get) == :default
    after
      RedisServer.stop(server)
    end
  end

  test "the basics, with TTLs as Redis expiries", %{server: s} do
    name = unique()
    sd = open(s, name)
    assert SD.put(sd, "k", %{"a" => [1, 2.5, nil], "b" => {1, "x"}}, ttl: 60_000) == :ok
    assert SD.get(sd, "k") == %{"a" => [1, 2.5, nil], "b" => {1, "x"}}
    pttl = RedisServer.cli(s, ["PTTL", "{p:#{name}}:v:k"]) |> String.trim() |> String.to_integer()
    assert pttl > 50_000 and pttl <= 60_000
    assert SD.put_new(sd, "k", 2) == {:error, :exists}
    assert SD.incr(sd, "n", 3) == {:ok, 3}
    assert SD.update(sd, "n", 0, &(&1 * 10)) == {:ok, 30}
    assert Enum.sort(SD.keys(sd)) == ["k", "n"]
    assert SD.size(sd) == 2
    assert SD.take(sd, "n") == {:ok, 30}
    assert SD.persist(sd, "k")
    assert SD.ttl(sd, "k") == :infinity
    assert SD.expire(sd, "k", 50)
    assert_eventually(fn -> SD.get(sd, "k") == nil end, 10_000)
    assert SD.clear(sd) == :ok
    assert SD.size(sd) == 0
    assert SD.destroy(sd) == :ok
  end

  test "Python opens a Redis dict by name; the BEAM reads what it wrote", %{server: s} do
    name = unique()

    assert {:ok, nil} =
             Py.eval(
               "__import__('erlang').SharedDict.open(n, 'redis', url=u, prefix='p').__setitem__('k', {'a': [1, 2.5]})",
               %{n: name, u: s.url}
             )

    {:ok, sd} = SD.lookup(name)
    assert SD.backend(sd) == :redis
    assert SD.get(sd, "k") == %{"a" => [1, 2.5]}
    # It is in Redis, under the dict's hash tag.
    assert RedisServer.cli(s, ["EXISTS", "{p:#{name}}:v:k"]) =~ "1"

    assert {:error, %Py.Error{type: "ValueError", message: message}} =
             Py.eval("__import__('erlang').SharedDict.open('x', 'redis')")

    assert message =~ "url="
  end

  test "the Erlang facade and LiveDict take the Redis backend too", %{server: s} do
    name = unique()

    {:ok, sd} =
      :py.shared_dict_new(%{name: name, backend: {:redis, String.to_charlist(s.url)}, prefix: "p"})

    assert SD.backend(sd) == :redis
    :ok = :py.shared_dict_set(sd, "e", 7)

    # A LiveDict on another name of the same server, then read from the BEAM.
    live = unique()

    assert {:ok, 7} =
             Py.eval(
               """
               __import__('erlang').LiveDict(backend='redis', uri=u, name=n).set('l', 7) or 7
               """,
               %{u: s.url, n: live}
             )

    {:ok, ld} = SD.lookup(live)
    assert SD.backend(ld) == :redis
    assert SD.get(ld, "l") == 7
    assert RedisServer.cli(s, ["EXISTS", "{p:#{name}}:v:e"]) =~ "1"
    assert RedisServer.cli(s, ["EXISTS", "{#{live}}:v:l"]) =~ "1"

    # A private LiveDict leaves no value behind when stopped.
    assert {:ok, _} =
             Py.eval(
               "(lambda d: (d.set('x', 1), d.stop()))(__import__('erlang').LiveDict(backend='redis', uri=u))",
               %{u: s.url}
             )

    assert RedisServer.cli(s, ["KEYS", "{pybridge.livedict.*:v:*"]) |> String.trim() == ""
  end

  test "unreachable Redis at start is a clear error" do
    url = "redis://127.0.0.1:#{RedisServer.free_port()}/"

    assert {:error, %Py.Error{type: :backend, message: message}} =
             SD.new(name: unique(), backend: {:redis, url})

    assert message =~ "redis"
    assert_raise ArgumentError, fn -> SD.new(backend: {:redis, 42}) end
  end

  test "Redis restarted under load: errors, never a raise; it recovers by itself" do
    server = RedisServer.start()

    try do
      sd = open(server, unique())
      parent = self()
      # Per loop: acknowledged writes (1 + i) and errors (5 + i), counted
      # as they happen, so the test waits on what the loops saw, not on time.
      seen = :counters.new(8, [:atomics])

      # Writers and readers in hot loops, through the outage.
      loops =
        for i <- 0..3 do
          spawn_link(fn ->
            counts =
              Enum.reduce_while(Stream.iterate(0, &(&1 + 1)), %{ok: 0, error: 0, acked: []}, fn n,
                                                                                                acc ->
                receive do
                  :stop -> {:halt, acc}
                after
                  0 ->
                    key = "w#{i}-#{n}"

                    acc =
                      case SD.put(sd, key, n) do
                        :ok ->
                          :counters.add(seen, 1 + i, 1)
                          %{acc | ok: acc.ok + 1, acked: [key | acc.acked]}

                        {:error, %Py.Error{type: :backend}} ->
                          :counters.add(seen, 5 + i, 1)
                          %{acc | error: acc.error + 1}
                      end

                    # get/3 never raises; fetch/2 tells an error apart.
                    _ = SD.get(sd, key)
                    {:cont, acc}
                end
              end)

            send(parent, {:done, self(), counts})
          end)
        end

      oks = fn -> for i <- 0..3, do: :counters.get(seen, 1 + i) end
      errors = fn -> for i <- 0..3, do: :counters.get(seen, 5 + i) end

      # Every loop wrote before the outage.
      assert_eventually(fn -> Enum.all?(oks.(), &(&1 > 0)) end, 20_000)
      RedisServer.kill(server)
      assert {:error, %Py.Error{type: :backend}} = SD.fetch(sd, "w1-0")
      # Every loop met the outage (a write in flight at the kill may still
      # have been acknowledged: only errors prove a loop saw it).
      assert_eventually(fn -> Enum.all?(errors.(), &(&1 > 0)) end, 20_000)
      before = oks.()
      server = RedisServer.restart(server)
      assert_eventually(fn -> match?({:ok, _}, SD.fetch(sd, "w1-0")) end, 10_000)
      # Every loop wrote again after the restart, by itself.
      assert_eventually(
        fn -> Enum.zip(oks.(), before) |> Enum.all?(fn {now, was} -> now > was end) end,
        20_000
      )

      Enum.each(loops, &send(&1, :stop))

      results = for pid <- loops, do: receive(do: ({:done, ^pid, c} -> c))
      assert Enum.all?(results, &(&1.error > 0)), "the outage was seen"
      assert Enum.all?(results, &(&1.ok > 0))

      # Every acknowledged write is there (appendfsync always).
      for %{acked: acked} <- results, key <- acked do
        assert {:ok, _} = SD.fetch(sd, key)
      end

      RedisServer.stop(server)
    after
      RedisServer.stop(server)
    end
  end

  test "Python callbacks on a Redis dict get the value written or removed", %{server: s} do
    sd = open(s, unique())
    log = SD.new!()
    :ok = SD.subscribe(log, [:put])

    :ok =
      Py.exec("""
      from erlang import SharedDict
      def redis_recorder(h, log_h, event):
          log = SharedDict(log_h)
          def cb(key, value):
              log.set(event + ":" + key, value)
          SharedDict(h).register_callback(event, cb)
      """)

    {:ok, _} = Py.eval("redis_recorder(h, l, 'set')", %{h: sd, l: log})
    {:ok, _} = Py.eval("redis_recorder(h, l, 'delete')", %{h: sd, l: log})
    # Small values travel in the event; a big one is read back by version.
    big = :binary.copy("x", 100_000)
    :ok = SD.put(sd, "small", %{"a" => [1, 2.5]})
    :ok = SD.put(sd, "big", big)
    :ok = SD.delete(sd, "small")
    assert_receive {:shared_dict, ^log, :put, "set:small"}, 20_000
    assert_receive {:shared_dict, ^log, :put, "set:big"}, 20_000
    assert_receive {:shared_dict, ^log, :put, "delete:small"}, 20_000
    assert SD.get(log, "set:small") == %{"a" => [1, 2.5]}
    assert SD.get(log, "set:big") == big
    assert SD.get(log, "delete:small") == %{"a" => [1, 2.5]}
  end

  @tag :distributed
  # Concurrent writes of one dict share script calls (batches): each caller
  # still gets its own answer and its own event, once.
  test "64 concurrent put_new on 8 keys: one :ok per key, each event once", %{server: s} do
    sd = open(s, unique())
    :ok = SD.subscribe(sd, [:put, :delete])

    results =
      1..64
      |> Task.async_stream(fn i -> {"k#{rem(i, 8)}", i, SD.put_new(sd, "k#{rem(i, 8)}", i)} end,
        max_concurrency: 64,
        ordered: false
      )
      |> Enum.map(fn {:ok, r} -> r end)

    winners = for {k, i, :ok} <- results, do: {k, i}
    assert length(winners) == 8
    assert winners |> Enum.map(&elem(&1, 0)) |> Enum.uniq() |> length() == 8
    assert Enum.count(results, &match?({_, _, {:error, :exists}}, &1)) == 56
    for {k, i} <- winners, do: assert(SD.get(sd, k) == i)
    for {k, _} <- winners, do: assert_receive({:shared_dict, ^sd, :put, ^k}, 5_000)

    # Each caller takes back what it wrote, with puts and takes batched.
    taken =
      1..64
      |> Task.async_stream(
        fn i ->
          :ok = SD.put(sd, "own#{i}", i)
          {i, SD.take(sd, "own#{i}")}
        end,
        max_concurrency: 64,
        ordered: false
      )
      |> Enum.map(fn {:ok, r} -> r end)

    for {i, got} <- taken, do: assert(got == {:ok, i})

    for i <- 1..64 do
      key = "own#{i}"
      assert_receive {:shared_dict, ^sd, :put, ^key}, 5_000
      assert_receive {:shared_dict, ^sd, :delete, ^key}, 5_000
    end

    refute_receive {:shared_dict, ^sd, _, _}, 300
  end

  test "two BEAM nodes see each other's writes and every event", %{server: s} do
    {peer, node} = start_peer()

    try do
      name = unique()
      sd = open(s, name)
      :ok = SD.subscribe(sd, [:put, :delete, :expire])
      agent = remote_agent(node, s.url, name)

      :ok = SD.put(sd, "a", 1)
      assert on_agent(agent, :get, ["a"]) == 1
      :ok = on_agent(agent, :put, ["b", [1, 2]])
      assert SD.get(sd, "b") == [1, 2]
      :ok = on_agent(agent, :delete, ["a"])
      assert SD.get(sd, "a") == nil
      :ok = SD.put(sd, "t", 1, ttl: 100)

      for kind_key <- [{:put, "a"}, {:put, "b"}, {:delete, "a"}, {:put, "t"}, {:expire, "t"}] do
        {kind, key} = kind_key
        assert_receive {:shared_dict, ^sd, ^kind, ^key}, 5_000
        assert_receive {:remote_event, ^kind, ^key}, 5_000
      end

      # The expire event once on each node.
      refute_receive {:shared_dict, ^sd, :expire, "t"}, 500
      refute_receive {:remote_event, :expire, "t"}, 500

      # Locks across nodes; the holder's node dies: the lease lapses.
      :ok = on_agent(agent, :lock, ["l"])
      assert SD.lock(sd, "l", timeout: 100) == {:error, :timeout}
      :ok = on_agent(agent, :unlock, ["l"])
      assert SD.lock(sd, "l", timeout: 5_000) == :ok
      assert SD.unlock(sd, "l") == :ok

      :ok = on_agent(agent, :lock, ["dead"])
      :peer.stop(peer)
      # Within the 10 s lease plus a reap.
      assert SD.lock(sd, "dead", timeout: 20_000) == :ok
    after
      # Already stopped when the test got that far.
      catch_exit(:peer.stop(peer))
    end
  end
end
