defmodule Py.Imports do
  @moduledoc """
  Modules to import, and directories to put on `sys.path`, in every
  interpreter: the running ones now, and the sub-interpreters of contexts
  started later.

  Python imports a module on the first call that names it, so nothing here is
  needed for calls to work. It is for warming up (an import that takes
  seconds happens at start-up instead of in the first request) and for
  sub-interpreter contexts, which each import their modules and have their
  own `sys.path`. Main-interpreter contexts share one `sys.modules` and one
  `sys.path`, so one import serves them all.

  The registry is global to the node; registrations are meant for start-up
  (each one rewrites a `:persistent_term`). Clearing it does not unload
  anything.

  ## Example

      :ok = Py.Imports.add_path("/srv/app/python")
      :ok = Py.Imports.ensure(:json)
      true = Py.Imports.imported?(:json)
      [{"json", :all}] = Py.Imports.list()
  """

  alias Py.Options

  @key {__MODULE__, :registry}

  @typedoc "A registered import: a module, and a function of it or `:all`."
  @type entry :: {String.t(), String.t() | :all}

  @doc """
  Imports `module` in every interpreter and registers it, with `function`
  (a name, recorded only) or `:all`, for the sub-interpreter contexts started
  later. Returns `:ok`, or the import's error, in which case nothing is
  registered. `__main__` is refused: it is each process's own namespace.

  ## Example

      :ok = Py.Imports.ensure(:json, :dumps)
      {:error, %Py.Error{type: "ModuleNotFoundError"}} = Py.Imports.ensure(:no_such_module)
  """
  @spec ensure(Py.name(), Py.name() | :all) :: :ok | {:error, Py.Error.t()}
  def ensure(module, function \\ :all) do
    module = Options.value!(module, :module, "module for Py.Imports.ensure/2")
    function = function!(function, "Py.Imports.ensure/2")

    if module == "__main__" do
      raise ArgumentError,
            "Py.Imports.ensure/2: __main__ is each process's own namespace and cannot be imported"
    end

    with :ok <- each_interpreter(&import_module(&1, module)) do
      update(fn %{imports: imports} = reg ->
        %{reg | imports: Enum.uniq(imports ++ [{module, function}])}
      end)
    end
  end

  @doc """
  Whether `module` is registered (with any function when `function` is
  `:any`, else with `function` or `:all`).

  ## Example

      false = Py.Imports.imported?(:no_such_module)
  """
  @spec imported?(Py.name(), Py.name() | :any) :: boolean
  def imported?(module, function \\ :any) do
    module = Options.value!(module, :module, "module for Py.Imports.imported?/2")
    imports = registry().imports

    case function do
      :any ->
        List.keymember?(imports, module, 0)

      function ->
        function = function!(function, "Py.Imports.imported?/2")
        {module, :all} in imports or {module, function} in imports
    end
  end

  @doc """
  The registered imports, in the order they were registered.

  ## Example

      :ok = Py.Imports.ensure(:math, :sqrt)
      true = {"math", "sqrt"} in Py.Imports.list()
  """
  @spec list() :: [entry]
  def list, do: registry().imports

  @doc """
  Forgets every registered import. Modules already imported stay imported.

  ## Example

      :ok = Py.Imports.clear()
      [] = Py.Imports.list()
  """
  @spec clear() :: :ok
  def clear, do: update(&%{&1 | imports: []})

  @doc """
  Appends `path` to `sys.path` in every interpreter (where it is not there
  yet) and registers it for the sub-interpreter contexts started later.
  Returns `:ok` or the first error.

  ## Example

      :ok = Py.Imports.add_path("/srv/app/python")
      true = Py.Imports.path_added?("/srv/app/python")
  """
  @spec add_path(Path.t()) :: :ok | {:error, Py.Error.t()}
  def add_path(path) do
    path = path!(path)

    with :ok <- each_interpreter(&append_path(&1, path)) do
      update(fn %{paths: paths} = reg -> %{reg | paths: Enum.uniq(paths ++ [path])} end)
    end
  end

  @doc """
  Whether `path` was added with `add_path/1`.

  ## Example

      false = Py.Imports.path_added?("/nowhere")
  """
  @spec path_added?(Path.t()) :: boolean
  def path_added?(path), do: path!(path) in registry().paths

  @doc """
  The paths added with `add_path/1`, in order.

  ## Example

      :ok = Py.Imports.add_path("/srv/app/python")
      true = "/srv/app/python" in Py.Imports.paths()
  """
  @spec paths() :: [String.t()]
  def paths, do: registry().paths

  @doc """
  Forgets the added paths. `sys.path` of the running interpreters keeps them.

  ## Example

      :ok = Py.Imports.clear_paths()
      [] = Py.Imports.paths()
  """
  @spec clear_paths() :: :ok
  def clear_paths, do: update(&%{&1 | paths: []})

  @doc "`Py.reload/1`: see there."
  @spec reload(Py.name()) :: :ok | {:error, Py.Error.t()}
  def reload(module) do
    module = Options.value!(module, :module, "module for Py.reload/1")
    timeout = Py.default_timeout()
    contexts = Enum.flat_map(Py.Context.pools(), &Py.Context.contexts/1)
    contexts = contexts ++ Py.Context.Registry.dedicated()

    Enum.reduce_while(contexts, :ok, fn ctx, :ok ->
      case Py.Call.run(ctx, false, {:reload, module}, timeout) do
        # A dedicated context closed since it was listed has nothing to reload.
        {:error, %Py.Error{type: :closed}} -> {:cont, :ok}
        {:error, _} = error -> {:halt, error}
        _ -> {:cont, :ok}
      end
    end)
  end

  @doc false
  # Called by whoever creates a context, before handing it out: a new
  # sub-interpreter gets the registered paths and imports. Main-interpreter
  # contexts have them already. Returns :ok or the first error. The venv
  # activated at run time (Py.Runtime.Venv) comes first: the imports may
  # need its packages.
  @spec apply_to(Py.Context.t()) :: :ok | {:error, Py.Error.t()}
  def apply_to(ctx) do
    case {registry(), Py.Runtime.Venv.active()} do
      {%{imports: [], paths: []}, nil} ->
        :ok

      {%{imports: imports, paths: paths}, _venv} ->
        if Py.Context.info(ctx).mode == :subinterpreter do
          with :ok <- Py.Runtime.Venv.apply_to(ctx),
               :ok <- each(paths, &append_path(ctx, &1)) do
            each(Enum.uniq(Enum.map(imports, &elem(&1, 0))), &import_module(ctx, &1))
          end
        else
          :ok
        end
    end
  end

  @doc false
  # Runs `fun` with one context per interpreter: the first main-interpreter
  # context, and every sub-interpreter context. :ok or the first error.
  @spec each_interpreter((Py.Context.t() -> term)) :: :ok | {:error, Py.Error.t()}
  def each_interpreter(fun) do
    {main, sub} = Enum.split_with(Py.Context.all(), &(Py.Context.info(&1).mode == :main))
    each(Enum.take(main, 1) ++ sub, fun)
  end

  defp each(items, fun) do
    Enum.reduce_while(items, :ok, fn item, :ok ->
      case fun.(item) do
        {:error, _} = error -> {:halt, error}
        _ -> {:cont, :ok}
      end
    end)
  end

  # builtins.exec with a fresh globals dict: no process namespace is made
  # (the caller may be a long-lived process) and no handle comes back.
  defp import_module(ctx, module) do
    Py.call(ctx, :builtins, :exec, ["__import__('importlib').import_module(m)", %{"m" => module}])
  end

  defp append_path(ctx, path) do
    code = "import sys\nif p not in sys.path:\n    sys.path.append(p)\n"
    Py.call(ctx, :builtins, :exec, [code, %{"p" => path}])
  end

  defp registry, do: :persistent_term.get(@key, %{imports: [], paths: []})

  defp update(fun) do
    :global.trans(
      {@key, self()},
      fn -> :persistent_term.put(@key, fun.(registry())) end,
      [node()]
    )

    :ok
  end

  defp function!(:all, _where), do: :all

  defp function!(function, where),
    do: Options.value!(function, {:name, "function"}, "function for #{where}")

  defp path!(path) when is_binary(path) and path != "", do: path

  defp path!(path) when is_list(path) do
    case :unicode.characters_to_binary(path) do
      binary when is_binary(binary) and binary != "" -> binary
      _ -> Options.invalid!("path", "a non-empty directory path as a string", path)
    end
  end

  defp path!(path), do: Options.invalid!("path", "a non-empty directory path as a string", path)
end
