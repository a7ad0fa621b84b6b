defmodule Mix.Tasks.Compile.PybridgePythonTest do
  # `mix compile.pybridge --python PATH`. The build for a free-threaded
  # Python itself runs in `make test`, which builds pybridge_cp314t.so this
  # way before the suite and loads it in Py.InterpretersTest.
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO

  alias Mix.Tasks.Compile.Pybridge

  test "a Python with the GIL needs nothing more: the stable-ABI library serves it" do
    python = Py.Runtime.info().executable
    output = capture_io(fn -> assert Pybridge.run(["--python", python]) == :noop end)
    assert output =~ "has the GIL; the stable-ABI library serves it"
  end

  test "something that is not a Python is an error that says so" do
    capture_io(:stderr, fn ->
      assert {:error, [%Mix.Task.Compiler.Diagnostic{message: message}]} =
               Pybridge.run(["--python", "/nonexistent/python3.14t"])

      assert message =~ "--python /nonexistent/python3.14t is not a Python that runs"
    end)
  end

  describe "the configured Python" do
    setup do
      previous = {Application.get_env(:pybridge, :python), System.get_env("PYBRIDGE_PYTHON")}

      on_exit(fn ->
        {config, env} = previous

        if config,
          do: Application.put_env(:pybridge, :python, config),
          else: Application.delete_env(:pybridge, :python)

        if env,
          do: System.put_env("PYBRIDGE_PYTHON", env),
          else: System.delete_env("PYBRIDGE_PYTHON")
      end)
    end

    test "with the GIL needs no library of its own" do
      Application.put_env(:pybridge, :python, Py.Runtime.info().executable)
      assert Pybridge.configured_free_threaded_python() == nil
    end

    test "that does not run is left to Py.Runtime to report" do
      Application.delete_env(:pybridge, :python)
      System.put_env("PYBRIDGE_PYTHON", "/nonexistent/python3.14t")
      assert Pybridge.configured_free_threaded_python() == nil
    end

    test "free-threaded (config first, then PYBRIDGE_PYTHON) gets its library provided" do
      case System.get_env("PYBRIDGE_TEST_PY314T") do
        nil ->
          flunk("PYBRIDGE_TEST_PY314T is not set (make test sets it; make cpython builds it)")

        py314t ->
          Application.delete_env(:pybridge, :python)
          System.put_env("PYBRIDGE_PYTHON", py314t)
          assert Pybridge.configured_free_threaded_python() =~ "python3.14t"

          Application.put_env(:pybridge, :python, Py.Runtime.info().executable)
          assert Pybridge.configured_free_threaded_python() == nil
      end
    end
  end
end
