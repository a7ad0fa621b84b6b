defmodule Py.InterpretersTest do
  # Sub-interpreter contexts (CPython 3.12+) and free-threaded CPython
  # (3.14t), each in a peer VM embedding that Python. `make test` builds the
  # Pythons (`make cpython`) and the free-threaded NIF, and exports their
  # paths in PYBRIDGE_TEST_PY312, PYBRIDGE_TEST_PY314 and PYBRIDGE_TEST_PY314T.
  use ExUnit.Case, async: false

  import Py.TestHelpers
  alias Py.HardeningHelpers

  @moduletag timeout: 300_000

  defp call(:local, module, fun, args), do: apply(module, fun, args)
  defp call(peer, module, fun, args), do: :peer.call(peer, module, fun, args, 130_000)

  # Proves that Python in context `a` and context `b` runs at the same time,
  # without measuring speed: `a` spins in pure Python holding its GIL (with
  # a switch interval of 100 s, so it never hands the GIL over) until it sees
  # a flag that only a call in `b` sets, through a shared memory page. With
  # one GIL between them, `b` cannot run until `a` gives up (after `limit`
  # seconds) and `a` returns false; in parallel, `a` returns true as soon as
  # `b` has run. Returns what `a` returned and what `b` returned.
  defp spin_until_other_runs(peer, a, b, dir, limit \\ 60) do
    path = Path.join(dir, "flags")
    # Byte 0: set by `b`. Byte 1: set by `a` once it spins.
    File.write!(path, <<0, 0>>)

    spinner =
      Task.async(fn -> call(peer, HardeningHelpers, :spin_holding_gil, [a, path, limit]) end)

    # The spinner's writes go through the page cache, so the file shows them:
    # from here on, `a` is provably inside its GIL-holding loop.
    assert eventually(fn -> File.read!(path) == <<0, 1>> end, 60_000),
           "the spinning call never started"

    setter = call(peer, HardeningHelpers, :set_flag, [b, path])
    {Task.await(spinner, 130_000), setter}
  end

  defp interpreter_count(peer, ctx) do
    code = """
    len(__import__(
        '_interpreters' if __import__('sys').version_info >= (3, 13) else '_xxsubinterpreters'
    ).list_all())
    """

    {:ok, n} = call(peer, Py, :eval, [ctx, code])
    n
  end

  defp interpreter_id(peer, ctx) do
    # _interpreters (3.13+) returns (id, whence); 3.12's _xxsubinterpreters an id object.
    code = """
    (lambda c: c[0] if isinstance(c, tuple) else int(c))(__import__(
        '_interpreters' if __import__('sys').version_info >= (3, 13) else '_xxsubinterpreters'
    ).get_current())
    """

    {:ok, id} = call(peer, Py, :eval, [ctx, code])
    id
  end

  # 3.12 is the first with sub-interpreters of their own GIL (and needs its
  # first thread state kept); 3.14 the newest.
  for {version, var} <- [{"3.12", "PYBRIDGE_TEST_PY312"}, {"3.14", "PYBRIDGE_TEST_PY314"}] do
    describe "sub-interpreter contexts on Python #{version}" do
      @describetag python_var: var

      setup %{python_var: var} do
        peer =
          start_python_peer(python!(var),
            num_contexts: 1,
            pools: [iso: [size: 2, mode: :subinterpreter]]
          )

        [a, b] = call(peer, Py.Context, :contexts, [:iso])
        %{peer: peer, a: a, b: b, main: call(peer, Py, :context, [1])}
      end

      test "each has its own interpreter, modules and state", %{
        peer: peer,
        a: a,
        b: b,
        main: main
      } do
        assert %{mode: :subinterpreter} = call(peer, Py.Context, :info, [a])
        assert %{mode: :main} = call(peer, Py.Context, :info, [main])
        assert interpreter_id(peer, main) == 0
        assert interpreter_id(peer, a) not in [0, interpreter_id(peer, b)]

        # (Each :peer.call runs in a process of its own, so state set by one
        # call is seen by the next only through a module, not a namespace.)
        assert :ok = call(peer, Py, :exec, [a, "import sys\nsys.pybridge_marker = 'a'"])
        assert call(peer, Py, :eval, [a, "__import__('sys').pybridge_marker"]) == {:ok, "a"}

        for other <- [b, main] do
          assert call(peer, Py, :eval, [other, "hasattr(__import__('sys'), 'pybridge_marker')"]) ==
                   {:ok, false}
        end
      end

      test "values cross both ways; erlang.Pid is the interpreter's own class", %{
        peer: peer,
        a: a
      } do
        pid = self()

        assert call(peer, Py, :eval, [a, "(p, type(p) is __import__('erlang').Pid)", %{p: pid}]) ==
                 {:ok, {pid, true}}

        assert call(peer, Py, :call, [a, :json, :dumps, [%{"a" => [1, 2.5, nil]}]]) ==
                 {:ok, ~s({"a": [1, 2.5, null]})}
      end

      test "a Python object can only be used in its own interpreter", %{peer: peer} = ctx do
        {own, elsewhere} = call(peer, Py.TestHelpers, :object_uses, [ctx.a, [ctx.b, ctx.main]])
        assert own == {:ok, 2}

        for result <- elsewhere do
          assert {:error, %Py.Error{type: :conversion, message: message}} = result
          assert message =~ "belongs to another interpreter"
        end
      end

      @tag :tmp_dir
      test "an object the BEAM lets go of is freed without another call", ctx do
        # The handle dies with the :peer.call process; nothing runs in the
        # context afterwards, so the monitor must have its worker collect it.
        for {name, context} <- [sub: ctx.a, main: ctx.main] do
          path = Path.join(ctx.tmp_dir, "#{name}-gone")
          :ok = call(ctx.peer, Py.TestHelpers, :drop_tracked_object, [context, path])
          assert eventually(fn -> File.exists?(path) end, 5_000), "#{name}: never freed"
        end
      end

      test "a timeout interrupts the call and the context keeps serving", %{peer: peer, a: a} do
        assert {:error, %Py.Error{type: :timeout}} =
                 call(peer, Py, :exec, [a, "while True: pass", [timeout: 200]])

        assert call(peer, Py, :eval, [a, "2 + 2"]) == {:ok, 4}
      end

      @tag :tmp_dir
      test "a call blocked in one keeps no quick call waiting", %{peer: peer, a: a} = ctx do
        # The monitor sees the home thread stuck, probes this interpreter's GIL
        # and opens the overflow, as in the main interpreter. The blocked call
        # cannot end before the quick one has answered.
        latch = HardeningHelpers.latch(ctx.tmp_dir)
        locals = %{latch: elem(latch, 0)}

        blocked =
          Task.async(fn -> call(peer, Py, :eval, [a, HardeningHelpers.latch_wait(), locals]) end)

        assert eventually(fn -> HardeningHelpers.waiting?(latch) end, 30_000)
        assert call(peer, Py, :eval, [a, "6 * 7", %{}, [timeout: 60_000]]) == {:ok, 42}
        HardeningHelpers.release(latch)
        assert Task.await(blocked, 60_000) == {:ok, "go"}
      end

      test "the erlang module is there from the first call", %{peer: peer} do
        assert {{:ok, pid}, pid} =
                 call(peer, Py.TestHelpers, :first_call_uses_erlang, [[mode: :subinterpreter]])
      end

      test "dedicated ones (Py.Context.new/1) start and end cleanly", %{peer: peer, a: a} do
        count = fn -> interpreter_count(peer, a) end
        before = count.()
        results = call(peer, Py.TestHelpers, :context_churn, [10, [mode: :subinterpreter]])
        assert results == List.duplicate({:ok, :ok}, 10)
        assert call(peer, Py, :eval, [a, "1"]) == {:ok, 1}
        # Once their handles are gone, the ten interpreters end.
        assert eventually(fn -> count.() == before end, 10_000), "#{count.()} != #{before}"
      end

      @tag :tmp_dir
      test "Python runs in parallel: each has its own GIL", %{peer: peer, a: a, b: b} = ctx do
        assert spin_until_other_runs(peer, a, b, ctx.tmp_dir) == {{:ok, true}, {:ok, true}}
      end

      test "python/tests pass inside a sub-interpreter", %{peer: peer, a: a} do
        {code, locals} = python_suite()
        assert {:ok, {run, 0, _report}} = call(peer, Py, :eval, [a, code, locals])
        assert run >= 15
      end
    end
  end

  describe "free-threaded Python" do
    setup do
      %{peer: start_python_peer(python!("PYBRIDGE_TEST_PY314T"), num_contexts: 2)}
    end

    test "runs without the GIL, through the NIF built for it", %{peer: peer} do
      assert call(peer, Py, :eval, ["__import__('sys')._is_gil_enabled()"]) == {:ok, false}
      assert %Py.Runtime.Python{free_threaded: true} = call(peer, Py.Runtime, :info, [])

      big = Enum.to_list(1..100_000)
      assert call(peer, Py, :eval, ["x", %{x: big}]) == {:ok, big}
      pid = self()
      assert call(peer, Py, :eval, ["{'p': p}", %{p: pid}]) == {:ok, %{"p" => pid}}
    end

    @tag :tmp_dir
    test "contexts run Python in parallel", %{peer: peer, tmp_dir: dir} do
      [a, b] = for i <- 1..2, do: call(peer, Py, :context, [i])
      assert spin_until_other_runs(peer, a, b, dir) == {{:ok, true}, {:ok, true}}
    end

    test "python/tests pass", %{peer: peer} do
      {code, locals} = python_suite()
      assert {:ok, {run, 0, _report}} = call(peer, Py, :eval, [code, locals])
      assert run >= 15
    end
  end

  @tag :tmp_dir
  test "the parallelism proof fails for contexts that share a GIL", %{tmp_dir: dir} do
    # This VM's Python has one GIL for all its (main-interpreter) contexts:
    # the spinning call holds it until its limit, and only then can the
    # other context run.
    [a, b] = for _ <- 1..2, do: Py.Context.new()
    assert spin_until_other_runs(:local, a, b, dir, 2) == {{:ok, false}, {:ok, true}}
  end

  @tag :cpython314
  test "a free-threaded libpython under the GIL build's NIF is refused, not run" do
    # The executable has the GIL, so the stable-ABI NIF is loaded; the
    # libpython forced on it is free-threaded. Objects differ in layout
    # between the two: the NIF must refuse to start it.
    python = python!("PYBRIDGE_TEST_PY314")
    libdir = Path.join(Path.dirname(python!("PYBRIDGE_TEST_PY314T")), "../lib")
    libpython = Path.expand("libpython3.14t.so", libdir)
    assert File.exists?(libpython)

    {:ok, peer, _node} =
      :peer.start_link(%{
        connection: :standard_io,
        args: Enum.flat_map(:code.get_path(), &[~c"-pa", &1]),
        env: [
          {~c"PYBRIDGE_PYTHON", String.to_charlist(python)},
          {~c"PYBRIDGE_LIBPYTHON", String.to_charlist(libpython)}
        ]
      })

    assert {:error, reason} = call(peer, Application, :ensure_all_started, [:pybridge])
    assert inspect(reason) =~ "the loaded libpython is free-threaded"
    # The VM is alive and says so.
    assert call(peer, :erlang, :node, []) == :nonode@nohost
  end

  test "on Python before 3.12, a sub-interpreter context is a clear error" do
    if Py.Runtime.info().version_info >= {3, 12, 0} do
      flunk("this test needs the suite's Python to be older than 3.12")
    end

    error = assert_raise Py.Error, fn -> Py.Context.new(mode: :subinterpreter) end
    assert error.type == :context_failed
    assert Exception.message(error) =~ "need Python 3.12 or newer"

    # A pool of them stops the application from starting, saying why.
    {:ok, peer, _node} =
      :peer.start_link(%{
        connection: :standard_io,
        args: Enum.flat_map(:code.get_path(), &[~c"-pa", &1])
      })

    :ok = :peer.call(peer, Application, :load, [:pybridge])
    pools = [iso: [size: 1, mode: :subinterpreter]]
    :ok = :peer.call(peer, Application, :put_env, [:pybridge, :pools, pools])
    python = Py.Runtime.info().executable
    :ok = :peer.call(peer, Application, :put_env, [:pybridge, :python, python])
    assert {:error, reason} = :peer.call(peer, Application, :ensure_all_started, [:pybridge])
    assert inspect(reason) =~ "need Python 3.12 or newer"
  end
end
