defmodule Py.Runtime.Python do
  @moduledoc """
  Finds the Python installation pybridge embeds.

  pybridge does not link against a particular libpython at build time: its NIF
  is compiled against CPython's stable ABI (abi3, Python 3.10+) and leaves the
  Python symbols unresolved, so one build works with any CPython >= 3.10
  (free-threaded builds, which have no stable ABI, get a build of their own:
  see `nif_name/1`). At startup the Python to use has to be picked, and the
  embedded interpreter must be set up the way that Python's own executable
  would be. This module finds out everything needed for that by running the
  chosen executable once:

    * `sys.executable` – passed to the interpreter as its program name, from
      which CPython computes `sys.prefix` and the standard library location;
    * `sys.prefix`, `sys.base_prefix`, `sys.exec_prefix`, `sys.version` and
      `sys.version_info` – for diagnostics and the version check;
    * the shared libpython, which `Py.Native.Loader` `dlopen`s with
      `RTLD_GLOBAL` before the NIF is loaded. Asking the executable is the only
      reliable way to find it: it lives in `sysconfig`'s `LIBDIR` (pyenv,
      python.org, conda), `/usr/lib/<multiarch>` (Debian, Ubuntu), a framework
      (macOS), ...;
    * the site-packages directories of a virtualenv, so packages installed in
      it can be imported.

  The script prints one `pybridge:key=hex` line per value (the hex-encoded
  bytes of the value), a format that needs no JSON library, survives newlines
  in `sys.version` and non-UTF-8 paths, and ignores anything else a
  `sitecustomize` might print.

  ## Choosing the executable

  The first of these that is set wins:

    1. the `:python` option of `discover/1`
    2. `config :pybridge, python: "/path/to/python3"`
    3. the `PYBRIDGE_PYTHON` environment variable
    4. `python3` on `PATH`

  A bare name is looked up on `PATH`; anything containing `/` is a path.

  ## Virtualenvs

  With `venv: path` (or `config :pybridge, venv: path`), the venv's
  site-packages directories are returned in `:site_dirs`. When the executable
  is itself a venv's Python (`sys.prefix != sys.base_prefix`) and no venv is
  given, that venv is used.

  ## libpython

  `libpython: path` (or `config :pybridge, libpython:` or `PYBRIDGE_LIBPYTHON`)
  overrides the search for the shared library.
  """

  @enforce_keys [:executable, :version_info, :libpython]
  defstruct [
    :executable,
    :prefix,
    :base_prefix,
    :exec_prefix,
    :version,
    :version_info,
    :libpython,
    :venv,
    free_threaded: false,
    site_dirs: []
  ]

  @type t :: %__MODULE__{
          executable: String.t(),
          prefix: String.t(),
          base_prefix: String.t(),
          exec_prefix: String.t(),
          version: String.t(),
          version_info: {non_neg_integer, non_neg_integer, non_neg_integer},
          libpython: String.t(),
          venv: String.t() | nil,
          free_threaded: boolean,
          site_dirs: [String.t()]
        }

  @type option ::
          {:python, String.t() | nil}
          | {:venv, Path.t() | nil}
          | {:libpython, Path.t() | nil}

  @discover_schema [python: :path, venv: :path, libpython: :path]

  # The oldest CPython embedded: the stable ABI the NIF is built against.
  @min_version {3, 10}
  # The oldest free-threaded CPython embedded (PyO3 supports none older).
  @min_free_threaded_version {3, 13}

  # Runs on any Python from 2.7 on, so that an old one can be reported as
  # unsupported rather than failing with a syntax error.
  @script ~S"""
  import sys, os, binascii
  try:
      import sysconfig
      cv = sysconfig.get_config_var
  except ImportError:
      sysconfig = None
      cv = lambda name: None

  def out(key, value):
      if value is None:
          return
      if not isinstance(value, bytes):
          value = str(value)
          try:
              value = os.fsencode(value)
          except AttributeError:
              value = value.encode("utf-8")
      sys.stdout.write("pybridge:" + key + "=" + binascii.hexlify(value).decode("ascii") + "\n")

  base_prefix = getattr(sys, "base_prefix", sys.prefix)
  out("executable", sys.executable)
  out("prefix", sys.prefix)
  out("base_prefix", base_prefix)
  out("exec_prefix", sys.exec_prefix)
  out("version", sys.version)
  out("version_info", "%d.%d.%d" % tuple(sys.version_info[:3]))
  impl = getattr(sys, "implementation", None)
  out("implementation", impl.name if impl else "cpython")
  out("gil_disabled", cv("Py_GIL_DISABLED") or 0)
  out("enable_shared", cv("Py_ENABLE_SHARED") or 0)
  out("framework", cv("PYTHONFRAMEWORK") or "")

  names = []
  for name in (cv("INSTSONAME"), cv("LDLIBRARY")):
      if name and not name.endswith(".a") and name not in names:
          names.append(name)
  version = cv("VERSION") or "%d.%d" % tuple(sys.version_info[:2])
  abiflags = cv("ABIFLAGS") or getattr(sys, "abiflags", "")
  for ext in (".so.1.0", ".so", ".dylib"):
      name = "libpython" + version + abiflags + ext
      if name not in names:
          names.append(name)

  dirs = [cv("LIBDIR"), cv("LIBPL")]
  if cv("MULTIARCH"):
      dirs.append(os.path.join("/usr/lib", cv("MULTIARCH")))
  dirs.append(os.path.join(base_prefix, "lib"))

  if cv("PYTHONFRAMEWORK") and cv("PYTHONFRAMEWORKPREFIX") and cv("LDLIBRARY"):
      out("libpython_candidate", os.path.join(cv("PYTHONFRAMEWORKPREFIX"), cv("LDLIBRARY")))
  for d in dirs:
      if d:
          for name in names:
              out("libpython_candidate", os.path.join(d, name))

  venv = sys.argv[1] if len(sys.argv) > 1 else None
  if venv is None and sys.prefix != base_prefix:
      venv = sys.prefix
  if venv is not None:
      out("venv", venv)
      if sysconfig is not None:
          variables = {"base": venv, "platbase": venv, "installed_base": venv, "installed_platbase": venv}
          schemes = sysconfig.get_scheme_names()
          for scheme in ("venv", "posix_venv", "nt_venv", "posix_prefix", "nt"):
              if scheme in schemes:
                  for key in ("purelib", "platlib"):
                      try:
                          out("site_dir", sysconfig.get_path(key, scheme, vars=variables))
                      except Exception:
                          pass
      try:
          import site
          for d in site.getsitepackages([venv]):
              out("site_dir", d)
      except Exception:
          pass
  """

  @doc """
  Finds and inspects the Python to embed.

  Options (each defaults to the application environment, see the moduledoc):

    * `:python` – executable name or path
    * `:venv` – a virtualenv whose site-packages to add; `nil` for none
    * `:libpython` – path of the shared libpython, skipping the search

  Returns `{:error, %Py.Error{}}` with `type`:

    * `:python_not_found` – the executable is missing or does not run
    * `:unsupported_python` – not CPython >= 3.10 (>= 3.13 when free-threaded)
    * `:libpython_not_found` – no shared libpython (e.g. a static build)
    * `:venv_not_found` – the venv has no site-packages for this Python
  """
  @spec discover([option]) :: {:ok, t} | {:error, Py.Error.t()}
  def discover(opts \\ []) do
    opts = Py.Options.validate!(opts, @discover_schema, "Py.Runtime.Python.discover/1")

    with {:ok, path} <- resolve(requested_python(opts)),
         venv = option(opts, :venv, nil),
         {:ok, values} <- inspect_python(path, venv),
         {:ok, version_info} <- check_version(path, values),
         {:ok, libpython} <- find_libpython(path, version_info, values, opts),
         {:ok, venv, site_dirs} <- site_dirs(version_info, values) do
      {:ok,
       %__MODULE__{
         executable: non_empty(one(values, "executable")) || path,
         prefix: one(values, "prefix"),
         base_prefix: one(values, "base_prefix"),
         exec_prefix: one(values, "exec_prefix"),
         version: one(values, "version"),
         version_info: version_info,
         libpython: libpython,
         venv: venv,
         free_threaded: free_threaded?(values),
         site_dirs: site_dirs
       }}
    end
  end

  @doc """
  The executable `discover/1` would run, before resolving it on `PATH`.
  """
  @spec requested_python([option]) :: String.t()
  def requested_python(opts \\ []) do
    option(opts, :python, "PYBRIDGE_PYTHON") || "python3"
  end

  @doc """
  The name of the NIF library (in `priv/native/`, without `.so`) that
  embeds this Python.

  GIL builds of CPython share one library built against the stable ABI.
  Free-threaded builds have no stable ABI before 3.15, so each minor version
  gets its own library, built by `mix compile.pybridge --python PATH` (see
  `Mix.Tasks.Compile.Pybridge`): `pybridge_cp314t` for 3.14t.

      iex> Py.Runtime.Python.nif_name(%Py.Runtime.Python{executable: "python3.14t",
      ...>   version_info: {3, 14, 4}, libpython: "libpython3.14t.so", free_threaded: true})
      "pybridge_cp314t"
  """
  @spec nif_name(t) :: String.t()
  def nif_name(%__MODULE__{free_threaded: false}), do: "pybridge"

  def nif_name(%__MODULE__{free_threaded: true, version_info: {major, minor, _}}),
    do: "pybridge_cp#{major}#{minor}t"

  defp free_threaded?(values), do: one(values, "gil_disabled") not in [nil, "0"]

  ## Steps

  defp resolve(spec) do
    found =
      if String.contains?(spec, "/") do
        path = Path.expand(spec)
        if File.regular?(path), do: System.find_executable(path)
      else
        System.find_executable(spec)
      end

    if found do
      {:ok, found}
    else
      error(:python_not_found, """
      Python executable #{inspect(spec)} not found#{if String.contains?(spec, "/"), do: "", else: " on PATH"}. \
      pybridge needs CPython 3.10 or newer with its shared library (libpython). \
      Install one, or point pybridge at it with `config :pybridge, python: "/path/to/python3"` \
      or the PYBRIDGE_PYTHON environment variable.\
      """)
    end
  end

  defp inspect_python(path, venv) do
    args = ["-c", @script] ++ if(venv, do: [Path.expand(venv)], else: [])

    case System.cmd(path, args, stderr_to_stdout: true) do
      {output, 0} ->
        values = parse(output)

        if Map.has_key?(values, "version_info") do
          {:ok, values}
        else
          error(:python_not_found, "#{path} did not behave like Python: #{String.trim(output)}")
        end

      {output, status} ->
        error(
          :python_not_found,
          "running #{path} failed (exit status #{status}): #{String.trim(output)}"
        )
    end
  rescue
    e in ErlangError ->
      error(:python_not_found, "could not run #{path}: #{Exception.message(e)}")
  end

  @doc false
  # Parses the script's `pybridge:key=hex` lines into %{key => [value]}
  # (values in output order); other lines are ignored.
  @spec parse(String.t()) :: %{String.t() => [String.t()]}
  def parse(output) do
    output
    |> String.split(["\r\n", "\n"])
    |> Enum.reduce(%{}, fn line, acc ->
      with "pybridge:" <> rest <- line,
           [key, hex] <- String.split(rest, "=", parts: 2),
           {:ok, value} <- Base.decode16(hex, case: :mixed) do
        Map.update(acc, key, [value], &[value | &1])
      else
        _ -> acc
      end
    end)
    |> Map.new(fn {key, values} -> {key, Enum.reverse(values)} end)
  end

  defp check_version(path, values) do
    version_info = parse_version(one(values, "version_info"))
    implementation = one(values, "implementation")

    cond do
      version_info == nil ->
        error(:python_not_found, "#{path} reported no usable version")

      implementation != "cpython" ->
        error(
          :unsupported_python,
          "#{path} is #{implementation} #{format_version(version_info)}; pybridge embeds CPython only"
        )

      Tuple.delete_at(version_info, 2) < @min_version ->
        error(
          :unsupported_python,
          "#{path} is Python #{format_version(version_info)}; pybridge needs Python " <>
            "#{elem(@min_version, 0)}.#{elem(@min_version, 1)} or newer"
        )

      free_threaded?(values) and Tuple.delete_at(version_info, 2) < @min_free_threaded_version ->
        {major, minor} = @min_free_threaded_version

        error(
          :unsupported_python,
          "#{path} is a free-threaded build of Python #{format_version(version_info)}; " <>
            "pybridge supports free-threaded CPython from #{major}.#{minor} on"
        )

      true ->
        {:ok, version_info}
    end
  end

  defp find_libpython(path, version_info, values, opts) do
    case option(opts, :libpython, "PYBRIDGE_LIBPYTHON") do
      nil ->
        candidates = values |> Map.get("libpython_candidate", []) |> Enum.uniq()

        case Enum.find(candidates, &File.regular?/1) do
          nil -> libpython_not_found(path, version_info, values, candidates)
          found -> {:ok, found}
        end

      given ->
        given = Path.expand(given)

        if File.regular?(given) do
          {:ok, given}
        else
          error(:libpython_not_found, "the configured libpython #{given} does not exist")
        end
    end
  end

  defp libpython_not_found(path, {major, minor, _} = version_info, values, candidates) do
    hint =
      if one(values, "enable_shared") in [nil, "0"] and one(values, "framework") in [nil, ""] do
        "It was built without --enable-shared, so it has no shared libpython. " <>
          "Use a build that has one (with pyenv: " <>
          "`env PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install #{format_version(version_info)}`)"
      else
        "On Debian/Ubuntu it comes with the libpython#{major}.#{minor} package"
      end

    error(:libpython_not_found, """
    no shared libpython found for #{path} (Python #{format_version(version_info)}). \
    #{hint}, or set its path with `config :pybridge, libpython: path` or PYBRIDGE_LIBPYTHON. \
    Looked for: #{Enum.join(candidates, ", ")}\
    """)
  end

  defp site_dirs({major, minor, _}, values) do
    case one(values, "venv") do
      nil ->
        {:ok, nil, []}

      venv ->
        dirs = values |> Map.get("site_dir", []) |> Enum.uniq() |> Enum.filter(&File.dir?/1)

        cond do
          dirs != [] ->
            {:ok, venv, dirs}

          not File.dir?(venv) ->
            error(:venv_not_found, "the virtualenv #{venv} does not exist")

          true ->
            others =
              Path.wildcard(Path.join(venv, "lib/python*/site-packages")) ++
                Path.wildcard(Path.join(venv, "Lib/site-packages"))

            found =
              if others == [],
                do: "it has no site-packages directory at all",
                else: "it has #{Enum.join(others, ", ")}: was it created by another Python?"

            error(:venv_not_found, """
            the virtualenv #{venv} has no site-packages for Python #{major}.#{minor} \
            (#{found}). Recreate it with this Python (`python3 -m venv`), or use the \
            venv's own Python with `config :pybridge, python: "#{Path.join(venv, "bin/python")}"`.\
            """)
        end
    end
  end

  ## Helpers

  # opts beat the application env, which beats the environment variable.
  # A key present in opts wins even when nil (so `venv: nil` means no venv).
  defp option(opts, key, env_var) do
    value =
      case Keyword.fetch(opts, key) do
        {:ok, value} -> value
        :error -> Application.get_env(:pybridge, key) || (env_var && System.get_env(env_var))
      end

    non_empty(value)
  end

  defp non_empty(""), do: nil

  # sys.config (Erlang) gives strings as charlists.
  defp non_empty(value) when is_list(value) do
    case Py.Options.charlist_path(value) do
      {:ok, path} -> path
      :error -> value
    end
  end

  defp non_empty(value), do: value

  defp one(values, key) do
    case Map.get(values, key) do
      [value | _] -> value
      _ -> nil
    end
  end

  defp parse_version(nil), do: nil

  defp parse_version(text) do
    with [a, b, c] <- String.split(text, "."),
         {major, ""} <- Integer.parse(a),
         {minor, ""} <- Integer.parse(b),
         {micro, ""} <- Integer.parse(c) do
      {major, minor, micro}
    else
      _ -> nil
    end
  end

  defp format_version({major, minor, micro}), do: "#{major}.#{minor}.#{micro}"

  defp error(type, message) do
    {:error, %Py.Error{type: type, message: message}}
  end
end
