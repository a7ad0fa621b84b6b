defmodule Py.SharedDictPythonTest do
  # The same dicts from the BEAM and from Python (python/tests/test_shared_dict.py
  # tests the Python face on its own).
  use ExUnit.Case, async: true

  import Py.TestHelpers
  alias Py.SharedDict, as: SD

  @moduletag timeout: 300_000

  # erlang_python's SharedDict quick start (Python side), as written.
  @quick_start """
  from erlang import SharedDict

  def process_with_config(sd_handle):
      # Wrap the handle
      sd = SharedDict(sd_handle)

      # Dict-like access
      config = sd['config']
      host = config.get('host') or config.get(b'host')

      # Set values
      sd['result'] = {'status': 'ok', 'count': 42}

      # Check membership
      if 'config' in sd:
          print("Config found")

      # Iterate keys
      for key in sd.keys():
          print(f"Key: {key}")

      # Delete
      del sd['result']
  """

  test "the seed's Python quick start runs as written on a dict made by the Erlang facade" do
    {:ok, sd} = :py.shared_dict_new()
    :ok = :py.shared_dict_set(sd, "config", %{host: "localhost", port: 8080})
    :ok = Py.exec(@quick_start)

    :ok =
      Py.exec("""
      import io, contextlib
      out = io.StringIO()
      def run(h):
          with contextlib.redirect_stdout(out):
              process_with_config(h)
      """)

    assert {:ok, nil} = Py.eval("run(h)", %{h: sd})
    assert {:ok, printed} = Py.eval("out.getvalue()")
    assert printed =~ "Config found"
    assert printed =~ "Key: config"
    assert SD.keys(sd) == ["config"]
    assert {:ok, "localhost"} = Py.eval("SharedDict(h)['config']['host']", %{h: sd})
  end

  test "plain values cross both ways; other objects are Pickled on the BEAM side and round-trip" do
    sd = SD.new!()

    :ok =
      Py.exec("""
      import decimal
      from erlang import SharedDict
      def fill(h):
          sd = SharedDict(h)
          sd['plain'] = {'a': [1, 2.5, None, (True, b'raw')]}
          sd['dec'] = decimal.Decimal('1.5')
      """)

    {:ok, nil} = Py.eval("fill(h)", %{h: sd})
    assert SD.get(sd, "plain") == %{"a" => [1, 2.5, nil, {true, "raw"}]}
    assert %SD.Pickled{type: "decimal.Decimal"} = pickled = SD.get(sd, "dec")
    :ok = SD.put(sd, "dec2", pickled)

    assert Py.eval(
             "str(SharedDict(h)['dec2']), SharedDict(h)['dec2'] == decimal.Decimal('1.5')",
             %{
               h: sd
             }
           ) == {:ok, {"1.5", true}}
  end

  test "bounds, TTLs and destroy set on the BEAM side hold in Python" do
    sd = SD.new!(max_entries: 1)
    :ok = SD.put(sd, "a", 1, ttl: 60_000)

    assert {:error, %Py.Error{type: "SharedDictFull"}} =
             Py.eval("__import__('erlang').SharedDict(h).__setitem__('b', 1)", %{h: sd})

    for stmt <- ["set('b', 1, ttl=5)", "set('b', __import__('decimal').Decimal(1))"] do
      assert {:error, %Py.Error{type: "SharedDictFull"}} =
               Py.eval("__import__('erlang').SharedDict(h).#{stmt}", %{h: sd})
    end

    assert SD.keys(sd) == ["a"]

    assert {:ok, ttl} = Py.eval("__import__('erlang').SharedDict(h).ttl('a')", %{h: sd})
    assert ttl > 0 and ttl <= 60
    {:ok, nil} = Py.eval("__import__('erlang').SharedDict(h).set('a', 2, ttl=30)", %{h: sd})
    assert SD.ttl(sd, "a") in 1..30_000
    SD.destroy(sd)

    assert {:error, %Py.Error{type: "RuntimeError", message: message}} =
             Py.eval("__import__('erlang').SharedDict(h)", %{h: sd})

    assert message =~ "destroyed"
  end

  test "a named dict made by Python is found by the BEAM, with the same handle each time" do
    name = "made_in_python_#{System.unique_integer([:positive])}"

    {:ok, nil} =
      Py.eval("__import__('erlang').SharedDict(n, create=True).set('a', 1)", %{n: name})

    assert {:ok, sd} = SD.lookup(name)
    assert SD.lookup(name) == {:ok, sd}
    assert SD.get(sd, "a") == 1
    assert SD.new(name: name) == {:error, :exists}
    SD.destroy(sd)
  end

  test "a dict Python destroys is destroyed for the BEAM too, and its name freed" do
    name = "destroyed_in_python_#{System.unique_integer([:positive])}"
    sd = SD.new!(name: name)
    :ok = SD.put(sd, "a", 1)
    {:ok, nil} = Py.eval("__import__('erlang').SharedDict(n).destroy()", %{n: name})
    assert_raise Py.Error, ~r/destroyed/, fn -> SD.get(sd, "a") end
    assert SD.lookup(name) == :error
    assert {:ok, again} = SD.new(name: name)
    refute again == sd
    SD.destroy(again)
  end

  test "a forged handle is refused by Python with a clear error" do
    assert {:error, %Py.Error{type: "TypeError"}} =
             Py.eval("__import__('erlang').SharedDict({'no': 'id'})")
  end

  test "State: Py.State, py:state_* and erlang.state_* are one store" do
    :ok = Py.State.put("cross_state", 1)
    assert Py.eval("__import__('erlang').state_get('cross_state')") == {:ok, 1}
    {:ok, 11} = Py.eval("__import__('erlang').state_incr('cross_state', 10)")
    assert :py.state_fetch("cross_state") == {:ok, 11}
    Py.State.delete("cross_state")
  end

  test "BEAM processes and Python threads incrementing the same key lose nothing" do
    sd = SD.new!()

    python =
      Task.async(fn ->
        Py.eval(
          """
          (lambda sd, threading: (
              lambda threads: ([t.start() for t in threads], [t.join() for t in threads])
          )([threading.Thread(target=lambda: [sd.incr('n') for _ in range(1000)]) for _ in range(8)])
          )(__import__('erlang').SharedDict(h), __import__('threading')) and None
          """,
          %{h: sd},
          timeout: 240_000
        )
      end)

    1..100
    |> Enum.map(fn _ -> Task.async(fn -> for _ <- 1..1_000, do: SD.incr!(sd, "n") end) end)
    |> Task.await_many(:infinity)

    assert {:ok, nil} = Task.await(python, :infinity)
    assert SD.get(sd, "n") == 108_000
  end

  test "a lock taken by a BEAM process excludes Python threads, and the other way round" do
    sd = SD.new!()
    # One thread for every call (a dedicated context's home worker).
    ctx = Py.Context.new()
    :ok = SD.lock(sd, "k")

    assert Py.eval(ctx, "__import__('erlang').SharedDict(h).lock('k', timeout=0.01)", %{h: sd}) ==
             {:ok, false}

    :ok = SD.unlock(sd, "k")

    assert Py.eval(ctx, "__import__('erlang').SharedDict(h).lock('k', 5, hold=True)", %{h: sd}) ==
             {:ok, true}

    assert SD.lock(sd, "k", timeout: 0) == {:error, :timeout}
    # A held Python lock is released by its thread.
    {:ok, true} = Py.eval(ctx, "__import__('erlang').SharedDict(h).unlock('k')", %{h: sd})
    assert SD.lock(sd, "k", timeout: 0) == :ok
    Py.Context.close(ctx)
  end

  test "a lock a Python call takes ends with the call (also one that times out), unless hold=True" do
    sd = SD.new!()
    ctx = Py.Context.new()
    lock = "__import__('erlang').SharedDict(h).lock(k, timeout=5, hold=hold)"
    assert Py.eval(ctx, lock, %{h: sd, k: "a", hold: false}) == {:ok, true}
    assert SD.lock(sd, "a", timeout: 0) == :ok

    # A call interrupted by its timeout while holding the lock.
    spin = "from erlang import SharedDict\nSharedDict(h).lock('b', timeout=5)\nwhile True: pass"

    assert {:error, %Py.Error{type: :timeout}} =
             Py.eval(ctx, "exec(src, {'h': h})", %{h: sd, src: spin}, timeout: 200)

    assert eventually(fn -> SD.lock(sd, "b", timeout: 0) == :ok end, 20_000)

    assert Py.eval(ctx, lock, %{h: sd, k: "c", hold: true}) == {:ok, true}
    assert SD.lock(sd, "c", timeout: 0) == {:error, :timeout}
    Py.Context.close(ctx)
  end

  describe "sub-interpreter contexts (Python 3.12)" do
    @describetag :subinterpreter
    test "see the same dicts as the main interpreter and the BEAM" do
      python = System.get_env("PYBRIDGE_TEST_PY312")

      unless python && File.exists?(python) do
        flunk(
          "PYBRIDGE_TEST_PY312 is not set to a Python executable: run the suite with `make test`"
        )
      end

      peer =
        start_python_peer(python, num_contexts: 1, pools: [iso: [size: 2, mode: :subinterpreter]])

      [a, b] = :peer.call(peer, Py.Context, :contexts, [:iso])
      main = :peer.call(peer, Py, :context, [1])
      {:ok, sd} = :peer.call(peer, SD, :new, [[name: "across"]])
      put = "__import__('erlang').SharedDict('across')[k] = v"
      get = "__import__('erlang').SharedDict('across')[k]"

      {:ok, nil} =
        :peer.call(peer, Py, :eval, [a, "exec(#{inspect(put)})", %{k: "from_a", v: [1]}])

      assert :peer.call(peer, Py, :eval, [b, get, %{k: "from_a"}]) == {:ok, [1]}
      assert :peer.call(peer, Py, :eval, [main, get, %{k: "from_a"}]) == {:ok, [1]}
      assert :peer.call(peer, SD, :get, [sd, "from_a"]) == [1]

      {:ok, 3} =
        :peer.call(peer, Py, :eval, [
          b,
          "__import__('erlang').SharedDict(h).incr('n', 3)",
          %{h: sd}
        ])

      assert :peer.call(peer, SD, :get, [sd, "n"]) == 3

      # A pickled value read with the native `get` is unpickled by the
      # reading interpreter's own `pickle.loads`.
      set_ip =
        "__import__('erlang').SharedDict('across').set('ip', __import__('ipaddress').ip_address('10.0.0.1'))"

      get_ip = "str(__import__('erlang').SharedDict('across').get('ip'))"
      {:ok, nil} = :peer.call(peer, Py, :eval, [a, set_ip])

      for ctx <- [b, main, a] do
        assert :peer.call(peer, Py, :eval, [ctx, get_ip]) == {:ok, "10.0.0.1"}
      end

      # A thread Python itself starts in a sub-interpreter reads the value
      # too: the bridge finds the interpreter the thread is attached to.
      src = """
      import threading
      out = []
      def work():
          try:
              d = __import__('erlang').SharedDict('across')
              out.append(d['from_a'])
              out.append(str(d.get('ip')))
          except Exception as e:
              out.append(type(e).__name__)
      t = threading.Thread(target=work)
      t.start()
      t.join()
      """

      code = "(lambda g: (exec(src, g), g['out'])[1])({})"
      assert {:ok, [[1], "10.0.0.1"]} = :peer.call(peer, Py, :eval, [a, code, %{src: src}])
    end
  end
end
