defmodule Py.PythonSuiteTest do
  # Runs python/tests with unittest inside the embedded interpreter, so the
  # Python side (the pybridge module, the Rust-provided erlang module) is
  # tested where it actually runs.
  use ExUnit.Case, async: false

  @dir Path.expand("../python/tests", __DIR__)

  test "python/tests pass inside the embedded interpreter" do
    other = spawn(fn -> :ok end)
    ref = make_ref()

    fixtures = %{
      "pid" => self(),
      "same_pid" => self(),
      "other_pid" => other,
      "ref" => ref,
      "same_ref" => ref,
      "other_ref" => make_ref()
    }

    code = """
    (lambda sys, io, unittest: (
        sys.path.insert(0, dir) if dir not in sys.path else None,
        __import__('fixtures').VALUES.update(values),
        (lambda stream: (
            lambda result: (result.testsRun, len(result.failures) + len(result.errors), stream.getvalue())
        )(unittest.TextTestRunner(stream=stream, verbosity=2).run(
            unittest.TestLoader().discover(dir, pattern='test_*.py', top_level_dir=dir))))(io.StringIO())
    )[-1])(__import__('sys'), __import__('io'), __import__('unittest'))
    """

    assert {:ok, {run, failed, report}} = Py.eval(code, %{dir: @dir, values: fixtures})
    assert failed == 0, report
    assert run >= 15, report
  end
end
