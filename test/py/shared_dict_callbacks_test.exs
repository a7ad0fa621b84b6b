defmodule Py.SharedDictCallbacksTest do
  # Python callbacks on SharedDict events (sd.register_callback): exactly
  # once per event whoever caused it (Python, the BEAM, the sweeper), on
  # pybridge's callback context, sandboxed. Every wait is on a message: a
  # callback records its call in a second dict ("log"), which the test
  # subscribes to.
  use ExUnit.Case, async: true

  import ExUnit.CaptureLog
  import Py.TestHelpers
  alias Py.SharedDict, as: SD

  @moduletag timeout: 120_000

  @helpers """
  import threading
  from erlang import SharedDict

  def recorder(log_h):
      log = SharedDict(log_h)
      def cb(key, value):
          log.incr("n:" + key)
          log.set("v:" + key, value)
          # The OS thread's name (Linux), which pybridge's executors set.
          with open(f"/proc/self/task/{threading.get_native_id()}/comm") as f:
              log.set("t:" + key, f.read().strip())
      return cb

  def register(h, event, log_h, **kw):
      return SharedDict(h).register_callback(event, recorder(log_h), **kw)
  """

  setup do
    :ok = Py.exec(@helpers)
    sd = SD.new!()
    log = SD.new!()
    :ok = SD.subscribe(log, [:put])
    %{sd: sd, log: log}
  end

  defp register(sd, event, log, kw \\ "") do
    {:ok, id} = Py.eval("register(h, '#{event}', l#{kw})", %{h: sd, l: log})
    id
  end

  # Waits until the callback has recorded `key` (its last write is "t:").
  defp await_call(log, key) do
    assert_receive {:shared_dict, ^log, :put, "t:" <> ^key}, 20_000
  end

  # A later event on the same callback proves the earlier ones were all run
  # (the callback context runs them in order): then counts are final.
  defp settle(sd, log, key \\ "zz-sentinel") do
    :ok = SD.put(sd, key, 0)
    await_call(log, key)
  end

  test "a set callback runs once per write, from the BEAM and from Python, with the value",
       %{sd: sd, log: log} do
    register(sd, "set", log)
    :ok = SD.put(sd, "beam", %{"a" => [1, 2]})
    {:ok, nil} = Py.eval("SharedDict(h).set('py', 'text')", %{h: sd})
    {:ok, 3} = SD.incr(sd, "counter", 3)
    settle(sd, log)

    for key <- ["beam", "py", "counter"], do: assert(SD.get(log, "n:" <> key) == 1, key)
    assert SD.get(log, "v:beam") == %{"a" => [1, 2]}
    assert SD.get(log, "v:py") == "text"
    assert SD.get(log, "v:counter") == 3
    # On pybridge's callback context, not the writer's thread or the sweeper.
    assert "py-pybridge.cal" <> _ = SD.get(log, "t:beam")
  end

  test "an expiry found by the sweeper runs the expire callback once, with the expired value",
       %{sd: sd, log: log} do
    register(sd, "expire", log)
    :ok = SD.put(sd, "short", "was here", ttl: 1)
    # Nothing reads or writes it: only the sweeper can raise this event.
    await_call(log, "short")
    assert SD.get(log, "v:short") == "was here"
    assert "py-pybridge.cal" <> _ = SD.get(log, "t:short")
    # A second expiry after the first proves no duplicate of it was queued.
    :ok = SD.put(sd, "short2", 1, ttl: 1)
    await_call(log, "short2")
    assert SD.get(log, "n:short") == 1
    assert SD.get(log, "n:short2") == 1
  end

  test "delete and access callbacks; disabled and unregistered callbacks are skipped",
       %{sd: sd, log: log} do
    del = register(sd, "delete", log)
    acc = register(sd, "access", log, ", key='watched'")
    :ok = SD.put(sd, "gone", "old")
    :ok = SD.delete(sd, "gone")
    :ok = SD.delete(sd, "never-there")
    await_call(log, "gone")
    assert SD.get(log, "v:gone") == "old"

    :ok = SD.put(sd, "watched", 7)
    :ok = SD.put(sd, "other", 8)
    assert SD.get(sd, "other") == 8
    assert SD.get(sd, "watched") == 7
    await_call(log, "watched")
    assert SD.get(log, "v:watched") == 7

    {:ok, true} = Py.eval("SharedDict(h).set_callback_enabled(i, False)", %{h: sd, i: del})
    :ok = SD.put(sd, "off", 1)
    :ok = SD.delete(sd, "off")
    {:ok, true} = Py.eval("SharedDict(h).set_callback_enabled(i, True)", %{h: sd, i: del})
    {:ok, true} = Py.eval("SharedDict(h).unregister_callback(i)", %{h: sd, i: acc})
    {:ok, false} = Py.eval("SharedDict(h).unregister_callback(i)", %{h: sd, i: acc})
    assert SD.get(sd, "watched") == 7
    :ok = SD.put(sd, "on", 1)
    :ok = SD.delete(sd, "on")
    await_call(log, "on")

    assert SD.get(log, "n:off") == nil, "disabled"
    assert SD.get(log, "n:watched") == 1, "unregistered before the second read"
    assert SD.get(log, "n:other") == nil, "another key's access"
    assert SD.get(log, "n:gone") == 1
  end

  test "a callback that raises or times out is logged and counted; the writer and the other callbacks go on",
       %{sd: sd, log: log} do
    gate = SD.new!()
    :ok = SD.lock(gate, "g")

    :ok =
      Py.exec("""
      def bad(key, value):
          raise RuntimeError("Oops!")

      def make_stuck(gate_h):
          gate = SharedDict(gate_h)
          def stuck(key, value):
              # Waits for the test to release the gate, which it does only
              # once both runs timed out (interrupted in this loop).
              while not gate.lock("g", timeout=0.01):
                  pass
          return stuck
      """)

    {:ok, _} = Py.eval("SharedDict(h).register_callback('set', bad)", %{h: sd})

    {:ok, _} =
      Py.eval("SharedDict(h).register_callback('set', make_stuck(g), timeout=0.2)", %{
        h: sd,
        g: gate
      })

    register(sd, "set", log)

    log_text =
      capture_log(fn ->
        # Returns although one callback is stuck on the gate this process
        # holds: the writer never waits for callbacks.
        :ok = SD.put(sd, "x", 99)
        {:ok, nil} = Py.eval("SharedDict(h).set('y', 1)", %{h: sd})
        await_call(log, "x")
        await_call(log, "y")
        assert eventually(fn -> SD.stats(sd).callback_errors == 2 end, 20_000)
        assert eventually(fn -> SD.stats(sd).callback_timeouts == 2 end, 20_000)
        :ok = SD.unlock(gate, "g")
        # Every failure was sent to the logger before this put's event.
        settle(sd, log)
        :sys.get_state(Py.SharedDict.CallbackLog)
      end)

    assert SD.get(sd, "x") == 99
    assert SD.get(log, "n:x") == 1
    assert log_text =~ ~r/Python callback \d+ \(set\) raised for key "x": Oops!/
    assert log_text =~ "RuntimeError"
    assert log_text =~ ~r/Python callback \d+ \(set\) timed out for key "y"/
  end

  test "bad registrations raise in Python", %{sd: sd} do
    assert {:error, %Py.Error{type: "ValueError"}} =
             Py.eval("SharedDict(h).register_callback('bogus', print)", %{h: sd})

    assert {:error, %Py.Error{type: "TypeError"}} =
             Py.eval("SharedDict(h).register_callback('set', 3)", %{h: sd})

    assert {:ok, false} =
             Py.eval("SharedDict(h).set_callback_enabled(-1 % 2**63, True)", %{h: sd})
  end

  test "callbacks go with a destroyed dict", %{sd: sd, log: log} do
    register(sd, "set", log)
    :ok = SD.destroy(sd)
    assert {:error, %Py.Error{}} = Py.eval("register(h, 'set', l)", %{h: sd, l: log})
  end
end
