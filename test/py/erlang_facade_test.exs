defmodule Py.ErlangFacadeTest do
  # Runs the EUnit suite of the Erlang facade (test/erlang/*_tests.erl),
  # written as an erlang_python program would be, inside `mix test`: a failed
  # or crashed EUnit test fails this test, and so `make test`.
  use ExUnit.Case, async: false

  @suites Path.wildcard(Path.expand("../erlang/*_tests.erl", __DIR__))

  for source <- @suites do
    @external_resource source
    module = source |> Path.basename(".erl") |> String.to_atom()

    # Some tests stop and restart the context pools: nothing else may run.
    test "EUnit #{module}" do
      source = unquote(source)
      module = unquote(module)

      assert {:ok, ^module, binary, _warnings} =
               :compile.file(String.to_charlist(source), [
                 :binary,
                 :debug_info,
                 :return_errors,
                 :return_warnings,
                 :warnings_as_errors
               ])

      {:module, ^module} = :code.load_binary(module, String.to_charlist(source), binary)
      assert :eunit.test(module, [:verbose]) == :ok, "EUnit tests of #{module} failed (see above)"
    end
  end

  @tag timeout: 300_000
  test "EUnit py_facade_tests:subinterp_test in a VM embedding Python 3.12" do
    python = Py.TestHelpers.python!("PYBRIDGE_TEST_PY312")

    source = Path.expand("../erlang/py_facade_tests.erl", __DIR__) |> String.to_charlist()
    {:ok, module, binary} = :compile.file(source, [:binary, :debug_info])
    peer = Py.TestHelpers.start_python_peer(python, num_contexts: 1)
    {:module, ^module} = :peer.call(peer, :code, :load_binary, [module, source, binary])
    assert :peer.call(peer, :py, :subinterp_supported, []) == true

    assert :peer.call(peer, :eunit, :test, [{module, :subinterp_test}, [:verbose]], 120_000) ==
             :ok
  end

  test "a failing EUnit test fails the run" do
    source =
      ~c"-module(py_facade_failing_tests).\n" ++
        ~c"-include_lib(\"eunit/include/eunit.hrl\").\n" ++
        ~c"fails_test() -> {error, _} = py:eval(<<\"1 + 1\">>).\n"

    path = Path.join(System.tmp_dir!(), "py_facade_failing_tests.erl")
    File.write!(path, source)
    {:ok, mod, binary} = :compile.file(String.to_charlist(path), [:binary])
    {:module, ^mod} = :code.load_binary(mod, String.to_charlist(path), binary)
    ExUnit.CaptureIO.capture_io(fn -> assert :eunit.test(mod, []) == :error end)
  after
    :code.purge(:py_facade_failing_tests)
    :code.delete(:py_facade_failing_tests)
  end
end
