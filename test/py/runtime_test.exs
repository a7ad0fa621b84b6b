defmodule Py.RuntimeTest do
  # The application (started by mix test) has already run Py.Runtime.start/1.
  use ExUnit.Case, async: true

  alias Py.Runtime.Python

  test "info/0 describes the running Python" do
    assert Py.Runtime.started?()
    assert %Python{} = info = Py.Runtime.info()
    assert File.regular?(info.libpython)
    assert {3, minor, _} = info.version_info
    assert minor >= 10
  end

  test "the test venv is in use when make test configured one" do
    case Application.get_env(:pybridge, :venv) do
      venv when venv in [nil, ""] -> :ok
      venv -> assert Py.Runtime.info().venv == Path.expand(venv)
    end
  end

  test "start/1 is idempotent for the running Python" do
    assert Py.Runtime.start() == :ok
    assert Py.Runtime.start(python: Py.Runtime.info().executable) == :ok
  end

  test "start/1 refuses to switch to another Python" do
    running = Py.Runtime.info()

    other =
      [
        "/usr/bin/python3.11",
        "/usr/bin/python3" | Path.wildcard(Path.expand("~/.pyenv/versions/3.1*/bin/python3"))
      ]
      |> Enum.filter(&File.regular?/1)
      |> Enum.find(fn exe ->
        match?(
          {:ok, %Python{libpython: lib}} when lib != running.libpython,
          Python.discover(python: exe, venv: nil)
        )
      end)

    if other do
      assert {:error, %Py.Error{type: :already_started, message: message}} =
               Py.Runtime.start(python: other, venv: nil)

      assert message =~ running.executable
      assert Py.Runtime.info() == running
    end
  end

  test "start/1 reports a missing Python without touching the running one" do
    running = Py.Runtime.info()

    assert {:error, %Py.Error{type: :python_not_found}} =
             Py.Runtime.start(python: "/nonexistent/python3")

    assert Py.Runtime.info() == running
  end

  @tag :tmp_dir
  test "a missing NIF says how to build it, for a free-threaded Python too", %{tmp_dir: priv} do
    ft = %Python{
      executable: "/opt/py/bin/python3.14t",
      version_info: {3, 14, 4},
      libpython: "/opt/py/lib/libpython3.14t.so",
      free_threaded: true
    }

    assert {:error, %Py.Error{type: :nif_not_found, message: message}} =
             Py.Runtime.nif_path(priv, Python.nif_name(ft), ft)

    assert message =~ "pybridge_cp314t.so is missing"
    assert message =~ "mix compile.pybridge --python /opt/py/bin/python3.14t"

    assert {:error, %Py.Error{type: :nif_not_found, message: message}} =
             Py.Runtime.nif_path(priv, "pybridge", Py.Runtime.info())

    assert message =~ "Run `mix compile`"

    File.mkdir_p!(Path.join(priv, "native"))
    File.write!(Path.join([priv, "native", "pybridge_cp314t.so"]), "")
    base = Path.join([priv, "native", "pybridge_cp314t"])
    assert Py.Runtime.nif_path(priv, Python.nif_name(ft), ft) == {:ok, base}
  end
end
