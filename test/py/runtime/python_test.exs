defmodule Py.Runtime.PythonTest do
  # Runs real Python executables; nothing here needs the NIF to be loaded.
  use ExUnit.Case, async: true

  alias Py.Runtime.Python

  @moduletag :tmp_dir

  # Pythons that happen to be installed on this machine. Tests for the ones
  # that are missing are simply not generated.
  @python3 System.find_executable("python3")
  @debian_python "/usr/bin/python3.11"
  @pyenv_root System.get_env("PYENV_ROOT") || Path.expand("~/.pyenv")
  @pyenv_pythons @pyenv_root
                 |> Path.join("versions/*/bin/python")
                 |> Path.wildcard()
                 |> Enum.filter(&File.regular?/1)
                 |> Enum.sort()

  # Only the keys that matter: the test env may configure a venv.
  defp discover(opts), do: Python.discover(Keyword.merge([venv: nil, libpython: nil], opts))

  defp assert_usable(%Python{} = info) do
    assert Path.type(info.executable) == :absolute
    assert File.regular?(info.executable)
    assert File.regular?(info.libpython)
    assert Path.basename(info.libpython) =~ ~r/^libpython3\.\d+/
    assert {major, minor, micro} = info.version_info
    assert major == 3 and minor >= 10 and is_integer(micro)
    assert String.starts_with?(info.version, "#{major}.#{minor}.#{micro}")
    assert is_binary(info.prefix) and is_binary(info.base_prefix) and is_binary(info.exec_prefix)
    info
  end

  defp python_version(executable) do
    {out, 0} =
      System.cmd(executable, [
        "-c",
        "import sys; print('%d.%d.%d' % tuple(sys.version_info[:3]))"
      ])

    out |> String.trim() |> String.split(".") |> Enum.map(&String.to_integer/1) |> List.to_tuple()
  end

  if @python3 do
    describe "python3 on PATH" do
      test "is found by default and fully described" do
        assert {:ok, info} = discover(python: nil)
        assert_usable(info)
        assert info.version_info == python_version(@python3)
        assert info.venv == nil or info.prefix != info.base_prefix
      end

      test "a bare name is looked up on PATH" do
        assert {:ok, by_name} = discover(python: "python3")
        assert {:ok, by_path} = discover(python: @python3)
        assert by_name.executable == by_path.executable
        assert by_name.libpython == by_path.libpython
      end

      test "an explicit libpython skips the search" do
        assert {:ok, info} = discover(python: "python3")
        assert {:ok, again} = discover(python: "python3", libpython: info.libpython)
        assert again.libpython == info.libpython
      end

      test "a libpython that does not exist is reported" do
        assert {:error, %Py.Error{type: :libpython_not_found, message: message}} =
                 discover(python: "python3", libpython: "/nonexistent/libpython3.so")

        assert message =~ "/nonexistent/libpython3.so"
      end
    end

    describe "virtualenvs" do
      setup %{tmp_dir: tmp_dir} do
        venv = Path.join(tmp_dir, "venv")

        case System.cmd(@python3, ["-m", "venv", "--without-pip", venv], stderr_to_stdout: true) do
          {_, 0} -> %{venv: venv}
          {out, _} -> flunk("python3 -m venv failed: #{out}")
        end
      end

      test "venv: adds the venv's site-packages", %{venv: venv} do
        assert {:ok, info} = discover(python: "python3", venv: venv)
        assert_usable(info)
        {major, minor, _} = info.version_info
        assert info.venv == venv
        assert info.site_dirs == [Path.join(venv, "lib/python#{major}.#{minor}/site-packages")]
        assert Enum.all?(info.site_dirs, &File.dir?/1)
      end

      test "a relative venv path is expanded", %{venv: venv} do
        relative = Path.relative_to_cwd(venv)
        assert {:ok, info} = discover(python: "python3", venv: relative)
        assert info.venv == Path.expand(venv)
      end

      test "the venv's own python is used as is, its venv included", %{venv: venv} do
        {:ok, base} = discover(python: "python3")
        assert {:ok, info} = discover(python: Path.join(venv, "bin/python"))
        assert_usable(info)
        assert info.executable == Path.join(venv, "bin/python")
        assert info.prefix == venv
        assert info.base_prefix == base.base_prefix
        assert info.libpython == base.libpython
        assert info.venv == venv
        assert [site_dir] = info.site_dirs
        assert String.starts_with?(site_dir, venv)
      end

      test "a venv that does not exist is an error", %{tmp_dir: tmp_dir} do
        missing = Path.join(tmp_dir, "missing")

        assert {:error, %Py.Error{type: :venv_not_found, message: message}} =
                 discover(python: "python3", venv: missing)

        assert message =~ missing
      end

      test "a directory that is no venv is an error", %{tmp_dir: tmp_dir} do
        empty = Path.join(tmp_dir, "empty")
        File.mkdir_p!(empty)

        assert {:error, %Py.Error{type: :venv_not_found, message: message}} =
                 discover(python: "python3", venv: empty)

        assert message =~ "no site-packages"
      end
    end
  end

  if File.regular?(@debian_python) do
    describe "Debian's #{@debian_python}" do
      test "finds libpython in /usr/lib/<multiarch>" do
        assert {:ok, info} = discover(python: @debian_python)
        assert_usable(info)
        assert info.executable == @debian_python
        assert info.prefix == "/usr"
        assert info.version_info |> Tuple.delete_at(2) == {3, 11}
        assert info.libpython =~ ~r{^/usr/lib/[^/]+/libpython3\.11\.so}
      end
    end
  end

  for executable <- @pyenv_pythons do
    @executable executable
    test "pyenv #{executable}" do
      version = python_version(@executable)

      if Tuple.delete_at(version, 2) >= {3, 10} do
        assert {:ok, info} = discover(python: @executable)
        assert_usable(info)
        assert info.version_info == version
        assert String.starts_with?(info.libpython, Path.dirname(Path.dirname(@executable)))
      else
        assert {:error, %Py.Error{type: :unsupported_python, message: message}} =
                 discover(python: @executable)

        assert message =~ "needs Python 3.10 or newer"
      end
    end
  end

  describe "errors" do
    test "a missing path" do
      assert {:error, %Py.Error{type: :python_not_found, message: message}} =
               discover(python: "/nonexistent/bin/python3")

      assert message =~ "/nonexistent/bin/python3"
      assert message =~ "PYBRIDGE_PYTHON"
    end

    test "a name not on PATH" do
      assert {:error, %Py.Error{type: :python_not_found, message: message}} =
               discover(python: "pybridge-no-such-python3")

      assert message =~ "not found on PATH"
    end

    test "a directory" do
      assert {:error, %Py.Error{type: :python_not_found}} = discover(python: "/usr/bin")
    end

    if false_exe = System.find_executable("false") do
      test "an executable that fails" do
        assert {:error, %Py.Error{type: :python_not_found, message: message}} =
                 discover(python: unquote(false_exe))

        assert message =~ "exit status 1"
      end
    end

    if echo = System.find_executable("echo") do
      test "an executable that is not Python" do
        assert {:error, %Py.Error{type: :python_not_found, message: message}} =
                 discover(python: unquote(echo))

        assert message =~ "did not behave like Python"
      end
    end

    test "Py.Error messages name the type" do
      {:error, error} = discover(python: "/nonexistent/python3")
      assert Exception.message(error) =~ "python_not_found"
    end
  end

  describe "parse/1" do
    test "decodes pybridge:key=hex lines, keeps repeated keys in order, ignores the rest" do
      hex = &Base.encode16(&1, case: :lower)

      output =
        Enum.join(
          [
            "hello from sitecustomize",
            "pybridge:version=" <> hex.("3.12.1 (main)\n[GCC]"),
            "pybridge:site_dir=" <> hex.("/a"),
            "pybridge:site_dir=" <> hex.("/b/ü"),
            "pybridge:broken=zz",
            "pybridge:noequals",
            ""
          ],
          "\n"
        )

      assert Python.parse(output) == %{
               "version" => ["3.12.1 (main)\n[GCC]"],
               "site_dir" => ["/a", "/b/ü"]
             }
    end
  end
