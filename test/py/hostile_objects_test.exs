defmodule Py.HostileObjectsTest do
  # Python objects that lie, never end, change while they are converted, or
  # recurse deeply. Each of these crashed, hung or corrupted a result before
  # the conversion took snapshots and counted items; the tests that could
  # crash a VM run in a peer VM.
  use ExUnit.Case, async: true

  import Py.TestHelpers

  @moduletag timeout: 120_000

  setup do
    ctx = Py.Context.new()
    on_exit(fn -> Py.Context.close(ctx) end)
    %{ctx: ctx}
  end

  test "a set subclass converts its real members, whatever __len__ and __iter__ say", %{ctx: ctx} do
    :ok =
      Py.exec(ctx, """
      import itertools
      class Liar(set):
          def __len__(self): return 10**18
      class Endless(set):
          def __iter__(self): return itertools.count()
      """)

    assert Py.eval(ctx, "Liar({1, 2})") == {:ok, MapSet.new([1, 2])}
    assert Py.eval(ctx, "Endless({3})") == {:ok, MapSet.new([3])}
  end

  test "an int subclass converts to its value, not what its methods claim", %{ctx: ctx} do
    :ok =
      Py.exec(ctx, """
      class I(int):
          def bit_length(self): return 1
          def to_bytes(self, *args, **kwargs): return b'\\x01'
      """)

    assert Py.eval(ctx, "I(2**100)") == {:ok, 2 ** 100}
  end

  test "a container changed while it is converted converts as it was", %{ctx: ctx} do
    :ok =
      Py.exec(ctx, """
      class Thief:
          def __init__(self, victim): self.victim = victim
          def __repr__(self):
              self.victim.clear()
              return 'Thief'
      """)

    assert {:ok, [%Py.Object{repr: "Thief"}, 1, 2]} =
             Py.eval(ctx, "(lambda l: (l.append(Thief(l)), l.extend([1, 2]), l)[-1])([])")

    assert {:ok, %{"a" => %Py.Object{repr: "Thief"}, "b" => 2}} =
             Py.eval(ctx, "(lambda d: (d.update(a=Thief(d), b=2), d)[-1])({})")
  end

  test "a result whose conversion outlives its timeout stops converting", %{ctx: ctx} do
    :ok =
      Py.exec(ctx, """
      import time
      class Slow:
          def __init__(self, counter): self.counter = counter
          def __repr__(self):
              self.counter.n += 1
              time.sleep(0.005)
              return 'Slow'
      """)

    {:ok, %Py.Object{} = counter} = Py.eval(ctx, "__import__('types').SimpleNamespace(n=0)")
    objects = "[Slow(c) for _ in range(2000)]"

    assert {:error, %Py.Error{type: :timeout}} =
             Py.eval(ctx, objects, %{c: counter}, timeout: 300)

    # 2,000 reprs take 10 s: the conversion must have stopped long before.
    read = fn -> Py.eval("c.n", %{c: counter}) end
    Process.sleep(300)
    {:ok, seen} = read.()
    Process.sleep(500)
    assert read.() == {:ok, seen}
    assert seen < 2000
  end

  test "the bridge evaluates only the code it compiled itself", %{ctx: ctx} do
    # A compile hook returning a closure's code object would crash the
    # evaluator; the bridge no longer calls any Python hook to compile.
    # The module is shared by every main-interpreter context: the fakes only
    # answer on this context's thread, and the real helper comes back after.
    :ok =
      Py.exec(ctx, """
      import pybridge, threading
      _me, _real = threading.get_ident(), pybridge.format_exception
      def _hook(*args):
          x = 1
          return (lambda: x).__code__
      pybridge.compile_source = _hook
      pybridge.format_exception = (
          lambda *a: 'fake' if threading.get_ident() == _me else _real(*a))
      """)

    try do
      assert Py.eval(ctx, "6 * 7") == {:ok, 42}
      assert {:error, %Py.Error{type: "ZeroDivisionError", traceback: tb}} = Py.eval(ctx, "1 / 0")
      assert tb =~ "ZeroDivisionError"
    after
      Py.exec(ctx, "pybridge.format_exception = _real\ndel pybridge.compile_source")
    end
  end

  test "recursion through C ends in RecursionError at the default limit", %{ctx: ctx} do
    :ok = Py.exec(ctx, "def down(n): return list(map(down, [n - 1]))[0] if n else 0")
    assert {:error, %Py.Error{type: "RecursionError"}} = Py.eval(ctx, "down(100_000)")
  end

  describe "the same conversions" do
    test "on this VM's Python" do
      assert Py.HostileHelpers.conversions(mode: :main) == Py.HostileHelpers.expected()
    end

    for {version, var} <- [
          {"3.12", "PYBRIDGE_TEST_PY312"},
          {"3.14", "PYBRIDGE_TEST_PY314"},
          {"3.14t", "PYBRIDGE_TEST_PY314T"}
        ] do
      test "on Python #{version}, in every kind of context" do
        peer = start_python_peer(python!(unquote(var)))
        modes = if unquote(version) == "3.14t", do: [:main], else: [:main, :subinterpreter]

        for mode <- modes do
          assert {mode, :peer.call(peer, Py.HostileHelpers, :conversions, [[mode: mode]], 60_000)} ==
                   {mode, Py.HostileHelpers.expected()}
        end
      end
    end
  end

  describe "in a peer VM" do
    setup do
      python = Py.Runtime.info().executable
      %{peer: start_python_peer(python, max_result_items: 1000)}
    end

    test "a recursion limit raised to 30,000 ends in RecursionError, not a crash", %{peer: peer} do
      # Before the 64 MiB stacks this overflowed a 16 MiB stack and took the
      # VM down (measured on CPython 3.11: between 20,000 and 30,000 levels).
      # Each :peer.call runs in a new process (a new namespace): `down` goes
      # into builtins, which the whole peer interpreter shares.
      code = """
      import sys, builtins
      sys.setrecursionlimit(30_000)
      def down(n): return list(map(down, [n - 1]))[0] if n else 0
      builtins.down = down
      """

      assert :peer.call(peer, Py, :exec, [code]) == :ok

      assert {:error, %Py.Error{type: "RecursionError"}} =
               :peer.call(peer, Py, :eval, ["down(60_000)"], 60_000)

      assert :peer.call(peer, Py, :eval, ["1 + 1"]) == {:ok, 2}
    end

    test "a result over :max_result_items is a conversion error", %{peer: peer} do
      assert {:ok, list} = :peer.call(peer, Py, :eval, ["list(range(1000))"])
      assert length(list) == 1000

      assert {:error, %Py.Error{type: :conversion, message: message}} =
               :peer.call(peer, Py, :eval, ["[list(range(600)), list(range(600))]"])

      assert message =~ "more than 1000 items"
      assert message =~ ":max_result_items"
    end
  end
end
