defmodule Mix.Tasks.Compile.Pybridge do
  @shortdoc "Builds pybridge's native libraries with cargo"

  @moduledoc """
  Mix compiler that builds pybridge's Rust crates and installs them in `priv/`.

  It runs `cargo build --release` in the `native/` cargo workspace, which builds
  both crates:

    * `native/pybridge` → `priv/native/pybridge.so` (the `Py.Native` NIF)
    * `native/pybridge_loader` → `priv/native/pybridge_loader.so`
      (`Py.Native.Loader`, which `dlopen`s libpython with `RTLD_GLOBAL`)

  The priv files always end in `.so`, also on macOS where cargo produces
  `.dylib` files, because that is the name `:erlang.load_nif/2` looks for.

  Cargo's target directory is `$CARGO_TARGET_DIR` when set (a relative value is
  taken relative to `native/`, as cargo does), else `native/target`.

  Cargo is skipped when both priv files exist and are newer than every input:
  `native/**/*.rs`, `native/**/Cargo.toml`, `native/Cargo.lock`,
  `native/.cargo/config.toml` and `python/**/*.py` (the Python support module
  is compiled into the NIF). In any other case cargo runs and decides itself
  what to rebuild, since it is incremental. `mix compile --force` always runs
  cargo.

  The priv files are replaced atomically (written next to the target and
  renamed), so a VM that has the old library mapped keeps working.

  ## Free-threaded Python

  Free-threaded CPython (3.14t; PyO3 supports none older) has no stable ABI,
  so it needs a library built for its version.
  `mix compile.pybridge --python /path/to/python3.14t` builds it as well, with
  PyO3 pointed at that Python (`PYO3_PYTHON`) in a target directory of its
  own, and installs it as `priv/native/pybridge_cp314t.so`,
  which `Py.Runtime` loads when the configured Python is that version. For a
  Python with the GIL the option changes nothing: the stable-ABI library
  serves it.

  Without `--python`, the compiler asks the configured Python the way
  `Py.Runtime.Python` picks it at compile time (`config :pybridge, python:`
  in `config/config.exs`, else `PYBRIDGE_PYTHON`, else `python3` on `PATH`)
  whether it is free-threaded, and if so provides its library too: the
  precompiled one when there is one (below), else a build from source.

  ## Environment

    * `CARGO` – the cargo executable to use (default: `cargo` on `PATH`, then
      `~/.cargo/bin/cargo`)
    * `CARGO_TARGET_DIR` – cargo's target directory
    * `PYBRIDGE_BUILD=1` – force building from source (see below)

  ## Precompiled NIFs

  When `rustler_precompiled` is available (pybridge used from Hex) and
  `PYBRIDGE_BUILD` is not `"1"`, the compiler first asks it for the two
  libraries of this version and target (`Config.new/1`, `build_metadata/1`
  and `download_or_reuse_nif_file/2`: release assets checked against the
  `checksum-Elixir.Py.Native*.exs` files shipped in the package, cached
  locally), and installs them as above. For a free-threaded Python it asks
  for the `pybridge` library's variant of that version (`cp314t`: the
  release asset `libpybridge-v<version>-nif-2.15-<target>--cp314t.so.tar.gz`,
  which `.github/workflows/release.yml` builds) and installs it as
  `pybridge_cp314t.so`. pybridge does not use
  `use RustlerPrecompiled`, whose `@on_load` would load the NIF before
  libpython is loaded. If anything is missing (no release for this target, no
  checksum file, no network), it says why and builds from source instead.
  Without Hex this step is skipped.
  """

  use Mix.Task.Compiler

  alias Mix.Tasks.Compile.Pybridge.Precompiled

  @libs [{"pybridge", "pybridge.so"}, {"pybridge_loader", "pybridge_loader.so"}]

  @impl Mix.Task.Compiler
  def run(args) do
    result = compile(args)
    unload_source_copy()
    result
  end

  defp compile(args) do
    {opts, _, _} = OptionParser.parse(args, switches: [force: :boolean, python: :string])
    root = project_root()
    native = Path.join(root, "native")
    priv = Path.join([root, "priv", "native"])

    with result when result in [:ok, :noop] <- compile_default(opts, root, native, priv) do
      case opts[:python] || configured_free_threaded_python() do
        nil -> result
        python -> compile_for_python(python, opts, root, native, priv)
      end
    end
  end

  defp compile_default(opts, root, native, priv) do
    outputs = Enum.map(@libs, fn {_, file} -> Path.join(priv, file) end)

    cond do
      not File.dir?(native) ->
        error("pybridge: #{native} not found, cannot build the native libraries")

      !opts[:force] and up_to_date?(root, outputs) ->
        :noop

      true ->
        case precompiled(priv) do
          :ok ->
            Mix.Project.build_structure()
            :ok

          {:skip, nil} ->
            build(native, priv)

          {:skip, reason} ->
            Mix.shell().info("pybridge: #{reason}; building from source")
            build(native, priv)
        end
    end
  end

  ## A library for one free-threaded Python

  defp compile_for_python(python, opts, root, native, priv) do
    with {:ok, exe, tag} <- python_tag(python) do
      dest = Path.join(priv, "pybridge_#{tag}.so")

      cond do
        tag == "abi3" ->
          Mix.shell().info("pybridge: #{exe} has the GIL; the stable-ABI library serves it")
          :noop

        !opts[:force] and up_to_date?(root, [dest]) ->
          :noop

        true ->
          case precompiled_variant(priv, tag) do
            :ok ->
              Mix.Project.build_structure()
              :ok

            {:skip, reason} ->
              if reason, do: Mix.shell().info("pybridge: #{reason}; building from source")
              build_for_python(exe, tag, native, dest)
          end
      end
    end
  end

  defp build_for_python(exe, tag, native, dest) do
    target = Path.join(target_dir(native), tag)
    env = [{"PYO3_PYTHON", exe}, {"CARGO_TARGET_DIR", target}]

    with {:ok, cargo} <- find_cargo(),
         :ok <- run_cargo(cargo, native, ["-p", "pybridge"], env) do
      case built_library(Path.join(target, "release"), "pybridge") do
        nil ->
          error("pybridge: cargo succeeded but built no libpybridge in #{target}")

        source ->
          install_file(source, dest)
          Mix.Project.build_structure()
          :ok
      end
    end
  end

  @doc false
  # The configured Python (config :pybridge, python:, else PYBRIDGE_PYTHON,
  # else python3 on PATH, as Py.Runtime.Python picks it) when it is
  # free-threaded; nil when it has the GIL or does not run. Public for the
  # tests.
  @spec configured_free_threaded_python() :: String.t() | nil
  def configured_free_threaded_python do
    python =
      Enum.find(
        [Application.get_env(:pybridge, :python), System.get_env("PYBRIDGE_PYTHON")],
        "python3",
        &(&1 not in [nil, ""])
      )

    case probe_python(python) do
      {:ok, exe, "cp" <> _} -> exe
      _ -> nil
    end
  end

  # "cp314t" for a free-threaded 3.14, "abi3" for a Python with the GIL.
  defp python_tag(python) do
    case probe_python(python) do
      {:ok, exe, tag} -> {:ok, exe, tag}
      :error -> error("pybridge: --python #{python} is not a Python that runs")
    end
  end

  defp probe_python(python) do
    script =
      "import sys, sysconfig; " <>
        "print(sys.executable, sysconfig.get_config_var('Py_GIL_DISABLED') or 0, " <>
        "'%d%d' % sys.version_info[:2])"

    with exe when is_binary(exe) <- System.find_executable(python),
         {out, 0} <- System.cmd(exe, ["-c", script], stderr_to_stdout: true),
         [exe, gil_disabled, version] <- out |> String.trim() |> String.split(" ") do
      {:ok, exe, if(gil_disabled == "1", do: "cp#{version}t", else: "abi3")}
    else
      _ -> :error
    end
  rescue
    # System.cmd raises when the file is there but cannot be executed.
    ErlangError -> :error
  end

  ## Precompiled libraries (Mix.Tasks.Compile.Pybridge.Precompiled)

  @doc false
  # Public for the tests, which stand in for rustler_precompiled.
  @spec precompiled(Path.t()) :: :ok | {:skip, String.t() | nil}
  def precompiled(priv), do: Precompiled.libraries(priv, @libs)

  @doc false
  # The pybridge library for the free-threaded Python of `tag` ("cp314t"),
  # installed as pybridge_<tag>.so. Public for the tests.
  @spec precompiled_variant(Path.t(), String.t()) :: :ok | {:skip, String.t() | nil}
  def precompiled_variant(priv, tag), do: Precompiled.variant(priv, tag)

  @impl Mix.Task.Compiler
  def manifests, do: []

  @impl Mix.Task.Compiler
  def clean do
    priv = Path.join([project_root(), "priv", "native"])
    Enum.each(@libs, fn {_, file} -> File.rm(Path.join(priv, file)) end)
    Enum.each(Path.wildcard(Path.join(priv, "pybridge_cp*.so")), &File.rm/1)
  end

  # mix.exs loads this module and Precompiled from source (Code.require_file)
  # so that they exist before lib/ is compiled, and lib/ then compiles these
  # same files. The in-memory copies are dropped once they have done their
  # job, so that compiling lib/ does not warn about redefining them; later
  # uses load the compiled .beam files.
  defp unload_source_copy do
    for module <- [__MODULE__, Precompiled], :code.which(module) == [] do
      :code.delete(module)
    end

    :ok
  end

  ## Build

  defp build(native, priv) do
    with {:ok, cargo} <- find_cargo(),
         :ok <- run_cargo(cargo, native, ["--workspace"], []),
         :ok <- install(target_dir(native), priv) do
      # The app's priv in _build is a symlink to ./priv, or a copy with
      # `build_embedded: true`; in both cases refresh it now that priv/native
      # has new files (a no-op when the symlink already exists).
      Mix.Project.build_structure()
      :ok
    end
  end

  defp find_cargo do
    cargo =
      case System.get_env("CARGO") do
        nil -> System.find_executable("cargo") || home_cargo()
        "" -> System.find_executable("cargo") || home_cargo()
        path -> System.find_executable(path)
      end

    if cargo do
      {:ok, cargo}
    else
      error("""
      pybridge: `cargo` was not found, so the native libraries cannot be built.

      pybridge needs a recent stable Rust toolchain to compile its NIF.
      Install one with rustup (https://rustup.rs), make sure `cargo` is on PATH
      (or set CARGO=/path/to/cargo), and run `mix compile` again.\
      """)
    end
  end

  defp home_cargo do
    path = Path.expand("~/.cargo/bin/cargo")
    if File.regular?(path), do: path
  end

  defp run_cargo(cargo, native, which, extra_env) do
    args = ["build", "--release" | which]
    shown = Enum.map_join(extra_env, "", fn {k, v} -> "#{k}=#{v} " end)
    Mix.shell().info("==> pybridge: #{shown}cargo #{Enum.join(args, " ")} (in #{native})")

    color = if IO.ANSI.enabled?(), do: [{"CARGO_TERM_COLOR", "always"}], else: []
    env = color ++ extra_env

    {_, status} =
      System.cmd(cargo, args,
        cd: native,
        env: env,
        into: IO.binstream(:stdio, :line),
        stderr_to_stdout: true
      )

    if status == 0 do
      :ok
    else
      error(
        "pybridge: `cargo build --release` failed (exit status #{status}), see its output above"
      )
    end
  rescue
    e in ErlangError ->
      error("pybridge: could not run #{cargo}: #{Exception.message(e)}")
  end

  defp target_dir(native) do
    case System.get_env("CARGO_TARGET_DIR") do
      dir when dir in [nil, ""] -> Path.join(native, "target")
      dir -> Path.expand(dir, native)
    end
  end

  defp install(target, priv) do
    File.mkdir_p!(priv)
    release = Path.join(target, "release")

    Enum.reduce_while(@libs, :ok, fn {crate, file}, :ok ->
      case built_library(release, crate) do
        nil ->
          {:halt,
           error("pybridge: cargo succeeded but no lib#{crate}.so/.dylib was found in #{release}")}

        source ->
          install_file(source, Path.join(priv, file))
          {:cont, :ok}
      end
    end)
  end

  defp built_library(release, crate) do
    ["lib#{crate}.so", "lib#{crate}.dylib"]
    |> Enum.map(&Path.join(release, &1))
    |> Enum.find(&File.regular?/1)
  end

  @doc false
  # Replaces dest by an identical copy of source via rename(2), so a library
  # currently mapped by a running VM is never rewritten in place. When the
  # contents are already identical only the mtime is bumped, which is what the
  # up-to-date check compares. Public for Precompiled.
  @spec install_file(Path.t(), Path.t()) :: :ok
  def install_file(source, dest) do
    if same_contents?(source, dest) do
      File.touch!(dest)
    else
      tmp = dest <> ".tmp#{System.unique_integer([:positive])}"
      File.cp!(source, tmp)
      File.rename!(tmp, dest)
      Mix.shell().info("==> pybridge: installed #{Path.relative_to_cwd(dest)}")
    end
  end

  defp same_contents?(a, b) do
    with {:ok, %{size: size}} <- File.stat(a),
         {:ok, %{size: ^size}} <- File.stat(b) do
      File.read!(a) == File.read!(b)
    else
      _ -> false
    end
  end

  ## Staleness

  defp up_to_date?(root, outputs) do
    output_mtimes = Enum.map(outputs, &mtime/1)

    if Enum.any?(output_mtimes, &is_nil/1) do
      false
    else
      oldest_output = Enum.min(output_mtimes)

      root
      |> inputs()
      |> Enum.all?(fn input ->
        case mtime(input) do
          nil -> true
          # Strictly older: mtimes have a one-second resolution, and on a tie
          # cargo (incremental) is the one to decide.
          m -> m < oldest_output
        end
      end)
    end
  end

  defp inputs(root) do
    native = Path.join(root, "native")

    native_files =
      walk(native, fn name ->
        Path.extname(name) == ".rs" or
          name in ["Cargo.toml", "Cargo.lock", "config.toml", "config"]
      end)

    python_files = walk(Path.join(root, "python"), &(Path.extname(&1) in [".py", ".pyi"]))
    native_files ++ python_files
  end

  # Recursively lists regular files whose basename satisfies `keep?`, without
  # descending into cargo target directories or __pycache__.
  defp walk(dir, keep?) do
    case File.ls(dir) do
      {:ok, names} ->
        Enum.flat_map(names, fn name ->
          path = Path.join(dir, name)

          cond do
            name in ["target", "__pycache__", ".git"] -> []
            File.dir?(path) -> walk(path, keep?)
            keep?.(name) -> [path]
            true -> []
          end
        end)

      {:error, _} ->
        []
    end
  end

  defp mtime(path) do
    case File.stat(path, time: :posix) do
      {:ok, %{mtime: mtime}} -> mtime
      {:error, _} -> nil
    end
  end

  ## Helpers

  defp project_root do
    case Mix.Project.project_file() do
      nil -> File.cwd!()
      file -> Path.dirname(file)
    end
  end

  defp error(message) do
    Mix.shell().error(message)

    {:error,
     [
       %Mix.Task.Compiler.Diagnostic{
         compiler_name: "pybridge",
         file: project_root(),
         position: nil,
         message: message,
         severity: :error
       }
     ]}
  end
end
