defmodule Py.HardeningSubprocessTest do
  # Children that Python starts report their real exit status, and the
  # BEAM's own ports and System.cmd still report theirs.
  use ExUnit.Case, async: true

  import Py.TestHelpers

  defp run(code) do
    # exec then eval, in a process of its own (its own namespace).
    in_process(fn ->
      with :ok <- Py.exec(code, timeout: 30_000), do: Py.eval("result", %{}, timeout: 30_000)
    end)
  end

  test "subprocess.run reports failing and signalled children" do
    code = """
    import subprocess
    result = (
        subprocess.run(['sh', '-c', 'exit 3']).returncode,
        subprocess.run(['false']).returncode,
        subprocess.run(['sh', '-c', 'kill -TERM $$']).returncode,
        subprocess.run(['true']).returncode,
    )
    """

    assert run(code) == {:ok, {3, 1, -15, 0}}
  end

  test "check=True raises for a failing child" do
    assert {:error, %Py.Error{type: "CalledProcessError", message: message}} =
             Py.eval("__import__('subprocess').run(['sh', '-c', 'exit 7'], check=True)")

    assert message =~ "non-zero exit status 7"

    assert {:ok, "out\n"} =
             Py.eval("__import__('subprocess').check_output(['echo', 'out'], text=True)")
  end

  test "os.system returns the wait status" do
    code = """
    import os
    statuses = [os.system('exit 3'), os.system('kill -KILL $$'), os.system('true')]
    result = [os.waitstatus_to_exitcode(s) for s in statuses]
    """

    assert run(code) == {:ok, [3, -9, 0]}
  end

  test "os.waitpid sees failing and signalled children" do
    code = """
    import os, signal
    def status(*argv):
        pid = os.spawnvp(os.P_NOWAIT, argv[0], list(argv))
        waited, status = os.waitpid(pid, 0)
        assert waited == pid
        if os.WIFSIGNALED(status):
            return ('signal', os.WTERMSIG(status))
        return ('exit', os.WEXITSTATUS(status))
    result = [status('sh', '-c', 'exit 5'), status('sh', '-c', 'kill -INT $$'), status('true')]
    """

    assert run(code) == {:ok, [{"exit", 5}, {"signal", 2}, {"exit", 0}]}
  end

  test "System.cmd and ports still report their exit statuses" do
    # pybridge has started (and changed SIGCHLD) before any test runs.
    assert Py.eval("1") == {:ok, 1}
    assert System.cmd("sh", ["-c", "exit 4"]) == {"", 4}
    assert System.cmd("sh", ["-c", "kill -TERM $$"]) |> elem(1) == 143
    assert {_, 0} = System.cmd("true", [])

    port = Port.open({:spawn, "sh -c 'exit 6'"}, [:exit_status])
    assert_receive {^port, {:exit_status, 6}}, 10_000
    assert :os.cmd(~c"echo hi") == ~c"hi\n"
  end

  test "children Python waited for leave no zombies" do
    code = """
    import subprocess
    for _ in range(20):
        subprocess.run(['sh', '-c', 'exit 1'])
    result = True
    """

    assert run(code) == {:ok, true}
    beam = System.pid()

    zombies = fn ->
      for dir <- Path.wildcard("/proc/[0-9]*"),
          stat = File.read(Path.join(dir, "stat")),
          match?({:ok, _}, stat),
          {:ok, text} = stat,
          # pid (comm) state ppid ...: comm may hold spaces, so split after ")".
          [_, rest] = String.split(text, ") ", parts: 2),
          [state, ppid | _] = String.split(rest, " "),
          state == "Z" and ppid == beam,
          do: dir
    end

    # A child of a test running beside this one may be caught between its
    # exit and its parent's wait: only zombies that stay count.
    assert eventually(fn -> zombies.() == [] end, 5_000), inspect(zombies.())
  end

  describe "the :sigchld setting" do
    @describetag timeout: 120_000

    test ":keep leaves the VM's setting, and with it the lost exit statuses" do
      peer = start_python_peer(Py.Runtime.info().executable, sigchld: :keep)
      code = "__import__('subprocess').run(['sh', '-c', 'exit 3']).returncode"
      assert :peer.call(peer, Py, :eval, [code]) == {:ok, 0}
      assert :peer.call(peer, System, :cmd, ["sh", ["-c", "exit 4"]]) == {"", 4}
    end

    test "an invalid value stops the application from starting" do
      {:ok, peer, _node} =
        :peer.start_link(%{
          connection: :standard_io,
          args: Enum.flat_map(:code.get_path(), &[~c"-pa", &1])
        })

      :ok = :peer.call(peer, Application, :load, [:pybridge])
      :ok = :peer.call(peer, Application, :put_env, [:pybridge, :sigchld, :sometimes])

      assert {:error, reason} =
               :peer.call(peer, Application, :ensure_all_started, [:pybridge], 60_000)

      assert inspect(reason) =~ "invalid :sigchld setting"
    end
  end
end
