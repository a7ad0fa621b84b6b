defmodule Py.OutputTest do
  # Changes Python's root log level and captures the log: not async.
  use ExUnit.Case, async: false

  import ExUnit.CaptureIO
  import ExUnit.CaptureLog

  doctest Py.Output, only: [level: 1]

  test "print during a call goes to the caller's group leader, before the result" do
    assert capture_io(fn ->
             assert Py.exec("print('hello'); print('world', end='')") == :ok
             IO.write("|after")
           end) == "hello\nworld|after"

    # Many writes, then the result: all of them, in order, first.
    expected = Enum.map_join(0..999, "", &"#{&1}\n") <> "END"

    assert capture_io(fn ->
             assert Py.exec("for i in range(1000): print(i)") == :ok
             IO.write("END")
           end) == expected
  end

  test "a quick call's output is not overtaken by its result" do
    # Quick calls are answered inline, without a message; one that printed
    # must answer by message, after its output.
    for i <- 1..300 do
      assert capture_io(fn ->
               assert Py.eval("print(i) or i", %{i: i}) == {:ok, i}
               IO.write("|")
             end) == "#{i}\n|"
    end
  end

  test "stderr goes to :standard_error" do
    assert capture_io(:stderr, fn ->
             :ok = Py.exec("import sys; sys.stderr.write('oops\\n')")
           end) == "oops\n"

    # A traceback printed by Python code too.
    assert capture_io(:stderr, fn ->
             :ok =
               Py.exec("""
               import traceback
               try:
                   1 / 0
               except ZeroDivisionError:
                   traceback.print_exc()
               """)
           end) =~ "ZeroDivisionError: division by zero"
  end

  test "each process gets its own call's output" do
    results =
      for i <- 1..20 do
        Task.async(fn ->
          capture_io(fn ->
            {:ok, nil} = Py.eval("[print(n) for _ in range(50)] and None", %{n: i})
          end)
        end)
      end
      |> Enum.map(&Task.await(&1, 30_000))

    assert results == Enum.map(1..20, &String.duplicate("#{&1}\n", 50))
  end

  test "logging records go to Logger with their level and logger name" do
    log =
      capture_log([format: "[$level] $metadata$message\n", metadata: [:python_logger]], fn ->
        :ok =
          Py.exec("""
          import logging
          log = logging.getLogger("my.app")
          log.warning("careful %s", 42)
          log.error("broken")
          log.critical("down")
          log.info("not shown: below the root logger's WARNING")
          """)
      end)

    assert log =~ "[warning] python_logger=my.app careful 42"
    assert log =~ "[error] python_logger=my.app broken"
    assert log =~ "[critical] python_logger=my.app down"
    refute log =~ "not shown"
  end

  test "a record's level follows Python's, and an exception's traceback comes along" do
    log =
      capture_log([format: "[$level] $message\n"], fn ->
        :ok =
          Py.exec("""
          import logging
          log = logging.getLogger("my.levels")
          log.setLevel(logging.DEBUG)
          log.info("an info")
          log.debug("a debug")
          try:
              {}["missing"]
          except KeyError:
              log.exception("lookup failed")
          log.setLevel(logging.NOTSET)
          """)
      end)

    assert log =~ "[info] an info"
    assert log =~ "[debug] a debug"
    assert log =~ "[error] lookup failed\nTraceback"
    assert log =~ "KeyError: 'missing'"
  end

  test "output of a thread no call waits on is logged, line by line" do
    log =
      capture_log([format: "[$level] $metadata$message\n", metadata: [:python_stream]], fn ->
        :ok =
          Py.exec("""
          import threading, sys
          def run():
              print("from a thread")
              sys.stderr.write("part one, ")
              sys.stderr.write("part two\\n")
          t = threading.Thread(target=run)
          t.start()
          t.join()
          """)

        # Py.Output logs them: wait until it has.
        :sys.get_state(Py.Output)
      end)

    assert log =~ "[info] python_stream=stdout from a thread"
    assert log =~ "[warning] python_stream=stderr part one, part two"
  end

  @tag timeout: 300_000
  test "a sub-interpreter context's output reaches the caller too" do
    python = Py.TestHelpers.python!("PYBRIDGE_TEST_PY312")

    peer = Py.TestHelpers.start_python_peer(python, num_contexts: 1)

    assert :peer.call(
             peer,
             Py.TestHelpers,
             :exec_output_in_new_context,
             [[mode: :subinterpreter], "print('from a sub-interpreter')"],
             60_000
           ) == {:ok, "from a sub-interpreter\n"}
  end

  test "Python's writer behaves like a text stream" do
    assert Py.eval("__import__('sys').stdout.isatty()") == {:ok, false}
    assert Py.eval("__import__('sys').stdout.encoding") == {:ok, "utf-8"}

    assert {:error, %Py.Error{type: "TypeError"}} =
             Py.eval("__import__('sys').stdout.write(b'bytes')")

    assert capture_io(fn -> Py.eval("__import__('sys').stdout.write('é✓')") end) == "é✓"
  end

  test "Py.Output.level/1 maps Python's levels" do
    assert Enum.map([50, 45, 40, 30, 25, 20, 10, 0], &Py.Output.level/1) ==
             [:critical, :error, :error, :warning, :info, :info, :debug, :debug]
  end
end
