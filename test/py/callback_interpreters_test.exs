defmodule Py.CallbackInterpretersTest do
  # Callbacks from sub-interpreter contexts (CPython 3.12 and 3.14, each
  # interpreter with its own `erlang` module and GIL) and from a
  # free-threaded CPython 3.14t, each in a BEAM node of its own.
  use ExUnit.Case, async: false

  import Py.TestHelpers

  @moduletag timeout: 300_000

  defp call(peer, module, fun, args), do: :peer.call(peer, module, fun, args, 130_000)

  # Calls that run in the peer, in one process (callbacks run in the caller).
  defp callbacks_in(peer, ctx) do
    :ok = call(peer, Py, :register_function, [:max2, {Kernel, :max}])
    :ok = call(peer, :py, :register_function, [:erl_len, :erlang, :length])

    direct = call(peer, Py, :eval, [ctx, "__import__('erlang').max2(3, 7)"])
    facade = call(peer, Py, :eval, [ctx, "__import__('erlang').call('erl_len', 1, 2, 3)"])

    # Each :peer.call runs in a process of its own (a namespace of its
    # own): the threads' code is one expression.
    threads_code = """
    (lambda ex: (list(ex.map(lambda i: __import__('erlang').max2(i, 2), range(100))), ex.shutdown())[0])(
        __import__('concurrent.futures').futures.ThreadPoolExecutor(max_workers=8))
    """

    threads = call(peer, Py, :eval, [ctx, threads_code])
    {direct, facade, threads}
  end

  for {label, var} <- [{"3.12", "PYBRIDGE_TEST_PY312"}, {"3.14", "PYBRIDGE_TEST_PY314"}] do
    test "callbacks from a sub-interpreter context on Python #{label}" do
      peer =
        start_python_peer(python!(unquote(var)),
          num_contexts: 1,
          pools: [iso: [size: 1, mode: :subinterpreter]]
        )

      [ctx] = call(peer, Py.Context, :contexts, [:iso])
      {direct, facade, threads} = callbacks_in(peer, ctx)
      assert direct == {:ok, 7}
      assert facade == {:ok, 3}
      assert threads == {:ok, Enum.map(0..99, &max(&1, 2))}
    end
  end

  test "callbacks on a free-threaded Python 3.14t" do
    peer = start_python_peer(python!("PYBRIDGE_TEST_PY314T"), num_contexts: 2)
    ctx = call(peer, Py.Context, :contexts, [:default]) |> hd()
    {direct, facade, threads} = callbacks_in(peer, ctx)
    assert direct == {:ok, 7}
    assert facade == {:ok, 3}
    assert threads == {:ok, Enum.map(0..99, &max(&1, 2))}
  end
end

defmodule Py.CallbackShutdownTest do
  # erlang.call from a Python thread after the application began stopping:
  # a clear error, in a VM of its own (this one keeps running).
  use ExUnit.Case, async: false

  import Py.TestHelpers

  @moduletag :tmp_dir
  @moduletag timeout: 300_000

  test "erlang.call from a thread after the application stopped raises erlang.Error", %{
    tmp_dir: dir
  } do
    {:ok, python} = Py.eval("__import__('sys').executable")
    peer = start_python_peer(python)
    go = Path.join(dir, "go")
    out = Path.join(dir, "out")
    :ok = :peer.call(peer, Py, :register_function, [:max2, {Kernel, :max}])

    :ok =
      :peer.call(peer, Py, :exec, [
        """
        import os, threading, time, erlang
        ready = threading.Event()
        def later(go, out):
            first = erlang.max2(1, 2)
            ready.set()
            while not os.path.exists(go):
                time.sleep(0.01)
            try:
                result = 'returned %r' % (erlang.max2(1, 2),)
            except erlang.Error as e:
                result = 'raised %s: %s' % (type(e).__name__, e)
            with open(out, 'w') as f:
                f.write('first %r; then %s' % (first, result))
        threading.Thread(target=later, args=(#{inspect(go)}, #{inspect(out)}), daemon=True).start()
        ready.wait(30)
        """
      ])

    :ok = :peer.call(peer, Application, :stop, [:pybridge])
    File.write!(go, "")
    assert eventually(fn -> File.exists?(out) and File.read!(out) =~ "then" end, 10_000)
    assert File.read!(out) =~ ~r/^first 2; then raised Error: .*not running/
  end
end
