defmodule Py.SharedDictCase do
  @moduledoc """
  The behaviour every SharedDict backend must show, as one ExUnit module
  per backend: `use Py.SharedDictCase, backend: :memory` (or `:sqlite`, or
  `:redis`, on a redis-server the suite starts, or `:redis_cluster`, on a
  three-master Redis Cluster it starts) runs every SharedDict test that is not about the memory store's
  internals against that backend. Tests make their dicts with `new!/1` and
  `new/1`, which add the backend's options (a fresh SQLite file per dict,
  named after the dict for a named one, so reopening a name reopens its
  file).

  Backends that pay a disk commit per write run the concurrency tests with
  fewer writers and rounds (`@writers`, `@rounds`): the same properties
  (nothing lost, locks serialise), a smaller count.
  """

  @doc "The options `new/1` adds for `backend` (and the dict's own `opts`)."
  @spec backend_opts(atom, keyword) :: keyword
  def backend_opts(:memory, _opts), do: []

  def backend_opts(:sqlite, opts) do
    file =
      case opts[:name] do
        nil -> "anon-#{System.unique_integer([:positive])}.db"
        name -> "named-#{name}.db"
      end

    [backend: {:sqlite, Path.join(dir(), file)}]
  end

  # One redis-server for every Redis-backed test of this run (a free
  # loopback port, a temp dir), started on first use, stopped after the suite.
  def backend_opts(:redis, _opts) do
    [backend: {:redis, Py.Test.RedisServer.shared().url}, prefix: "case-#{System.pid()}"]
  end

  # A three-master Redis Cluster for the run, reached through its first
  # node's URL only: a dict whose slot is elsewhere is found through MOVED.
  def backend_opts(:redis_cluster, _opts) do
    [backend: {:redis, Py.Test.RedisCluster.shared().url}, prefix: "case-#{System.pid()}"]
  end

  @doc "What `Py.SharedDict.backend/1` answers for a dict on `backend`."
  @spec kind(atom) :: atom
  def kind(:redis_cluster), do: :redis
  def kind(backend), do: backend

  @doc "Writers and rounds of the concurrency tests on `backend`."
  @spec scale(atom) :: {pos_integer, pos_integer}
  def scale(:memory), do: {100, 1_000}
  def scale(_durable), do: {8, 40}

  @doc "This OS process's scratch directory for SQLite files (made on first use)."
  @spec dir() :: Path.t()
  def dir do
    dir = Path.join(System.tmp_dir!(), "pybridge-sd-test-#{System.pid()}")
    File.mkdir_p!(dir)
    dir
  end

  defmacro __using__(opts) do
    backend = Keyword.fetch!(opts, :backend)

    quote do
      use ExUnit.Case, async: true

      import Py.TestHelpers, only: [assert_eventually: 2]

      alias Py.SharedDict, as: SD

      @backend unquote(backend)
      @moduletag backend: @backend
      {writers, rounds} = Py.SharedDictCase.scale(@backend)
      @writers writers
      @rounds rounds

      defp new!(opts \\ []), do: SD.new!(Py.SharedDictCase.backend_opts(@backend, opts) ++ opts)
      defp new(opts), do: SD.new(Py.SharedDictCase.backend_opts(@backend, opts) ++ opts)

      test "the dict is on the backend asked for" do
        assert SD.backend(new!()) == Py.SharedDictCase.kind(@backend)
      end

      defp unique_name, do: "sd_test_#{System.unique_integer([:positive])}"

      describe "values" do
        test "read back as they would after a trip through Python, and are copies" do
          sd = new!()
          :ok = SD.put(sd, "config", %{host: "localhost", port: 8080, tags: [:a, {1, 2.5}]})

          assert SD.get(sd, "config") ==
                   %{"host" => "localhost", "port" => 8080, "tags" => ["a", {1, 2.5}]}

          :ok = SD.put(sd, "bytes", Py.bytes("abc"))
          assert SD.get(sd, "bytes") == "abc"
          :ok = SD.put(sd, "big", 2 ** 200)
          assert SD.get(sd, "big") == 2 ** 200
          :ok = SD.put(sd, "set", MapSet.new([1, 2]))
          assert SD.get(sd, "set") == MapSet.new([1, 2])
          :ok = SD.put(sd, "pid", self())
          assert SD.get(sd, "pid") == self()
        end

        test "a pickled value round-trips unchanged" do
          sd = new!()
          pickled = %SD.Pickled{type: "decimal.Decimal", data: <<128, 4, 1, 2, 3>>}
          :ok = SD.put(sd, "d", pickled)
          assert SD.get(sd, "d") == pickled
        end

        test "what cannot be stored is a conversion error and stores nothing" do
          sd = new!()
          {:ok, %Py.Object{} = obj} = Py.eval("object()")

          for bad <- [fn -> 1 end, [1 | 2], %{"o" => obj}] do
            assert {:error, %Py.Error{type: :conversion}} = SD.put(sd, "k", bad)
          end

          assert SD.size(sd) == 0
        end

        @tag timeout: 300_000
        test "a 100 MB value is stored and read back intact" do
          sd = new!()
          blob = :binary.copy(<<1, 2, 3, 4>>, 25_000_000)
          # fetch/take, not get/delete: a failed read says why instead of
          # reading as missing.
          assert :ok = SD.put(sd, "huge", blob)
          assert {:ok, ^blob} = SD.fetch(sd, "huge")
          assert SD.size(sd) == 1
          assert {:ok, ^blob} = SD.take(sd, "huge")
          assert SD.fetch(sd, "huge") == :error
        end

        test "a big value is written and read on a dirty scheduler, intact" do
          sd = new!()
          big = Enum.to_list(1..200_000)
          :ok = SD.put(sd, "big", big)
          assert SD.get(sd, "big") == big
          blob = :binary.copy("x", 20_000_000)
          :ok = SD.put(sd, "blob", blob)
          assert SD.get(sd, "blob") == blob
        end
      end

      describe "keys" do
        test "must be strings: anything else is an ArgumentError naming the function" do
          sd = new!()

          for bad <- [:atom, 1, ~c"chars", <<255>>, {"a"}] do
            assert_raise ArgumentError, ~r/invalid key for Py.SharedDict.put\/4/, fn ->
              SD.put(sd, bad, 1)
            end

            assert_raise ArgumentError, ~r/invalid key/, fn -> SD.get(sd, bad) end
            assert_raise ArgumentError, ~r/invalid key/, fn -> SD.incr(sd, bad) end
          end

          assert SD.size(sd) == 0
        end
      end

      describe "the API" do
        test "put_new, delete, take, keys, to_map, clear" do
          sd = new!()
          assert SD.put_new(sd, "a", 1) == :ok
          assert SD.put_new(sd, "a", 2) == {:error, :exists}
          assert SD.fetch(sd, "a") == {:ok, 1}
          assert SD.put(sd, "b", 2) == :ok
          assert Enum.sort(SD.keys(sd)) == ["a", "b"]
          assert SD.to_map(sd) == %{"a" => 1, "b" => 2}
          assert SD.take(sd, "a") == {:ok, 1}
          assert SD.take(sd, "a") == :error
          assert SD.delete(sd, "missing") == :ok
          assert_raise KeyError, fn -> SD.fetch!(sd, "a") end
          assert SD.clear(sd) == :ok
          assert SD.size(sd) == 0
        end

        test "incr refuses non-integers and bad increments" do
          sd = new!()
          SD.put(sd, "s", "text")
          assert {:error, %Py.Error{type: :not_integer}} = SD.incr(sd, "s")
          assert_raise Py.Error, ~r/not_integer/, fn -> SD.incr!(sd, "s") end
          assert SD.get(sd, "s") == "text"
          assert_raise ArgumentError, ~r/increment/, fn -> SD.incr(sd, "n", 1.5) end
          assert_raise ArgumentError, ~r/increment/, fn -> SD.incr(sd, "n", 2 ** 64) end
          assert SD.incr!(sd, "n", 0x7FFFFFFFFFFFFFFF) == 0x7FFFFFFFFFFFFFFF
          assert SD.incr!(sd, "n") == 0x8000000000000000
        end
      end

      describe "handles" do
        test "a destroyed dict raises a clear error for every operation; destroy is idempotent" do
          sd = new!()
          SD.put(sd, "a", 1)
          assert SD.destroy(sd) == :ok
          assert SD.destroy(sd) == :ok

          for op <- [
                &SD.get(&1, "a"),
                &SD.put(&1, "a", 1),
                &SD.keys/1,
                &SD.size/1,
                &SD.incr(&1, "a"),
                &SD.stats/1,
                &SD.update(&1, "a", 1, fn x -> x end)
              ] do
            assert_raise Py.Error, ~r/destroyed/, fn -> op.(sd) end
          end
        end

        test "an unnamed dict dies with its owner, while other users see a clear error" do
          parent = self()

          owner =
            spawn(fn ->
              send(parent, {:sd, new!()})
              Process.sleep(:infinity)
            end)

          sd = receive do: ({:sd, sd} -> sd)
          :ok = SD.put(sd, "a", 1)
          ref = Process.monitor(owner)
          Process.exit(owner, :kill)
          assert_receive {:DOWN, ^ref, _, _, _}
          assert_eventually(fn -> match?({:error, _}, try_get(sd)) end, 20_000)
        end

        test "an owner dying in the middle of an update loses nothing already written" do
          sd = new!(name: unique_name())
          :ok = SD.put(sd, "n", 1)
          parent = self()

          writer =
            spawn(fn ->
              SD.update(sd, "n", 0, fn n ->
                send(parent, :inside)
                Process.sleep(:infinity)
                n + 100
              end)
            end)

          assert_receive :inside
          Process.exit(writer, :kill)
          assert SD.get(sd, "n") == 1
          assert SD.update!(sd, "n", 0, &(&1 + 1)) == 2
          SD.destroy(sd)
        end

        test "named dicts: lookup finds the same handle, names are unique until destroyed" do
          name = unique_name()
          {:ok, sd} = new(name: name)
          assert SD.lookup(name) == {:ok, sd}
          assert SD.lookup(String.to_atom(name)) == {:ok, sd}
          assert new(name: name) == {:error, :exists}
          # A named dict has no owner: it outlives its creator.
          task = Task.async(fn -> new!(name: name <> "_task") end)
          by_task = Task.await(task)
          assert {:ok, ^by_task} = SD.lookup(name <> "_task")
          SD.destroy(by_task)
          SD.destroy(sd)
          assert SD.lookup(name) == :error
          assert {:ok, _} = new(name: name)
        end
      end

      defp try_get(sd) do
        {:ok, SD.get(sd, "a")}
      rescue
        e in Py.Error -> {:error, e.type}
      end

      # Reads `key` until it is missing, asserting every read that saw it began
      # before `deadline`; returns when the first miss began.
      defp first_miss(sd, key, deadline) do
        before = System.monotonic_time(:millisecond)

        case SD.fetch(sd, key) do
          {:ok, _} ->
            # 2 ms for rounding and the BEAM's clock correction.
            assert before <= deadline + 2, "returned after its expiry"
            first_miss(sd, key, deadline)

          :error ->
            before
        end
      end

      describe "expiry" do
        test "an expired key is never returned, counted or listed, and the sweeper reclaims it" do
          sd = new!()
          :ok = SD.put(sd, "stays", 1)
          put_at = System.monotonic_time(:millisecond)
          :ok = SD.put(sd, "goes", 1, ttl: 50)
          put_end = System.monotonic_time(:millisecond)

          # While the key is seen, its TTL has not run out; once it is gone it
          # never comes back, from any read.
          gone = first_miss(sd, "goes", put_end + 50)
          assert gone >= put_at
          assert SD.get(sd, "goes") == nil
          assert SD.keys(sd) == ["stays"]
          assert SD.size(sd) == 1
          assert SD.to_map(sd) == %{"stays" => 1}
          assert SD.ttl(sd, "goes") == nil
          refute SD.persist(sd, "goes")
          assert_eventually(fn -> SD.stats(sd).expired_total == 1 end, 20_000)
          assert [{"goes", at}] = SD.stats(sd).recent_expiries
          assert abs(at - System.os_time(:millisecond)) < 60_000
        end

        test "ttl, expire and persist" do
          sd = new!()
          :ok = SD.put(sd, "a", 1, ttl: 60_000)
          assert SD.ttl(sd, "a") in 1..60_000
          assert SD.persist(sd, "a")
          assert SD.ttl(sd, "a") == :infinity
          assert SD.expire(sd, "a", 60_000)
          assert SD.ttl(sd, "a") in 1..60_000
          # A put without ttl: removes the expiry; update and incr keep it.
          {:ok, _} = SD.update(sd, "a", 0, &(&1 + 1))
          assert SD.ttl(sd, "a") in 1..60_000
          {:ok, _} = SD.incr(sd, "a")
          assert SD.ttl(sd, "a") in 1..60_000
          :ok = SD.put(sd, "a", 1)
          assert SD.ttl(sd, "a") == :infinity
          refute SD.expire(sd, "missing", 10)
          assert SD.expire(sd, "a", 0)
          assert SD.fetch(sd, "a") == :error
        end
      end

      describe "events" do
        test "subscribers get {:shared_dict, sd, event, key} for put, delete and expire, in order" do
          sd = new!()
          :ok = SD.subscribe(sd)
          :ok = SD.put(sd, "a", 1)
          {:ok, 2} = SD.incr(sd, "a")
          :ok = SD.delete(sd, "a")
          :ok = SD.delete(sd, "a")
          :ok = SD.put(sd, "t", 1, ttl: 1)
          assert_receive {:shared_dict, ^sd, :put, "a"}, 5_000
          assert_receive {:shared_dict, ^sd, :put, "a"}, 5_000
          assert_receive {:shared_dict, ^sd, :delete, "a"}, 5_000
          assert_receive {:shared_dict, ^sd, :put, "t"}, 5_000
          # Nobody reads "t": the sweeper finds it and raises the event.
          assert_receive {:shared_dict, ^sd, :expire, "t"}, 20_000
          refute_received {:shared_dict, _, _, _}
        end

        test "only the events asked for; unsubscribe stops them" do
          sd = new!()
          :ok = SD.subscribe(sd, [:delete])
          :ok = SD.put(sd, "a", 1)
          :ok = SD.delete(sd, "a")
          assert_receive {:shared_dict, ^sd, :delete, "a"}, 5_000
          refute_received {:shared_dict, ^sd, :put, _}
          :ok = SD.subscribe(sd, [:put])
          :ok = SD.unsubscribe(sd, [:delete])
          :ok = SD.put(sd, "b", 1)
          :ok = SD.delete(sd, "b")
          assert_receive {:shared_dict, ^sd, :put, "b"}, 5_000
          :ok = SD.unsubscribe(sd)
          :ok = SD.put(sd, "c", 1)
          # Events reach a subscriber in order: once the delete of "c" is in,
          # anything sent before it is too.
          :ok = SD.subscribe(sd, [:delete])
          :ok = SD.delete(sd, "c")
          assert_receive {:shared_dict, ^sd, :delete, "c"}, 5_000
          refute_received {:shared_dict, ^sd, :delete, "b"}
          refute_received {:shared_dict, ^sd, :put, "c"}
          assert_raise ArgumentError, ~r/events/, fn -> SD.subscribe(sd, [:nope]) end
        end

        test "a dead subscriber is dropped and the others still get their events" do
          sd = new!()
          {pid, ref} = spawn_monitor(fn -> SD.subscribe(sd) end)
          assert_receive {:DOWN, ^ref, _, ^pid, _}
          :ok = SD.subscribe(sd)
          for i <- 1..100, do: :ok = SD.put(sd, "k#{i}", i)
          for _ <- 1..100, do: assert_receive({:shared_dict, ^sd, :put, "k" <> _}, 5_000)
        end

        test "a named dict's events carry the handle lookup/1 returns" do
          name = unique_name()
          sd = new!(name: name)
          :ok = SD.subscribe(sd, [:put])
          {:ok, same} = SD.lookup(name)
          :ok = SD.put(same, "a", 1)
          assert_receive {:shared_dict, ^sd, :put, "a"}, 5_000
          SD.destroy(sd)
        end
      end

      describe "per-key locks" do
        test "exclude other processes; a waiter gets the lock when it is released" do
          sd = new!()
          :ok = SD.lock(sd, "k")
          :ok = SD.lock(sd, "k")
          parent = self()

          waiter =
            spawn_link(fn ->
              send(parent, {:result, SD.lock(sd, "k", timeout: :infinity)})
              send(parent, {:unlocked, SD.unlock(sd, "k")})
            end)

          # The waiter waits in receive, not in a NIF.
          assert_eventually(
            fn -> Process.info(waiter, :status) == {:status, :waiting} end,
            20_000
          )

          refute_received {:result, _}
          assert SD.unlock(sd, "k") == :ok
          assert_receive {:result, :ok}, 5_000
          assert_receive {:unlocked, :ok}, 5_000
          assert SD.unlock(sd, "k") == {:error, :not_held}
        end

        test "a dead holder's lock is released at once" do
          sd = new!()
          parent = self()

          holder =
            spawn(fn ->
              :ok = SD.lock(sd, "k")
              send(parent, :locked)
              Process.sleep(:infinity)
            end)

          assert_receive :locked
          assert SD.lock(sd, "k", timeout: 0) == {:error, :timeout}
          task = Task.async(fn -> SD.lock(sd, "k", timeout: :infinity) end)
          Process.exit(holder, :kill)
          assert Task.await(task, 20_000) == :ok
        end

        test "with_lock releases on raise, and serialises read-modify-write" do
          sd = new!()

          assert_raise RuntimeError, fn ->
            SD.with_lock(sd, "k", fn -> raise "boom" end)
          end

          assert SD.lock(sd, "k", timeout: 0) == :ok
          :ok = SD.unlock(sd, "k")
          :ok = SD.put(sd, "n", 0)

          1..@writers
          |> Enum.map(fn _ ->
            Task.async(fn ->
              for _ <- 1..@rounds do
                {:ok, :ok} =
                  SD.with_lock(
                    sd,
                    "n",
                    fn -> SD.put(sd, "n", SD.get(sd, "n") + 1) end,
                    timeout: :infinity
                  )
              end
            end)
          end)
          |> Task.await_many(:infinity)

          assert SD.get(sd, "n") == @writers * @rounds
        end

        test "destroy releases every lock and wakes the waiters with a clear error" do
          sd = new!(name: unique_name())
          :ok = SD.lock(sd, "k")
          task = Task.async(fn -> try_lock(sd) end)

          assert_eventually(
            fn -> Process.info(task.pid, :status) == {:status, :waiting} end,
            20_000
          )

          SD.destroy(sd)
          assert Task.await(task, 20_000) == {:error, :destroyed}
        end
      end

      defp try_lock(sd) do
        SD.lock(sd, "k", timeout: :infinity)
      rescue
        e in Py.Error -> {:error, e.type}
      end

      describe "concurrency" do
        @tag timeout: 300_000
        test "#{@writers} writers x #{@rounds} incr and update lose nothing" do
          sd = new!()

          1..@writers
          |> Enum.map(fn i ->
            Task.async(fn ->
              for _ <- 1..@rounds do
                {:ok, _} = SD.incr(sd, "incr")
                {:ok, _} = SD.update(sd, "update", 1, &(&1 + 1))
              end

              i
            end)
          end)
          |> Task.await_many(:infinity)

          assert SD.get(sd, "incr") == @writers * @rounds
          assert SD.get(sd, "update") == @writers * @rounds
        end
      end

      describe "from Python" do
        test "plain values cross both ways; other objects are pickled and round-trip" do
          sd = new!()

          :ok =
            Py.exec("""
            import decimal
            from erlang import SharedDict
            def fill(h):
                sd = SharedDict(h)
                sd['plain'] = {'a': [1, 2.5, None, (True, b'raw')]}
                sd['dec'] = decimal.Decimal('1.5')
                sd.set('ttl', 1, ttl=30)
            """)

          {:ok, nil} = Py.eval("fill(h)", %{h: sd})
          assert SD.get(sd, "plain") == %{"a" => [1, 2.5, nil, {true, "raw"}]}
          assert %SD.Pickled{type: "decimal.Decimal"} = pickled = SD.get(sd, "dec")
          assert SD.ttl(sd, "ttl") in 1..30_000
          :ok = SD.put(sd, "dec2", pickled)
          :ok = SD.put(sd, "from_beam", %{"t" => {1, "x"}, "s" => MapSet.new([1])})

          assert Py.eval(
                   "str(SharedDict(h)['dec2']) == '1.5', SharedDict(h)['from_beam']",
                   %{h: sd}
                 ) == {:ok, {true, %{"t" => {1, "x"}, "s" => MapSet.new([1])}}}
        end

        @tag timeout: 300_000
        test "BEAM processes and Python threads incrementing the same key lose nothing" do
          sd = new!()

          python =
            Task.async(fn ->
              Py.eval(
                """
                (lambda sd, threading: (
                    lambda threads: ([t.start() for t in threads], [t.join() for t in threads])
                )([threading.Thread(target=lambda: [sd.incr('n') for _ in range(rounds)]) for _ in range(4)])
                )(__import__('erlang').SharedDict(h), __import__('threading')) and None
                """,
                %{h: sd, rounds: @rounds},
                timeout: 240_000
              )
            end)

          1..@writers
          |> Enum.map(fn _ -> Task.async(fn -> for _ <- 1..@rounds, do: SD.incr!(sd, "n") end) end)
          |> Task.await_many(:infinity)

          assert {:ok, nil} = Task.await(python, :infinity)
          assert SD.get(sd, "n") == (@writers + 4) * @rounds
        end
      end
    end
  end
end
