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
end
