defmodule Py.ImportsTest do
  use ExUnit.Case, async: false

  import Py.TestHelpers

  @moduletag :tmp_dir

  setup do
    on_exit(fn ->
      Py.Imports.clear()
      Py.Imports.clear_paths()
    end)
  end

  defp write_module(dir, name) do
    File.write!(Path.join(dir, "#{name}.py"), "VALUE = 42\n")
    name
  end

  test "ensure/2 imports now and registers", %{tmp_dir: dir} do
    :ok = Py.Imports.add_path(dir)
    name = write_module(dir, "imports_test_mod_a")
    assert Py.eval("'#{name}' in __import__('sys').modules") == {:ok, false}

    assert Py.Imports.ensure(name) == :ok
    assert Py.eval("'#{name}' in __import__('sys').modules") == {:ok, true}
    assert Py.Imports.imported?(name)
    assert Py.Imports.imported?(String.to_atom(name), :anything)

    :ok = Py.Imports.ensure(:json, :dumps)
    :ok = Py.Imports.ensure(:json, :dumps)
    assert Py.Imports.list() == [{name, :all}, {"json", "dumps"}]
    assert Py.Imports.imported?(:json, :dumps)
    refute Py.Imports.imported?(:json, :loads)
    refute Py.Imports.imported?(:math)

    :ok = Py.Imports.clear()
    assert Py.Imports.list() == []
    refute Py.Imports.imported?(:json)
    # Clearing unloads nothing.
    assert Py.eval("'#{name}' in __import__('sys').modules") == {:ok, true}
  end

  test "a failed import is returned and not registered" do
    assert {:error, %Py.Error{type: "ModuleNotFoundError"}} =
             Py.Imports.ensure(:no_such_module_for_imports_test)

    assert Py.Imports.list() == []

    assert_raise ArgumentError, ~r/__main__/, fn -> Py.Imports.ensure(:__main__) end
    assert_raise ArgumentError, fn -> Py.Imports.ensure(42) end
  end

  test "add_path/1 appends once to sys.path in every process's view", %{tmp_dir: dir} do
    :ok = Py.Imports.add_path(dir)
    :ok = Py.Imports.add_path(String.to_charlist(dir))
    assert Py.Imports.paths() == [dir]
    assert Py.Imports.path_added?(dir)
    refute Py.Imports.path_added?("/nowhere")

    assert in_process(fn -> Py.eval("__import__('sys').path.count(d)", %{d: dir}) end) ==
             {:ok, 1}

    :ok = Py.Imports.clear_paths()
    assert Py.Imports.paths() == []
    assert Py.eval("d in __import__('sys').path", %{d: dir}) == {:ok, true}

    assert_raise ArgumentError, fn -> Py.Imports.add_path("") end
    assert_raise ArgumentError, fn -> Py.Imports.add_path(42) end
  end

  @tag timeout: 300_000
  test "sub-interpreters get the registry: the running ones now, new ones at start",
       %{tmp_dir: dir} do
    python = python!("PYBRIDGE_TEST_PY312")

    peer =
      start_python_peer(python, num_contexts: 1, pools: [iso: [size: 1, mode: :subinterpreter]])

    call = fn m, f, a -> :peer.call(peer, m, f, a, 60_000) end
    name = write_module(dir, "imports_test_mod_b")
    [iso] = call.(Py.Context, :contexts, [:iso])
    loaded = "'#{name}' in __import__('sys').modules"

    assert call.(Py.Imports, :add_path, [dir]) == :ok
    assert call.(Py.Imports, :ensure, [name]) == :ok
    assert call.(Py, :eval, [iso, loaded]) == {:ok, true}
    assert call.(Py, :eval, [iso, "d in __import__('sys').path", %{d: dir}]) == {:ok, true}

    # A new sub-interpreter is its own: it gets path and module at start.
    assert call.(Py.TestHelpers, :eval_in_new_context, [[mode: :subinterpreter], loaded]) ==
             {:ok, true}
  end
end
