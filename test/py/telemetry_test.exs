defmodule Py.TelemetryTest do
  # Handlers are global: not async.
  use ExUnit.Case, async: false

  doctest Py.Telemetry

  # Attaches a handler sending {:event, name, measurements, metadata} to the
  # test process for `events`, detached when the test ends.
  defp listen(events) do
    id = {__MODULE__, make_ref()}
    :ok = :telemetry.attach_many(id, events, &__MODULE__.forward/4, self())

    on_exit(fn ->
      :telemetry.detach(id)
      Py.Telemetry.refresh()
    end)

    Py.Telemetry.refresh()
    id
  end

  def forward(event, measurements, metadata, pid),
    do: send(pid, {:event, event, measurements, metadata})

  test "this build emits events (the library or its test stand-in is loaded)" do
    assert Py.Telemetry.enabled?()
  end

  test "calls pay for their span only while a call or overload handler is attached" do
    Py.Telemetry.refresh()
    refute Py.Telemetry.calls_watched?()

    id = listen([[:pybridge, :overloaded]])
    assert Py.Telemetry.calls_watched?()
    :ok = :telemetry.detach(id)
    Py.Telemetry.refresh()
    refute Py.Telemetry.calls_watched?()

    # Another event's handler does not switch the span on.
    listen([[:pybridge, :context, :start]])
    refute Py.Telemetry.calls_watched?()
    listen([[:pybridge, :call, :stop]])
    assert Py.Telemetry.calls_watched?()
  end

  describe "[:pybridge, :call, _]" do
    setup do
      listen([
        [:pybridge, :call, :start],
        [:pybridge, :call, :stop],
        [:pybridge, :call, :exception]
      ])

      :ok
    end

    test "eval: a span with queue and run time, and its metadata" do
      ctx = Py.context(1)
      assert {:ok, nil} = Py.eval(ctx, "__import__('time').sleep(0.05)")

      assert_receive {:event, [:pybridge, :call, :start], %{monotonic_time: t0, system_time: _},
                      start_meta}

      assert_receive {:event, [:pybridge, :call, :stop], measurements, stop_meta}

      assert %{kind: :eval, module: nil, function: nil, context: ^ctx, pool: :default} =
               start_meta

      assert start_meta.node == node()
      assert start_meta.coalesced? == false
      assert start_meta.error == nil
      assert stop_meta == start_meta

      %{duration: duration, queue_time: queue, run_time: run, monotonic_time: t1} = measurements
      assert t1 - t0 == duration
      ms = &System.convert_time_unit(&1, :native, :millisecond)
      assert ms.(run) >= 50
      assert queue >= 0 and queue + run <= duration
    end

    test "call and exec: kind, module, function; an error names its type" do
      {:ok, 4.0} = Py.call(:math, :sqrt, [16])

      assert_receive {:event, [:pybridge, :call, :stop], _,
                      %{kind: :call, module: "math", function: "sqrt", error: nil}}

      {:error, _} = Py.exec("raise KeyError('x')")

      assert_receive {:event, [:pybridge, :call, :stop], %{duration: _},
                      %{kind: :exec, error: "KeyError"}}
    end

    test "a timed-out call stops with error :timeout and no worker timing" do
      {:error, %Py.Error{type: :timeout}} = Py.exec("import time; time.sleep(1)", timeout: 50)

      assert_receive {:event, [:pybridge, :call, :stop], measurements, %{error: :timeout}}, 2_000
      refute Map.has_key?(measurements, :run_time)
    end

    test "a coalesced call says so; the shared execution is timed in its flight" do
      {:ok, 2} = Py.eval("1 + 1", %{}, coalesce: true)

      assert_receive {:event, [:pybridge, :call, :stop], measurements,
                      %{coalesced?: true, kind: :eval}}

      assert Map.has_key?(measurements, :duration)
      refute Map.has_key?(measurements, :queue_time)
    end

    test "a call that raises on the BEAM side ends in :exception" do
      forged = %Py.Context{pool: :forged, index: 1, ref: make_ref()}

      assert_raise ArgumentError, fn ->
        Py.Call.run(forged, false, {:eval, "1", %{}}, 1_000)
      end

      assert_receive {:event, [:pybridge, :call, :start], _, %{pool: :forged}}

      assert_receive {:event, [:pybridge, :call, :exception], %{duration: _},
                      %{
                        kind: :error,
                        reason: :badarg,
                        call_kind: :eval,
                        stacktrace: [_ | _]
                      }}
    end

    test "streams: the start, each batch and the close are :stream spans" do
      assert Py.stream(:itertools, :count, [], batch: 2) |> Enum.take(3) == [0, 1, 2]

      assert_receive {:event, [:pybridge, :call, :stop], _,
                      %{kind: :stream, module: "itertools", function: "count"}}

      # Two batches, then the close.
      for _ <- 1..3 do
        assert_receive {:event, [:pybridge, :call, :stop], _,
                        %{kind: :stream, module: nil, error: nil}}
      end
    end

    test "Py.async_call to Py.await: one :async span" do
      task = Py.async_call(:asyncio, :sleep, [0.01, 5])

      assert_receive {:event, [:pybridge, :call, :start], _,
                      %{kind: :async, module: "asyncio", function: "sleep"}}

      refute_received {:event, [:pybridge, :call, :stop], _, %{kind: :async}}
      assert Py.await(task) == {:ok, 5}

      assert_receive {:event, [:pybridge, :call, :stop], %{duration: d},
                      %{kind: :async, function: "sleep", error: nil}}

      assert System.convert_time_unit(d, :native, :millisecond) >= 10
    end
  end

  describe "[:pybridge, :coalesce, _]" do
    setup do
      listen([
        [:pybridge, :coalesce, :hit],
        [:pybridge, :coalesce, :miss],
        [:pybridge, :coalesce, :error]
      ])

      :ok
    end

    test "BEAM groups: a miss per execution, its hits when it ends, errors" do
      group = {:telemetry_test, make_ref()}
      test = self()

      leader =
        Task.async(fn ->
          Py.Coalesce.run(group, :k, fn ->
            send(test, {:running, self()})
            receive do: (:go -> {:ok, 1})
          end)
        end)

      assert_receive {:running, helper}

      assert_receive {:event, [:pybridge, :coalesce, :miss], %{count: 1, hit_rate: 0.0},
                      %{group: ^group, side: :beam}}

      follower = Task.async(fn -> Py.Coalesce.run(group, :k, fn -> {:ok, :never} end) end)
      # The flight monitors its helper and each waiter: 3 once the follower joined.
      wait_until(fn -> monitors(group) == 3 end)
      send(helper, :go)

      assert Task.await(leader) == {:ok, 1}
      assert Task.await(follower) == {:ok, 1}

      assert_receive {:event, [:pybridge, :coalesce, :hit], %{count: 1, hit_rate: 0.5},
                      %{group: ^group, side: :beam}}

      {:error, _} = Py.Coalesce.run(group, :boom, fn -> raise "boom" end)
      assert_receive {:event, [:pybridge, :coalesce, :miss], %{count: 1}, %{group: ^group}}
      assert_receive {:event, [:pybridge, :coalesce, :error], %{count: 1}, %{group: ^group}}
    end

    test "named Python groups: what was counted since the previous read" do
      name = "telemetry_test_#{System.unique_integer([:positive])}"

      :ok =
        Py.exec("""
        import erlang
        tsc = erlang.SharedCall(name=#{inspect(name)})
        tsc.call("a", lambda: 1)
        tsc.call("b", lambda: 1)
        try:
            tsc.call("c", lambda: 1 / 0)
        except ZeroDivisionError:
            pass
        """)

      Py.Telemetry.refresh()

      assert_receive {:event, [:pybridge, :coalesce, :miss], %{count: 3},
                      %{group: ^name, side: :python}}

      assert_receive {:event, [:pybridge, :coalesce, :error], %{count: 1},
                      %{group: ^name, side: :python}}

      # Nothing new: nothing reported; one more miss: one.
      Py.Telemetry.refresh()
      refute_received {:event, _, _, %{group: ^name}}
      :ok = Py.exec("tsc.call('d', lambda: 1)")
      _ = Py.Coalesce.stats()
      assert_receive {:event, [:pybridge, :coalesce, :miss], %{count: 1}, %{group: ^name}}
      refute_received {:event, [:pybridge, :coalesce, :error], _, %{group: ^name}}
    end
  end

  describe "[:pybridge, :shared_dict, _]" do
    test "put, delete and expired, with name and backend, never the value or (by default) the key" do
      listen([
        [:pybridge, :shared_dict, :put],
        [:pybridge, :shared_dict, :delete],
        [:pybridge, :shared_dict, :expired]
      ])

      name = "telemetry_test_#{System.unique_integer([:positive])}"
      {:ok, sd} = Py.SharedDict.new(name: name)
      id = sd.id

      :ok = Py.SharedDict.put(sd, "a", "SECRET")
      :ok = Py.SharedDict.delete(sd, "a")
      :ok = Py.SharedDict.put(sd, "t", "SECRET", ttl: 1)

      assert_receive {:event, [:pybridge, :shared_dict, :put], %{count: 1},
                      %{id: ^id, name: ^name, backend: :memory} = meta}

      refute Map.has_key?(meta, :key)
      assert_receive {:event, [:pybridge, :shared_dict, :delete], %{count: 1}, %{id: ^id}}
      assert_receive {:event, [:pybridge, :shared_dict, :put], _, %{id: ^id}}

      assert_receive {:event, [:pybridge, :shared_dict, :expired], %{count: 1},
                      %{id: ^id} = meta},
                     5_000

      refute inspect(meta) =~ "SECRET"

      # Writes from Python are seen too.
      :ok = Py.exec("import erlang; erlang.SharedDict(#{inspect(name)})['p'] = 1")
      assert_receive {:event, [:pybridge, :shared_dict, :put], _, %{id: ^id}}
      Py.SharedDict.destroy(sd)
    end

    test "telemetry_keys: true puts the key in the metadata" do
      listen([[:pybridge, :shared_dict, :put]])
      sd = Py.SharedDict.new!(telemetry_keys: true)
      id = sd.id
      :ok = Py.SharedDict.put(sd, "visible", 1)

      assert_receive {:event, [:pybridge, :shared_dict, :put], _,
                      %{id: ^id, key: "visible", name: nil}}

      assert_raise ArgumentError, fn -> Py.SharedDict.new(telemetry_keys: :yes) end
    end

    test "no handler: nothing is sent (the native side is switched off)" do
      id = listen([[:pybridge, :shared_dict, :put]])
      sd = Py.SharedDict.new!()
      :ok = Py.SharedDict.put(sd, "a", 1)
      assert_receive {:event, [:pybridge, :shared_dict, :put], _, _}

      :ok = :telemetry.detach(id)
      Py.Telemetry.refresh()
      # The relay is off: the native side sends it nothing (with the
      # handler attached, the same put reached it above within the default
      # 100 ms of assert_receive; here it gets 300).
      relay = Process.whereis(Py.Telemetry.Relay)
      :erlang.trace(relay, true, [:receive])
      :ok = Py.SharedDict.put(sd, "b", 1)
      refute_receive {:trace, ^relay, :receive, {:py_telemetry, :shared_dict, _, _, _, _}}, 300
      :erlang.trace(relay, false, [:receive])
    end
  end

  describe "[:pybridge, :overloaded]" do
    test "a call refused by a full queue" do
      listen([[:pybridge, :overloaded], [:pybridge, :call, :stop]])
      {ctx, release} = full_context()

      assert {:error, %Py.Error{type: :overloaded}} = Py.call(ctx, :math, :sqrt, [4])

      assert_receive {:event, [:pybridge, :overloaded], %{count: 1},
                      %{
                        context: ^ctx,
                        pool: :dedicated,
                        kind: :call,
                        module: "math",
                        function: "sqrt"
                      }}

      assert_receive {:event, [:pybridge, :call, :stop], _, %{context: ^ctx, error: :overloaded}}

      release.()
      refute_received {:event, [:pybridge, :overloaded], _, _}
    end
  end

  describe "[:pybridge, :callback, _]" do
    setup do
      listen([
        [:pybridge, :callback, :start],
        [:pybridge, :callback, :stop],
        [:pybridge, :callback, :exception]
      ])

      name = "tel_cb_#{System.unique_integer([:positive])}"

      :ok = Py.register_function(name, fn x -> x * 2 end)

      on_exit(fn -> Py.unregister_function(name) end)
      {:ok, name: name}
    end

    test "a callback is a span: start, stop with its result", %{name: name} do
      assert {:ok, 42} = Py.eval("__import__('erlang').call(n, 21)", %{n: name})

      assert_receive {:event, [:pybridge, :callback, :start], %{system_time: _},
                      %{name: ^name, depth: 0} = meta}

      assert meta.node == node()

      assert_receive {:event, [:pybridge, :callback, :stop], %{duration: d},
                      %{name: ^name, result: :ok}}

      assert d >= 0
    end

    test "a callback that raises ends in :exception; an unknown name stops as :unknown",
         %{name: name} do
      # A string times 2 raises ArithmeticError in the function.
      {:error, _} = Py.eval("__import__('erlang').call(n, 'boom')", %{n: name})

      assert_receive {:event, [:pybridge, :callback, :exception], %{duration: _},
                      %{name: ^name, kind: :error, reason: _, stacktrace: [_ | _]}}

      refute_received {:event, [:pybridge, :callback, :stop], _, %{name: ^name}}

      {:error, _} = Py.eval("__import__('erlang').call('tel_no_such_callback')")

      assert_receive {:event, [:pybridge, :callback, :stop], _,
                      %{name: "tel_no_such_callback", result: :unknown}}
    end
  end

  describe "metrics/0" do
    test "every definition names an emitted event, its measurement and its tags" do
      metrics = Py.Telemetry.metrics()
      assert length(metrics) >= 10
      listen(metrics |> Enum.map(& &1.event_name) |> Enum.uniq())

      # One of each event the metrics read.
      {:ok, _} = Py.call(:math, :sqrt, [4])

      assert_raise ArgumentError, fn ->
        Py.Call.run(
          %Py.Context{pool: :forged, index: 1, ref: make_ref()},
          false,
          {:exec, ""},
          100
        )
      end

      {ctx, release} = full_context()
      {:error, %Py.Error{type: :overloaded}} = Py.eval(ctx, "1", %{}, timeout: 1_000)
      release.()

      group = {:metrics_test, make_ref()}
      test = self()

      leader =
        Task.async(fn ->
          Py.Coalesce.run(group, :k, fn ->
            send(test, {:running, self()})
            receive do: (:go -> {:error, :shared})
          end)
        end)

      assert_receive {:running, helper}
      follower = Task.async(fn -> Py.Coalesce.run(group, :k, fn -> :never end) end)
      wait_until(fn -> monitors(group) == 3 end)
      send(helper, :go)
      {:error, :shared} = Task.await(leader)
      {:error, :shared} = Task.await(follower)

      sd = Py.SharedDict.new!()
      :ok = Py.SharedDict.put(sd, "k", 1)
      :ok = Py.SharedDict.delete(sd, "k")
      :ok = Py.SharedDict.put(sd, "t", 1, ttl: 1)
      assert_receive {:event, [:pybridge, :shared_dict, :expired], _, _} = expired, 5_000

      events = collect([expired])

      for metric <- metrics do
        emitted = for {name, m, meta} <- events, name == metric.event_name, do: {m, meta}
        assert emitted != [], "no #{inspect(metric.event_name)} event for #{inspect(metric.name)}"

        assert Enum.any?(emitted, fn {measurements, metadata} ->
                 tags = metric.tag_values.(metadata)

                 Map.has_key?(measurements, metric.measurement) and
                   Enum.all?(metric.tags, &(is_binary(tags[&1]) or is_atom(tags[&1])))
               end),
               "#{inspect(metric.name)}: no event with its measurement and tags"
      end
    end
  end

  describe "[:pybridge, :context, _]" do
    test "a dedicated context starts and stops" do
      listen([[:pybridge, :context, :start], [:pybridge, :context, :stop]])
      ctx = Py.Context.new()

      assert_receive {:event, [:pybridge, :context, :start], %{system_time: _},
                      %{context: ^ctx, pool: :dedicated, mode: :main}}

      Py.Context.close(ctx)

      assert_receive {:event, [:pybridge, :context, :stop], %{duration: d},
                      %{context: ^ctx, mode: :main}}

      assert d > 0
    end
  end

  # A context with max_queue: 1, its one worker held and one call queued:
  # the next call is refused. `release` lets both finish and closes it.
  defp full_context do
    ctx = Py.Context.new(max_workers: 1, max_queue: 1)
    name = "tel_ov_#{System.unique_integer([:positive])}"
    set = "setattr(__import__('builtins'), n, __import__('threading').Event())"
    {:ok, nil} = Py.eval(set, %{n: name})
    wait = "getattr(__import__('builtins'), n).wait(30)"
    blocker = Task.async(fn -> Py.eval(ctx, wait, %{n: name}, timeout: 30_000) end)
    wait_until(fn -> match?(%{in_flight: 1, queue_length: 0}, Py.Context.info(ctx)) end)
    queued = Task.async(fn -> Py.eval(ctx, "1", %{}, timeout: 30_000) end)
    wait_until(fn -> Py.Context.info(ctx).queue_length == 1 end)

    release = fn ->
      {:ok, nil} = Py.eval("getattr(__import__('builtins'), n).set()", %{n: name})
      assert {:ok, true} = Task.await(blocker)
      assert {:ok, 1} = Task.await(queued)
      Py.Context.close(ctx)
    end

    {ctx, release}
  end

  defp monitors(group) do
    with {:process, flight, _} <- Py.Coalesce.in_flight({group, :k}),
         {:monitors, monitors} <- Process.info(flight, :monitors) do
      length(monitors)
    else
      _ -> 0
    end
  end

  defp collect([{:event, name, measurements, metadata}]),
    do: collect([{name, measurements, metadata}])

  defp collect(acc) do
    receive do
      {:event, name, measurements, metadata} -> collect([{name, measurements, metadata} | acc])
    after
      0 -> acc
    end
  end

  defp wait_until(fun, tries \\ 250) do
    cond do
      fun.() -> :ok
      tries == 0 -> flunk("condition never held")
      true -> Process.sleep(20) && wait_until(fun, tries - 1)
    end
  end
end