end

defmodule Py.Runtime.PythonConfigTest do
  # Changes the application and OS environment, so not async.
  use ExUnit.Case, async: false

  alias Py.Runtime.Python

  setup do
    saved_app = Application.get_env(:pybridge, :python)
    saved_env = System.get_env("PYBRIDGE_PYTHON")

    on_exit(fn ->
      if saved_app,
        do: Application.put_env(:pybridge, :python, saved_app),
        else: Application.delete_env(:pybridge, :python)

      if saved_env,
        do: System.put_env("PYBRIDGE_PYTHON", saved_env),
        else: System.delete_env("PYBRIDGE_PYTHON")
    end)
  end

  test "opts beat the application env, which beats PYBRIDGE_PYTHON, which beats python3" do
    Application.delete_env(:pybridge, :python)
    System.delete_env("PYBRIDGE_PYTHON")
    assert Python.requested_python([]) == "python3"

    System.put_env("PYBRIDGE_PYTHON", "from-env")
    assert Python.requested_python([]) == "from-env"

    Application.put_env(:pybridge, :python, "from-config")
    assert Python.requested_python([]) == "from-config"

    assert Python.requested_python(python: "from-opts") == "from-opts"
  end

  test "empty values count as unset" do
    Application.delete_env(:pybridge, :python)
    System.put_env("PYBRIDGE_PYTHON", "")
    assert Python.requested_python([]) == "python3"
  end

  test "PYBRIDGE_PYTHON is used by discover/1" do
    Application.delete_env(:pybridge, :python)
    System.put_env("PYBRIDGE_PYTHON", "/nonexistent/from-env/python3")

    assert {:error, %Py.Error{type: :python_not_found, message: message}} =
             Python.discover(venv: nil)

    assert message =~ "/nonexistent/from-env/python3"
  end
end
