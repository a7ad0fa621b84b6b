defmodule Py.HardeningNamespaceTest do
  # A timed-out eval/exec leaves no trace in the process's namespace: what
  # it bound is undone, and the process's next call starts only after that,
  # even when it runs on another worker while the timed-out call is stuck.
  use ExUnit.Case, async: true

  import Py.TestHelpers
  alias Py.HardeningHelpers

  setup do
    %{ctx: Py.Context.new(max_workers: 4)}
  end

  test "a timed-out exec keeps none of its assignments", %{ctx: ctx} do
    result =
      in_process(fn ->
        :ok =
          Py.exec(
            ctx,
            "x = 1\ndef f():\n    global n\n    n = 1\n    while True:\n        pass\n"
          )

        loop = "y = 2\nx = 3\ndel f\nwhile True:\n    pass\n"
        {:error, %Py.Error{type: :timeout}} = Py.exec(ctx, loop, timeout: 200)
        {:error, %Py.Error{type: :timeout}} = Py.call(ctx, :__main__, :f, [], timeout: 200)
        Py.eval(ctx, "(x, 'y' in globals(), callable(f), 'n' in globals())", %{}, timeout: 30_000)
      end)

    assert result == {:ok, {1, false, true, false}}
  end

  @tag :tmp_dir
  test "the next call waits for a timed-out call stuck in C, then finds its namespace clean",
       %{ctx: ctx, tmp_dir: dir} do
    {path, _} = latch = HardeningHelpers.latch(dir)
    test = self()

    caller =
      Task.async(fn ->
        :ok = Py.exec(ctx, "secret = 'old'")
        # Blocked in C: the interrupt cannot stop it until the latch opens.
        locals = %{latch: path, secret: 42}
        first = Py.eval(ctx, HardeningHelpers.latch_wait(), locals, timeout: 100)
        send(test, :timed_out)
        code = "seen = ('latch' in globals(), secret)\nsecret = 'mine'"
        second = Py.exec(ctx, code, timeout: 30_000)
        send(test, :second_done)
        {first, second, Py.eval(ctx, "(seen, secret)")}
      end)

    assert_receive :timed_out, 10_000
    # Give the second call the chance to run beside the stuck one, on
    # another worker (where it would see the first call's locals); it must
    # wait instead, so it ends only once the latch opens.
    refute_receive :second_done, 2_000
    HardeningHelpers.release(latch)

    assert {{:error, %Py.Error{type: :timeout}}, :ok, {:ok, {{false, "old"}, "mine"}}} =
             Task.await(caller, 30_000)
  end

  @tag :tmp_dir
  test "a call that times out while waiting for the namespace never runs",
       %{ctx: ctx, tmp_dir: dir} do
    {path, _} = latch = HardeningHelpers.latch(dir)
    test = self()

    caller =
      Task.async(fn ->
        locals = %{latch: path}
        first = Py.eval(ctx, HardeningHelpers.latch_wait(), locals, timeout: 100)
        second = Py.exec(ctx, "x = 1", timeout: 300)
        send(test, :both_timed_out)
        receive do: (:released -> :ok)

        {first, second,
         Py.eval(ctx, "'x' in globals() or 'latch' in globals()", %{}, timeout: 30_000)}
      end)

    assert_receive :both_timed_out, 10_000
    HardeningHelpers.release(latch)
    send(caller.pid, :released)

    assert {{:error, %Py.Error{type: :timeout}}, {:error, %Py.Error{type: :timeout}},
            {:ok, false}} = Task.await(caller, 30_000)
  end

  describe "on the other CPythons" do
    @describetag timeout: 300_000

    for {version, var} <- [
          {"3.12", "PYBRIDGE_TEST_PY312"},
          {"3.14t", "PYBRIDGE_TEST_PY314T"}
        ] do
      test "a timed-out exec leaves no trace on Python #{version}" do
        python = python!(unquote(var))

        peer = start_python_peer(python)

        modes = if unquote(version) == "3.12", do: [:main, :subinterpreter], else: [:main]

        for mode <- modes do
          assert {mode,
                  :peer.call(
                    peer,
                    HardeningHelpers,
                    :timed_out_exec_trace,
                    [[mode: mode]],
                    60_000
                  )} ==
                   {mode, {:ok, {1, false}}}
        end
      end
    end
  end
end
