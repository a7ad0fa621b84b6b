defmodule Py.SharedDictTest do
  # The memory store's own behaviour (bounds, eviction), option checking
  # and handle checking. The behaviour every backend shares is in
  # test/support/shared_dict_case.ex, run per backend by
  # test/py/shared_dict_backends_test.exs.
  use ExUnit.Case, async: true

  alias Py.SharedDict, as: SD
  import Py.TestHelpers, only: [assert_eventually: 1]

  doctest Py.SharedDict

  describe "the memory store" do
    test "options are validated up front" do
      assert_raise ArgumentError, ~r/unknown option :colour for Py.SharedDict.new\/1/, fn ->
        SD.new(colour: :red)
      end

      assert_raise ArgumentError, ~r/:max_entries/, fn -> SD.new(max_entries: 0) end
      assert_raise ArgumentError, ~r/:evict/, fn -> SD.new(evict: :fifo) end
      sd = SD.new!()
      assert_raise ArgumentError, ~r/:ttl option/, fn -> SD.put(sd, "a", 1, ttl: -1) end
      assert_raise ArgumentError, ~r/fun for/, fn -> SD.update(sd, "a", 1, :not_a_fun) end

      for bad <- [:disk, {:sqlite, ""}, {:sqlite, 1}, {:redis_typo, "x"}] do
        assert_raise ArgumentError, ~r/invalid :backend option for Py.SharedDict.new\/1/, fn ->
          SD.new(backend: bad)
        end
      end

      assert_raise ArgumentError, ~r/only with backend: :memory/, fn ->
        SD.new(backend: {:sqlite, "/tmp/never-made.db"}, max_entries: 1)
      end

      refute File.exists?("/tmp/never-made.db")
      assert_raise ArgumentError, ~r/:prefix/, fn -> SD.new(prefix: 1) end
      assert_raise ArgumentError, ~r/:pool_size/, fn -> SD.new(pool_size: 0) end
    end

    test "max_entries refuses a new key, and evict: :lru evicts the least recently used" do
      sd = SD.new!(max_entries: 2)
      :ok = SD.put(sd, "a", 1)
      :ok = SD.put(sd, "b", 2)
      assert SD.put(sd, "c", 3) == {:error, :full}
      assert_raise Py.Error, ~r/full/, fn -> SD.put!(sd, "c", 3) end
      assert SD.put(sd, "a", 10) == :ok
      assert SD.to_map(sd) == %{"a" => 10, "b" => 2}

      lru = SD.new!(max_entries: 2, evict: :lru)
      :ok = SD.put(lru, "a", 1)
      :ok = SD.put(lru, "b", 2)
      assert SD.get(lru, "a") == 1
      :ok = SD.put(lru, "c", 3)
      assert Enum.sort(SD.keys(lru)) == ["a", "c"]
    end
  end

  describe "stats while writers write" do
    test "stats counts every put from many concurrent writers, exactly" do
      sd = SD.new!()
      parent = self()

      for w <- 1..64 do
        spawn_link(fn ->
          for i <- 1..500 do
            # Half on keys every writer shares, half on its own.
            key = if rem(i, 2) == 0, do: "shared-#{rem(i, 64)}", else: "w#{w}-#{i}"
            :ok = SD.put(sd, key, i)
          end

          send(parent, {:done, w})
        end)
      end

      for w <- 1..64, do: assert_receive({:done, ^w}, 30_000)
      stats = SD.stats(sd)
      assert stats.puts == 64 * 500
      assert stats.size == 32 + 64 * 250
      assert SD.size(sd) == stats.size
      SD.destroy(sd)
    end
  end

  describe "events while writers write" do
    # A put nobody hears of is only counted; one that began after a
    # subscribe returned is always heard of.
    test "a subscriber hears of every put begun after its subscribe returned" do
      for _round <- 1..5 do
        sd = SD.new!()
        parent = self()
        subscribed = :atomics.new(1, [])

        for w <- 1..4 do
          spawn_link(fn ->
            # {first put begun after the subscribe, last put}
            writer = fn writer, i, first ->
              began_after = :atomics.get(subscribed, 1) == 1
              :ok = SD.put(sd, "w#{w}-#{i}", i)
              first = if began_after and first == nil, do: i, else: first

              if first != nil and i - first >= 100,
                do: send(parent, {:done, w, first, i}),
                else: writer.(writer, i + 1, first)
            end

            writer.(writer, 0, nil)
          end)
        end

        # Some puts nobody hears of first.
        assert_eventually(fn -> SD.size(sd) >= 40 end)
        :ok = SD.subscribe(sd, [:put])
        :atomics.put(subscribed, 1, 1)

        expected =
          for w <- 1..4, reduce: MapSet.new() do
            acc ->
              assert_receive {:done, ^w, first, last}, 30_000
              Enum.reduce(first..last, acc, &MapSet.put(&2, "w#{w}-#{&1}"))
          end

        missing =
          Enum.reduce_while(Stream.cycle([:next]), expected, fn _, left ->
            if MapSet.size(left) == 0 do
              {:halt, left}
            else
              receive do
                {:shared_dict, ^sd, :put, key} -> {:cont, MapSet.delete(left, key)}
              after
                10_000 -> {:halt, left}
              end
            end
          end)

        assert MapSet.size(missing) == 0, "not heard of: #{inspect(Enum.take(missing, 5))}"
        assert SD.stats(sd).puts == SD.size(sd), "every put counted"
        SD.unsubscribe(sd)
        SD.destroy(sd)
        flush_events()
      end
    end
  end

  defp flush_events do
    receive do
      {:shared_dict, _, _, _} -> flush_events()
    after
      0 -> :ok
    end
  end

  describe "handles" do
    test "a forged or foreign handle is an ArgumentError, not a crash" do
      forged = %SD{ref: make_ref(), id: 1}

      assert_raise ArgumentError, ~r/invalid shared dict handle/, fn -> SD.get(forged, "a") end
      assert_raise ArgumentError, ~r/invalid shared dict handle/, fn -> SD.get(:nope, "a") end
      # A resource of another kind (a context) is not a dict either.
      ctx = hd(Py.Context.contexts())
      assert_raise ArgumentError, fn -> SD.get(%SD{ref: ctx.ref, id: 1}, "a") end
      # What a handle becomes on another node: a plain reference after a
      # trip through the external term format.
      sd = SD.new!()
      foreign = %{sd | ref: :erlang.binary_to_term(:erlang.term_to_binary(make_ref()))}
      assert_raise ArgumentError, ~r/invalid shared dict handle/, fn -> SD.get(foreign, "a") end
    end
  end
end
