defmodule Py.Runtime do
  @moduledoc """
  Starts the embedded Python interpreter.

  `start/1` runs once when the `:pybridge` application starts:

    1. `Py.Runtime.Python.discover/1` picks the Python and finds its libpython;
    2. the loader NIF (`priv/native/pybridge_loader.so`) `dlopen`s that
       libpython with `RTLD_GLOBAL`, so that the NIF and Python's own C
       extension modules resolve their `Py*` symbols against it;
    3. the pybridge NIF (`priv/native/pybridge.so`) is loaded;
    4. the interpreter is initialised with the executable as its program name,
       the venv's site-packages and any extra `sys.path` entries.

  A VM holds at most one interpreter, and once libpython is loaded it cannot be
  swapped for another: calling `start/1` again is `:ok` for the same Python and
  an error for a different one.

  ## Configuration

      config :pybridge,
        python: "/usr/bin/python3.11",   # else PYBRIDGE_PYTHON, else python3 on PATH
        venv: "/path/to/venv",           # site-packages to add
        python_path: ["/my/modules"],    # prepended to sys.path
        switch_interval_ms: 1,           # sys.setswitchinterval, see below
        executor_priority: :batch,       # or :normal, see below
        sigchld: :auto,                  # or :default, :keep, see below
        max_result_items: 10_000_000     # see below

  `:switch_interval_ms` (default 1, Python's own default is 5) is how long a
  Python thread may keep the GIL while another waits. pybridge lowers it
  because with several threads running CPU-bound Python, BEAM processes were
  measurably late (p99 of a 1 ms sleep 4 ms instead of 2 ms at 5 ms) — see
  guides/architecture.md.

  `:executor_priority` (default `:batch`): on Linux, the threads that run
  Python are scheduled as low-priority batch work (`SCHED_BATCH`, nice 10),
  so CPU-bound Python yields the CPU to the BEAM's schedulers. `:normal`
  leaves them at the priority of the rest of the VM.

  `:sigchld` (default `:auto`): the BEAM ignores `SIGCHLD`, so the kernel
  reaps every child process at once and Python's `subprocess` and
  `os.system` read exit status 0 for children that failed. `:default`
  restores the signal's default disposition at start, so that exit statuses
  are true (the BEAM's ports and `System.cmd` do not rely on it). `:keep`
  leaves the VM's setting. `:auto` is `:default`, except when the VM runs as
  PID 1 (a container without an init), where ignoring `SIGCHLD` is what
  reaps orphaned processes: there it is `:keep`, with a warning in the log.
  See guides/architecture.md ("Subprocesses").

  `:max_result_items` (default 10,000,000): the most items (values, keys and
  container elements, counted over the whole result) one Python result may
  convert into. A bigger result is a `:conversion` error rather than a VM
  killed for memory: a runaway result of a hundred million items would need
  gigabytes on both sides. Raise it if your results are legitimately bigger.
  See the type conversion guide.

  See `Py.Runtime.Python` for all discovery options.
  """

  alias Py.Options
  alias Py.Runtime.Python

  require Logger

  @info_key {__MODULE__, :info}
  @request_key {__MODULE__, :request}

  @start_schema [python: :path, venv: :path, libpython: :path, python_path: :paths]
  # The options of start/1 that pick the Python (Python.discover/1's).
  @discover_keys [:python, :venv, :libpython]
  @default_switch_interval_ms Py.Limits.default_switch_interval_ms()
  @default_max_result_items Py.Limits.default_max_result_items()
  @priorities {:in, [:batch, :normal]}

  @doc """
  Loads and initialises Python. Idempotent.

  Options: `:python`, `:venv`, `:libpython` (see `Py.Runtime.Python.discover/1`)
  and `:python_path` (a list of directories prepended to `sys.path`), each
  defaulting to the `:pybridge` application environment.
  """
  @spec start(keyword) :: :ok | {:error, Py.Error.t()}
  def start(opts \\ []) do
    opts = Options.validate!(opts, @start_schema, "Py.Runtime.start/1")
    # Serialises concurrent starts within this node.
    :global.trans({__MODULE__, self()}, fn -> do_start(opts) end, [node()])
  end

  @doc """
  What `start/1` found out about the running Python, or `nil` before it ran.
  """
  @spec info() :: Python.t() | nil
  def info, do: :persistent_term.get(@info_key, nil)

  @doc """
  True once the interpreter has been started in this VM.
  """
  @spec started?() :: boolean
  def started?, do: info() != nil

  defp do_start(opts) do
    request = request(opts)
    # Checked on every start, also when Python already runs: a bad setting
    # must not pass silently because the interpreter was started earlier.
    settings = settings!()

    case info() do
      nil ->
        first_start(opts, request, settings)

      running ->
        if :persistent_term.get(@request_key, nil) == request do
          :ok
        else
          check_same_python(running, opts)
        end
    end
  end

  defp first_start(opts, request, settings) do
    with {:ok, python} <- Python.discover(Keyword.take(opts, @discover_keys)),
         {:ok, priv} <- priv_dir(),
         :ok <- load_loader(priv),
         :ok <- load_libpython(python),
         :ok <- load_nif(priv, python),
         :ok <- init(python, opts, settings) do
      :persistent_term.put(@request_key, request)
      :persistent_term.put(@info_key, python)
      :ok
    end
  end

  defp check_same_python(running, opts) do
    with {:ok, wanted} <- Python.discover(Keyword.take(opts, @discover_keys)) do
      if wanted.executable == running.executable and wanted.libpython == running.libpython and
           wanted.site_dirs == running.site_dirs do
        :ok
      else
        error(:already_started, """
        Python #{running.executable} (#{format(running)}) is already running in this VM, \
        and a running VM cannot switch to #{wanted.executable} (#{format(wanted)}): \
        libpython stays loaded for the life of the OS process. Restart the VM with the \
        new :python/:venv configuration instead.\
        """)
      end
    end
  end

  defp format(%Python{version_info: {a, b, c}, venv: venv}) do
    "Python #{a}.#{b}.#{c}" <> if(venv, do: ", venv #{venv}", else: "")
  end

  # The parts of the configuration that select the Python, as given.
  defp request(opts) do
    for key <- [:python, :venv, :libpython, :python_path] do
      {key, Keyword.get_lazy(opts, key, fn -> Application.get_env(:pybridge, key) end)}
    end ++
      [env: Enum.map(~w(PYBRIDGE_PYTHON PYBRIDGE_LIBPYTHON), &System.get_env/1)]
  end

  ## Steps

  defp priv_dir do
    case :code.priv_dir(:pybridge) do
      {:error, reason} ->
        error(:nif_not_found, "cannot locate the :pybridge priv directory (#{inspect(reason)})")

      dir ->
        {:ok, List.to_string(dir)}
    end
  end

  defp load_loader(priv) do
    with {:ok, path} <- nif_path(priv, "pybridge_loader", nil) do
      case Py.Native.Loader.load(path) do
        :ok -> :ok
        {:error, text} -> error(:nif_load_failed, "cannot load #{path}.so: #{text}")
      end
    end
  end

  defp load_libpython(%Python{libpython: libpython} = python) do
    case Py.Native.Loader.load_library(libpython) do
      :ok ->
        :ok

      {:error, text} ->
        error(
          :libpython_load_failed,
          "cannot load #{libpython} (libpython of #{python.executable}): #{text}"
        )
    end
  end

  defp load_nif(priv, python) do
    with {:ok, path} <- nif_path(priv, Python.nif_name(python), python) do
      case Py.Native.load(path) do
        :ok -> :ok
        {:error, text} -> error(:nif_load_failed, "cannot load #{path}.so: #{text}")
      end
    end
  end

  # The interpreter settings of the application environment, validated.
  defp settings! do
    switch_interval_ms =
      Options.setting!(:switch_interval_ms, :positive_number, @default_switch_interval_ms)

    %{
      switch_interval: switch_interval_ms / 1000,
      executor_priority: Options.setting!(:executor_priority, @priorities, :batch),
      restore_sigchld:
        restore_sigchld?(Options.setting!(:sigchld, {:in, [:auto, :default, :keep]}, :auto)),
      max_result_items:
        Options.setting!(:max_result_items, :pos_integer, @default_max_result_items)
    }
  end

  defp restore_sigchld?(:default), do: true
  defp restore_sigchld?(:keep), do: false

  defp restore_sigchld?(:auto) do
    if System.pid() == "1" do
      Logger.warning(
        "pybridge: the VM runs as PID 1, so SIGCHLD stays ignored (that is what reaps " <>
          "orphaned processes): Python's subprocess and os.system will read exit status 0 " <>
          "for failing children. Run the VM under an init (docker run --init, tini) and " <>
          "set `config :pybridge, sigchld: :default`, or set `sigchld: :keep` to silence this."
      )

      false
    else
      true
    end
  end

  defp init(python, opts, settings) do
    python_path =
      opts
      |> Options.setting!(:python_path, :paths, nil)
      |> List.wrap()
      |> Enum.map(&Path.expand/1)

    config =
      Map.merge(settings, %{
        program: python.executable,
        site_dirs: python.site_dirs,
        python_path: python_path
      })

    case Py.Native.init(config) do
      :ok ->
        :ok

      {:error, text} ->
        error(:init_failed, "cannot start Python #{python.executable}: #{text}")
    end
  end

  @doc false
  # The path of NIF `name` in `priv` for `python`, without the extension
  # (:erlang.load_nif/2 adds .so), or an error saying how to build it.
  # Public for the tests.
  @spec nif_path(Path.t(), String.t(), Python.t() | nil) ::
          {:ok, Path.t()} | {:error, Py.Error.t()}
  def nif_path(priv, name, python) do
    base = Path.join([priv, "native", name])

    cond do
      File.regular?(base <> ".so") ->
        {:ok, base}

      match?(%Python{free_threaded: true}, python) ->
        error(:nif_not_found, """
        #{base}.so is missing: #{python.executable} is a free-threaded Python, which needs \
        a NIF built for its version. Build it with \
        `mix compile.pybridge --python #{python.executable}`.\
        """)

      true ->
        error(:nif_not_found, """
        #{base}.so is missing: pybridge's native libraries were not built. \
        Run `mix compile` (it needs cargo, see Mix.Tasks.Compile.Pybridge).\
        """)
    end
  end

  defp error(type, message), do: {:error, %Py.Error{type: type, message: message}}
end
