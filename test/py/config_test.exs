defmodule Py.ConfigTest do
  # Restarts the application, so it runs alone (not async).
  use ExUnit.Case, async: false

  defp restart_with(key, value) do
    previous = Application.fetch_env(:pybridge, key)
    # Not running after an earlier failed start in the same test.
    _ = Application.stop(:pybridge)
    Application.put_env(:pybridge, key, value)

    on_exit(fn ->
      Application.stop(:pybridge)

      case previous do
        {:ok, v} -> Application.put_env(:pybridge, key, v)
        :error -> Application.delete_env(:pybridge, key)
      end

      {:ok, _} = Application.ensure_all_started(:pybridge)
    end)

    Application.ensure_all_started(:pybridge)
  end

  test "the default timeout comes from `config :pybridge, timeout:` at start" do
    assert {:ok, _} = restart_with(:timeout, 100)
    # An endless loop: only the configured timeout ends it.
    assert {:error, %Py.Error{type: :timeout, message: "Python call exceeded 100 ms"}} =
             Py.exec("while True:\n    pass\n")
  end

  test "an invalid timeout setting stops the application from starting" do
    assert {:error,
            {:pybridge, {:bad_return, {_, {:EXIT, {%ArgumentError{message: message}, _}}}}}} =
             restart_with(:timeout, :soon)

    assert message =~ "invalid :timeout setting"
  end

  test "invalid switch_interval_ms and executor_priority settings stop the start" do
    assert {:error, {:pybridge, {:bad_return, {_, {:EXIT, {%ArgumentError{message: m1}, _}}}}}} =
             restart_with(:switch_interval_ms, 0)

    assert m1 =~ "invalid :switch_interval_ms"
    Application.delete_env(:pybridge, :switch_interval_ms)

    assert {:error, {:pybridge, {:bad_return, {_, {:EXIT, {%ArgumentError{message: m2}, _}}}}}} =
             restart_with(:executor_priority, :realtime)

    assert m2 =~ "invalid :executor_priority"
  end

  # Erlang programs configure pybridge in sys.config, where strings are
  # charlists: `{pybridge, [{python, "/usr/bin/python3"}]}`.
  describe "settings given as Erlang strings (sys.config)" do
    test "python: a charlist is the executable's path" do
      exe = Py.Runtime.info().executable
      previous = Application.fetch_env(:pybridge, :python)
      Application.put_env(:pybridge, :python, String.to_charlist(exe))

      try do
        assert Py.Runtime.Python.requested_python() == exe
        assert {:ok, %Py.Runtime.Python{executable: ^exe}} = Py.Runtime.Python.discover()
      after
        case previous do
          {:ok, v} -> Application.put_env(:pybridge, :python, v)
          :error -> Application.delete_env(:pybridge, :python)
        end
      end
    end

    test "python_path: a list of charlists is a list of paths" do
      previous = Application.fetch_env(:pybridge, :python_path)
      Application.put_env(:pybridge, :python_path, [~c"/srv/a", "/srv/b"])

      try do
        assert Py.Options.setting!(:python_path, :paths, nil) == ["/srv/a", "/srv/b"]
      after
        case previous do
          {:ok, v} -> Application.put_env(:pybridge, :python_path, v)
          :error -> Application.delete_env(:pybridge, :python_path)
        end
      end
    end
  end
end
