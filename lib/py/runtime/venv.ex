defmodule Py.Runtime.Venv do
  @moduledoc """
  Virtualenvs switched at run time: `Py.activate_venv/1`,
  `Py.deactivate_venv/0`, `Py.venv_info/0` and `Py.ensure_venv/3`.

  `config :pybridge, venv:` picks a venv once, when Python starts. A running
  VM can also put another venv's packages on `sys.path` without a restart,
  for instance a venv a deployment step just made. Activating one:

    1. asks the running Python's executable (once, in a subprocess, as at
       start-up: `Py.Runtime.Python.discover/1`) where the venv's
       site-packages are for this Python version, so a venv made by another
       Python is refused with `:venv_not_found` and the same hint as at
       start;
    2. in every interpreter (the main one and each sub-interpreter
       context's), adds those directories with `site.addsitedir` (their
       `.pth` files run) and moves what that added to the front of
       `sys.path`, so the venv's packages win over the interpreter's own;
       sets `sys.prefix` and `sys.exec_prefix` to the venv;
    3. records the venv, so sub-interpreter contexts started later get it too.

  One venv is active at a time: activating another deactivates the first.
  Deactivating removes the entries again and restores `sys.prefix`. Modules
  already imported from a venv stay imported (Python cannot unload them):
  deactivate or switch before importing, or restart the VM. The venv of
  `config :pybridge, venv:` is part of the interpreter and stays.
  """

  alias Py.Options
  alias Py.Runtime.Python

  @key {__MODULE__, :active}

  @typedoc """
  What `info/0` returns: whether a venv is active, its path and
  site-packages directories (`nil` and `[]` when none is), the main
  interpreter's `sys.path`, and the venv configured at start (`nil` when none).
  """
  @type info :: %{
          active: boolean,
          venv_path: String.t() | nil,
          site_packages: [String.t()],
          sys_path: [String.t()],
          configured: String.t() | nil
        }

  @ensure_schema [installer: {:in, [:pip, :uv]}, force: {:in, [true, false]}]

  @doc """
  Activates the venv at `path` in every interpreter. See the moduledoc.

  Returns `:ok`, or `{:error, %Py.Error{type: :venv_not_found}}` when `path`
  is not a venv with site-packages for the running Python (nothing changes
  then), or `{:error, %Py.Error{type: :not_started}}`.

  ## Example

      :ok = Py.activate_venv("/srv/app/.venv")
      {:ok, %{active: true, venv_path: "/srv/app/.venv"}} = Py.venv_info()
  """
  @spec activate(Path.t()) :: :ok | {:error, Py.Error.t()}
  def activate(path) do
    path = path!(path, "Py.activate_venv/1")

    with {:ok, running} <- running(),
         {:ok, %Python{venv: venv, site_dirs: dirs}} <-
           Python.discover(python: running.executable, libpython: running.libpython, venv: path) do
      transaction(fn ->
        case Py.Imports.each_interpreter(&activate_in(&1, venv, dirs)) do
          :ok ->
            :persistent_term.put(@key, %{path: venv, site_packages: dirs})
            :ok

          {:error, _} = error ->
            # Leave no interpreter half switched.
            Py.Imports.each_interpreter(&deactivate_in/1)
            :persistent_term.erase(@key)
            error
        end
      end)
    end
  end

  @doc """
  Deactivates the venv `activate/1` activated, in every interpreter. `:ok`
  also when none was active.

  ## Example

      :ok = Py.deactivate_venv()
      {:ok, %{active: false}} = Py.venv_info()
  """
  @spec deactivate() :: :ok | {:error, Py.Error.t()}
  def deactivate do
    with {:ok, _} <- running() do
      transaction(fn ->
        :persistent_term.erase(@key)
        Py.Imports.each_interpreter(&deactivate_in/1)
      end)
    end
  end

  @doc """
  The venv activated at run time, the main interpreter's `sys.path` and the
  venv configured at start (see `t:info/0`).

  ## Example

      {:ok, %{active: false, venv_path: nil}} = Py.venv_info()
  """
  @spec info() :: {:ok, info} | {:error, Py.Error.t()}
  def info do
    with {:ok, running} <- running(),
         {:ok, %{"sys_path" => sys_path}} <- in_first(&Py.call(&1, :pybridge, :venv_info)) do
      active = active()

      {:ok,
       %{
         active: active != nil,
         venv_path: active && active.path,
         site_packages: if(active, do: active.site_packages, else: []),
         sys_path: sys_path,
         configured: running.venv
       }}
    end
  end

  @doc """
  Makes sure a venv exists at `path` with `requirements` installed, then
  activates it.

  When `path` holds no venv yet (or with `force: true`), it is created with
  the running Python (`python -m venv`) and `requirements` (a requirements
  file's path, or a list of requirement strings such as `["numpy>=2"]`) are
  installed into it with its pip (`installer: :pip`, the default) or with
  `uv pip` (`installer: :uv`, needs `uv` on `PATH`). An existing venv is
  activated as it is. Creating and installing run in the calling process
  and can take minutes; installing needs whatever index pip is set up for.

  Returns `:ok`, or `{:error, %Py.Error{type: :venv_failed}}` with the
  command's output when creating or installing failed.

  ## Example

      :ok = Py.ensure_venv("/srv/app/.venv", "/srv/app/requirements.txt")
  """
  @spec ensure(Path.t(), Path.t() | [String.t()], keyword) :: :ok | {:error, Py.Error.t()}
  def ensure(path, requirements \\ [], opts \\ []) do
    path = path |> path!("Py.ensure_venv/3") |> Path.expand()
    requirements = requirements!(requirements)
    opts = Options.validate!(opts, @ensure_schema, "Py.ensure_venv/3")

    with {:ok, running} <- running() do
      python = Path.join([path, "bin", "python"])

      if Keyword.get(opts, :force, false) or not File.exists?(python) do
        with :ok <- run(running.executable, ["-m", "venv", "--clear", path]),
             :ok <- install(python, requirements, Keyword.get(opts, :installer, :pip)) do
          activate(path)
        end
      else
        activate(path)
      end
    end
  end

  @doc false
  # The venv activated at run time, or nil.
  @spec active() :: %{path: String.t(), site_packages: [String.t()]} | nil
  def active, do: :persistent_term.get(@key, nil)

  @doc false
  # Called for a new sub-interpreter context (Py.Imports.apply_to/1).
  @spec apply_to(Py.Context.t()) :: :ok | {:error, Py.Error.t()}
  def apply_to(ctx) do
    case active() do
      nil -> :ok
      %{path: path, site_packages: dirs} -> with {:ok, _} <- activate_in(ctx, path, dirs), do: :ok
    end
  end

  defp activate_in(ctx, path, dirs), do: Py.call(ctx, :pybridge, :activate_venv, [path, dirs])

  defp deactivate_in(ctx), do: Py.call(ctx, :pybridge, :deactivate_venv)

  defp in_first(fun) do
    case Py.Context.all() |> Enum.sort_by(&(Py.Context.info(&1).mode != :main)) do
      [ctx | _] -> fun.(ctx)
      [] -> {:error, %Py.Error{type: :not_started, message: "no context is running"}}
    end
  end

  defp running do
    case Py.Runtime.info() do
      nil -> {:error, %Py.Error{type: :not_started, message: "Python is not running"}}
      running -> {:ok, running}
    end
  end

  defp transaction(fun), do: :global.trans({__MODULE__, self()}, fun, [node()])

  defp install(_python, [], _installer), do: :ok

  defp install(python, requirements, :pip),
    do: run(python, ["-m", "pip", "install" | requirement_args(requirements)])

  defp install(python, requirements, :uv) do
    case System.find_executable("uv") do
      nil ->
        {:error, %Py.Error{type: :venv_failed, message: "installer: :uv, but uv is not on PATH"}}

      uv ->
        run(uv, ["pip", "install", "--python", python | requirement_args(requirements)])
    end
  end

  defp requirement_args({:file, file}), do: ["-r", file]
  defp requirement_args(list) when is_list(list), do: list

  defp run(command, args) do
    case System.cmd(command, args, stderr_to_stdout: true) do
      {_, 0} ->
        :ok

      {output, status} ->
        {:error,
         %Py.Error{
           type: :venv_failed,
           message:
             "#{Enum.join([command | args], " ")} exited with status #{status}:\n" <>
               String.slice(output, -4000, 4000)
         }}
    end
  catch
    :error, reason ->
      {:error,
       %Py.Error{type: :venv_failed, message: "cannot run #{command}: #{inspect(reason)}"}}
  end

  defp requirements!(list) when is_list(list) do
    if Enum.all?(list, &(is_binary(&1) and &1 != "")),
      do: list,
      else: invalid_requirements!(list)
  end

  defp requirements!(file) when is_binary(file) and file != "", do: {:file, Path.expand(file)}
  defp requirements!(other), do: invalid_requirements!(other)

  defp invalid_requirements!(other) do
    Options.invalid!(
      "requirements for Py.ensure_venv/3",
      "a requirements file's path or a list of requirement strings",
      other
    )
  end

  defp path!(path, _where) when is_binary(path) and path != "", do: path

  defp path!(path, where) when is_list(path) do
    case :unicode.characters_to_binary(path) do
      binary when is_binary(binary) and binary != "" -> binary
      _ -> Options.invalid!("path for #{where}", "a non-empty path as a string", path)
    end
  end

  defp path!(path, where),
    do: Options.invalid!("path for #{where}", "a non-empty path as a string", path)
end
