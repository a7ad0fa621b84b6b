defmodule Py.Native.Loader do
  @moduledoc false
  # A tiny NIF (native/pybridge_loader) whose only job is to dlopen libpython
  # with RTLD_GLOBAL before Py.Native is loaded. The BEAM opens NIF libraries
  # with RTLD_LOCAL, and pybridge.so leaves every Python symbol unresolved
  # (PyO3 `extension-module`), so libpython has to be made globally visible
  # first; C extension modules that Python loads later need the same.
  #
  # Loading is explicit (not @on_load), see Py.Runtime.

  @doc false
  @spec load(Path.t()) :: :ok | {:error, String.t()}
  def load(path) do
    case :erlang.load_nif(String.to_charlist(path), 0) do
      :ok -> :ok
      {:error, {:reload, _}} -> :ok
      {:error, {:upgrade, _}} -> :ok
      {:error, {_reason, text}} -> {:error, List.to_string(text)}
    end
  end

  @doc false
  # dlopen(path, RTLD_NOW | RTLD_GLOBAL); the handle is kept open forever.
  @spec load_library(binary) :: :ok | {:error, String.t()}
  def load_library(_path), do: :erlang.nif_error(:pybridge_loader_not_loaded)
end
