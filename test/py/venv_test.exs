defmodule Py.VenvTest do
  # Activating changes sys.path for the whole VM: not async.
  use ExUnit.Case, async: false

  import Py.TestHelpers

  @moduletag :tmp_dir

  setup do
    on_exit(fn -> Py.deactivate_venv() end)
  end

  # A venv made by `python` (no pip: fast), with `module` in its
  # site-packages; returns the venv's path.
  defp make_venv(python, dir, modules) do
    venv = Path.join(dir, "venv")
    {_, 0} = System.cmd(python, ["-m", "venv", "--without-pip", venv])
    [site] = Path.wildcard(Path.join(venv, "lib/python*/site-packages"))
    for module <- modules, do: File.write!(Path.join(site, "#{module}.py"), "WHERE = 'venv'\n")
    {venv, site}
  end

  defp importable(module),
    do: in_process(fn -> Py.eval("__import__(m).WHERE", %{m: module}) end)

  test "activating makes the venv's packages importable; deactivating removes them",
       %{tmp_dir: dir} do
    {venv, site} = make_venv(Py.Runtime.info().executable, dir, ~w(venv_mod_a venv_mod_b))
    configured = Py.Runtime.info().venv

    assert {:ok, %{active: false, venv_path: nil, site_packages: [], configured: ^configured}} =
             Py.venv_info()

    assert {:error, %Py.Error{type: "ModuleNotFoundError"}} = importable("venv_mod_a")
    prefix = Py.eval!("__import__('sys').prefix")

    assert Py.activate_venv(venv) == :ok
    assert importable("venv_mod_a") == {:ok, "venv"}

    assert {:ok, %{active: true, venv_path: ^venv, site_packages: [^site], sys_path: [^site | _]}} =
             Py.venv_info()

    assert Py.eval("__import__('sys').prefix") == {:ok, venv}

    assert Py.deactivate_venv() == :ok
    # Not imported before: gone with the venv.
    assert {:error, %Py.Error{type: "ModuleNotFoundError"}} = importable("venv_mod_b")
    assert {:ok, %{active: false, sys_path: sys_path}} = Py.venv_info()
    refute site in sys_path
    assert Py.eval("__import__('sys').prefix") == {:ok, prefix}
    # Deactivating twice is fine.
    assert Py.deactivate_venv() == :ok
  end

  test "the Erlang facade: py:activate_venv/1, py:venv_info/0, py:deactivate_venv/0",
       %{tmp_dir: dir} do
    {venv, site} = make_venv(Py.Runtime.info().executable, dir, ~w(venv_mod_erl))
    assert :py.activate_venv(String.to_charlist(venv)) == :ok
    assert importable("venv_mod_erl") == {:ok, "venv"}

    assert {:ok, %{"active" => true, "venv_path" => ^venv, "site_packages" => ^site}} =
             :py.venv_info()

    assert :py.deactivate_venv() == :ok
    assert {:ok, %{"active" => false, "sys_path" => [_ | _]}} = :py.venv_info()
    assert {:error, {:venv_not_found, _}} = :py.activate_venv(Path.join(dir, "none"))
  end

  test "activating a second venv replaces the first", %{tmp_dir: dir} do
    {first, first_site} = make_venv(Py.Runtime.info().executable, Path.join(dir, "1"), [])
    {second, second_site} = make_venv(Py.Runtime.info().executable, Path.join(dir, "2"), [])

    :ok = Py.activate_venv(first)
    :ok = Py.activate_venv(second)
    {:ok, %{venv_path: ^second, sys_path: sys_path}} = Py.venv_info()
    assert second_site in sys_path
    refute first_site in sys_path
  end

  test "a directory that is not a venv is refused and changes nothing", %{tmp_dir: dir} do
    {:ok, %{sys_path: before}} = Py.venv_info()

    assert {:error, %Py.Error{type: :venv_not_found, message: message}} =
             Py.activate_venv(Path.join(dir, "nothing_here"))

    assert message =~ "does not exist"
    File.mkdir_p!(Path.join(dir, "empty"))
    assert {:error, %Py.Error{type: :venv_not_found}} = Py.activate_venv(Path.join(dir, "empty"))
    assert {:ok, %{active: false, sys_path: ^before}} = Py.venv_info()

    assert_raise ArgumentError, fn -> Py.activate_venv("") end
    assert_raise ArgumentError, fn -> Py.activate_venv(42) end
  end

  @tag timeout: 300_000
  test "ensure_venv creates a venv once, then activates it as it is", %{tmp_dir: dir} do
    venv = Path.join(dir, "ensured")
    assert Py.ensure_venv(venv) == :ok
    assert {:ok, %{active: true, venv_path: ^venv, site_packages: [site]}} = Py.venv_info()
    # Made by the running Python, with its pip.
    assert File.exists?(Path.join(venv, "bin/python"))
    File.write!(Path.join(site, "ensured_mod.py"), "WHERE = 'venv'\n")
    :ok = Py.deactivate_venv()

    # Existing: not recreated (the module stays).
    assert Py.ensure_venv(venv, ["no-such-package-for-pybridge-tests"]) == :ok
    assert importable("ensured_mod") == {:ok, "venv"}

    # A failed install is an error naming the command; nothing is activated.
    :ok = Py.deactivate_venv()

    assert {:error, %Py.Error{type: :venv_failed, message: message}} =
             Py.ensure_venv(Path.join(dir, "failing"), [Path.join(dir, "no/such/project")])

    assert message =~ "pip install"
    assert {:ok, %{active: false}} = Py.venv_info()

    assert_raise ArgumentError, fn -> Py.ensure_venv(venv, [42]) end
    assert_raise ArgumentError, fn -> Py.ensure_venv(venv, [], installer: :conda) end
  end

  @tag timeout: 300_000
  test "sub-interpreter contexts get the venv: the running ones now, new ones at start",
       %{tmp_dir: dir} do
    python = python!("PYBRIDGE_TEST_PY312")

    {venv, _site} = make_venv(python, dir, ~w(venv_sub_mod))

    peer =
      start_python_peer(python, num_contexts: 1, pools: [iso: [size: 1, mode: :subinterpreter]])

    call = fn m, f, a -> :peer.call(peer, m, f, a, 60_000) end
    [iso] = call.(Py.Context, :contexts, [:iso])
    code = "__import__('venv_sub_mod').WHERE"

    assert {:error, %Py.Error{type: "ModuleNotFoundError"}} = call.(Py, :eval, [iso, code])
    assert call.(Py, :activate_venv, [venv]) == :ok
    assert call.(Py, :eval, [iso, code]) == {:ok, "venv"}
    assert call.(Py, :eval, [code]) == {:ok, "venv"}

    assert call.(Py.TestHelpers, :eval_in_new_context, [[mode: :subinterpreter], code]) ==
             {:ok, "venv"}

    assert call.(Py, :deactivate_venv, []) == :ok

    assert {:ok, false} = call.(Py, :eval, [iso, "__import__('sys').prefix == v", %{v: venv}])
  end
end
