defmodule Py.PythonSuiteTest do
  # Runs python/tests with unittest inside the embedded interpreter, so the
  # Python side (the pybridge and erlang modules) is
  # tested where it actually runs.
  use ExUnit.Case, async: false

  test "python/tests pass inside the embedded interpreter" do
    {code, locals} = Py.TestHelpers.python_suite()
    assert {:ok, {run, failed, report}} = Py.eval(code, locals)
    assert failed == 0, report
    assert run >= 15, report
  end
end
