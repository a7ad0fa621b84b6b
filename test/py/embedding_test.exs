defmodule Py.EmbeddingTest do
  # Which Python runs, what it can import, and that one native build serves
  # more than one Python: the interpreter is chosen at application start.
  use ExUnit.Case, async: true

  import Py.TestHelpers

  @debian_python "/usr/bin/python3.11"

  defp reported(executable, expr) do
    {out, 0} = System.cmd(executable, ["-c", "import sys; print(#{expr})"])
    String.trim_trailing(out, "\n")
  end

  describe "the configured Python" do
    test "sys.prefix, sys.version and sys.executable are what the executable reports" do
      exe = Py.Runtime.info().executable

      for attribute <- ~w(prefix exec_prefix version executable) do
        expected = reported(exe, "sys." <> attribute)
        assert Py.eval("getattr(__import__('sys'), a)", %{a: attribute}) == {:ok, expected}
      end
    end

    test "the GIL switch interval comes from config (default 1 ms)" do
      expected = Application.get_env(:pybridge, :switch_interval_ms, 1) / 1000
      assert Py.eval("__import__('sys').getswitchinterval()") == {:ok, expected}
    end

    @tag :linux
    test "Python runs in batch-priority threads (executor_priority: :batch)" do
      assert Application.get_env(:pybridge, :executor_priority, :batch) == :batch

      assert Py.eval("""
             (lambda os, threading: (
                 os.sched_getscheduler(0) == os.SCHED_BATCH,
                 os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))(
                 __import__('os'), __import__('threading'))
             """) == {:ok, {true, 10}}
    end

    test "C extension modules load (libpython is loaded with RTLD_GLOBAL)" do
      for module <- ~w(ssl decimal ctypes sqlite3 hashlib zlib _json array math) do
        assert {:ok, ^module} = Py.eval("__import__(m).__name__", %{m: module}), module
      end

      assert Py.eval("__import__('ssl').OPENSSL_VERSION.startswith('OpenSSL')") == {:ok, true}
      assert Py.eval("__import__('ctypes').sizeof(__import__('ctypes').c_int)") == {:ok, 4}

      assert Py.eval(
               "__import__('sqlite3').connect(':memory:').execute('select 40 + 2').fetchone()"
             ) ==
               {:ok, {42}}
    end
  end

  describe "config :pybridge, venv:" do
    @describetag :venv
    setup do
      case Application.get_env(:pybridge, :venv) do
        nil ->
          flunk("""
          no venv configured: run the suite with `make test` (it creates
          _build/test-venv with numpy and exports PYBRIDGE_TEST_VENV)
          """)

        venv ->
          %{venv: Path.expand(venv)}
      end
    end

    test "a pip-installed package in the venv imports, numpy included", %{venv: venv} do
      {:ok, file} = Py.eval("__import__('numpy').__file__")
      assert String.starts_with?(file, venv)

      assert Py.eval("int(__import__('numpy').arange(10).sum())") == {:ok, 45}
      # numpy arrays are not plain data: they come back as objects.
      assert {:ok, %Py.Object{type: "numpy.ndarray"}} = Py.eval("__import__('numpy').zeros(3)")
    end

    test "the base interpreter stays the configured executable", %{venv: venv} do
      {:ok, prefix} = Py.eval("__import__('sys').prefix")
      refute String.starts_with?(prefix, venv)
    end
  end

  describe "one native build, another Python" do
    @describetag :debian_python
    @describetag timeout: 120_000

    setup do
      unless File.exists?(@debian_python) do
        flunk(
          "#{@debian_python} is missing: `make deps` installs Debian's python3.11 and libpython3.11"
        )
      end

      %{peer: start_python_peer(@debian_python)}
    end

    test "the same pybridge.so runs Debian's python3.11", %{peer: peer} do
      expected_version = reported(@debian_python, "sys.version")

      assert :peer.call(peer, Py, :eval, ["__import__('sys').version"]) == {:ok, expected_version}
      assert :peer.call(peer, Py, :eval, ["__import__('sys').prefix"]) == {:ok, "/usr"}

      for module <- ~w(ssl decimal ctypes sqlite3 hashlib zlib) do
        assert {:ok, ^module} =
                 :peer.call(peer, Py, :eval, ["__import__(m).__name__", %{m: module}]),
               module
      end

      assert {:ok, 1.4142135623730951} = :peer.call(peer, Py, :call, [:math, :sqrt, [2.0]])
    end
  end

  describe "the code cache" do
    test "the same source evaluated again is not compiled again" do
      # A context of its own: concurrent tests compile on the shared ones.
      ctx = Py.Context.new()
      source = "#{System.unique_integer([:positive])} + 1"
      before = Py.Context.info(ctx).compiles_total

      for _ <- 1..5, do: assert({:ok, _} = Py.eval(ctx, source))

      assert Py.Context.info(ctx).compiles_total - before == 1
    end
  end

  describe "opaque object handles" do
    test "100,000 handles are all freed once the BEAM drops them" do
      ctx = Py.context()

      # A real module, so the class outlives this process's namespace.
      :ok =
        Py.exec(ctx, """
        import sys, types
        tracked = types.ModuleType("pybridge_tracked")
        exec(
            "class Tracked:\\n"
            "    live = 0\\n"
            "    def __init__(self): Tracked.live += 1\\n"
            "    def __del__(self): Tracked.live -= 1\\n",
            tracked.__dict__,
        )
        sys.modules["pybridge_tracked"] = tracked
        """)

      live = "__import__('pybridge_tracked').Tracked.live"

      in_process(fn ->
        handles =
          for _ <- 1..100 do
            {:ok, objects} =
              Py.eval(ctx, "[__import__('pybridge_tracked').Tracked() for _ in range(1000)]")

            objects
          end

        assert length(List.flatten(handles)) == 100_000
        assert Py.eval(ctx, live) == {:ok, 100_000}
      end)

      assert eventually(fn ->
               :erlang.garbage_collect()
               Py.eval(ctx, live) == {:ok, 0}
             end)
    end
  end
end
