defmodule Py.ReloadTest do
  # Not async: changes a module and sys.path visible to every context.
  use ExUnit.Case, async: false

  @module "pybridge_reload_fixture"

  setup do
    dir = Path.join(System.tmp_dir!(), "pybridge_reload_#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    on_exit(fn -> File.rm_rf!(dir) end)
    {:ok, dir: dir}
  end

  test "reload/1 re-imports a module in every context", %{dir: dir} do
    file = Path.join(dir, @module <> ".py")
    File.write!(file, "VALUE = 1\ndef value():\n    return VALUE\n")

    contexts = Py.Context.contexts(:default)

    for ctx <- contexts do
      assert {:ok, nil} = Py.eval(ctx, "__import__('sys').path.insert(0, d)", %{d: dir})

      assert {:ok, _} = Py.call(ctx, :importlib, :invalidate_caches)
      assert Py.call(ctx, @module, :value) == {:ok, 1}
    end

    # A different size, so the import system cannot take the old bytecode.
    File.write!(file, "VALUE = 22\ndef value():\n    return VALUE\n")
    assert Py.reload(@module) == :ok

    for ctx <- contexts do
      assert Py.call(ctx, @module, :value) == {:ok, 22}
    end

    assert :py.reload(String.to_atom(@module)) == :ok
  end

  test "reload/1 is not an error when a dedicated context closes meanwhile" do
    # Contexts opened and closed all along: some are listed by reload/1 and
    # closed before it reaches them.
    churn =
      Task.async(fn ->
        for _ <- 1..300 do
          ctx = Py.Context.new()
          Py.Context.close(ctx)
        end
      end)

    results = for _ <- 1..300, do: Py.reload(:json)
    Task.await(churn, 60_000)
    assert Enum.uniq(results) == [:ok]
  end

  test "reload/1 of an unknown module is an error" do
    assert {:error, %Py.Error{type: "ModuleNotFoundError"}} = Py.reload(:no_such_module_xyz)
  end
end
