defmodule Mix.Tasks.Compile.Pybridge.Precompiled do
  @moduledoc false
  # The precompiled-library step of `Mix.Tasks.Compile.Pybridge` (its
  # "Precompiled NIFs" section): asks rustler_precompiled, only present
  # when pybridge comes from Hex, for this version's libraries of this
  # target and installs them with the compiler's `install_file/2`. Not a
  # Mix task (no `run/1`); mix.exs loads it from source with the compiler.

  @precompiled_modules %{"pybridge" => Py.Native, "pybridge_loader" => Py.Native.Loader}

  # What .github/workflows/release.yml builds: these targets, NIF 2.15 (OTP
  # 24+), and for pybridge a `cp314t` variant of each, for free-threaded
  # CPython 3.14.
  @precompiled_targets ~w(x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu
                          x86_64-apple-darwin aarch64-apple-darwin)
  @precompiled_nif_versions ["2.15"]
  @free_threaded_variants [:cp314t]

  @doc """
  Installs the precompiled `libs` (`{crate, file}`) in `priv`: `:ok`, or
  `{:skip, reason}` to build from source instead (`nil`: nothing to say,
  without Hex or with `PYBRIDGE_BUILD=1`).
  """
  @spec libraries(Path.t(), [{String.t(), String.t()}]) :: :ok | {:skip, String.t() | nil}
  def libraries(priv, libs) do
    with :ok <- precompiled_enabled?() do
      File.mkdir_p!(priv)

      Enum.reduce_while(libs, :ok, fn {crate, file}, :ok ->
        case fetch_precompiled(crate, Path.join(priv, file), nil) do
          :ok -> {:cont, :ok}
          {:error, reason} -> {:halt, {:skip, "no precompiled #{crate} NIF (#{reason})"}}
        end
      end)
    end
  end

  @doc """
  Installs the pybridge library for the free-threaded Python of `tag`
  (`"cp314t"`) as `pybridge_<tag>.so` in `priv`: `:ok` or `{:skip, reason}`,
  as `libraries/2`.
  """
  @spec variant(Path.t(), String.t()) :: :ok | {:skip, String.t() | nil}
  def variant(priv, tag) do
    variant = Enum.find(@free_threaded_variants, &(Atom.to_string(&1) == tag))

    with :ok <- precompiled_enabled?() do
      dest = Path.join(priv, "pybridge_#{tag}.so")
      File.mkdir_p!(priv)

      if variant do
        case fetch_precompiled("pybridge", dest, variant) do
          :ok -> :ok
          {:error, reason} -> {:skip, "no precompiled pybridge #{tag} NIF (#{reason})"}
        end
      else
        {:skip, "no precompiled pybridge NIF is released for a free-threaded #{tag} Python"}
      end
    end
  end

  defp precompiled_enabled? do
    cond do
      System.get_env("PYBRIDGE_BUILD") in ["1", "true"] -> {:skip, nil}
      not Code.ensure_loaded?(RustlerPrecompiled) -> {:skip, nil}
      true -> :ok
    end
  end

  # `apply/3`: these modules exist only when the Hex dependency is present.
  defp fetch_precompiled(crate, dest, variant) do
    project = Mix.Project.config()
    version = project[:version]

    # rustler_precompiled picks the first variant of the target whose
    # function says yes; the caller already knows the Python needs this one.
    variants =
      if variant,
        do: Map.new(@precompiled_targets, &{&1, [{variant, fn _config -> true end}]}),
        else: %{}

    config_opts = [
      otp_app: :pybridge,
      module: Map.fetch!(@precompiled_modules, crate),
      crate: crate,
      base_url: "#{project[:source_url]}/releases/download/v#{version}",
      version: version,
      targets: @precompiled_targets,
      nif_versions: @precompiled_nif_versions,
      variants: variants,
      force_build: false
    ]

    with {:ok, config} <- safely(fn -> apply(RustlerPrecompiled.Config, :new, [config_opts]) end),
         {:ok, {:ok, metadata}} <-
           safely(fn -> apply(RustlerPrecompiled, :build_metadata, [config]) end),
         {:ok, {:ok, %{load_from: {app, path}}}} <-
           safely(fn ->
             apply(RustlerPrecompiled, :download_or_reuse_nif_file, [config, metadata])
           end),
         [library | _] <- Path.wildcard(Application.app_dir(app, path) <> ".*") do
      Mix.Tasks.Compile.Pybridge.install_file(library, dest)
    else
      {:ok, {:error, reason}} -> {:error, to_string(reason)}
      {:error, reason} -> {:error, reason}
      [] -> {:error, "the downloaded archive held no library"}
    end
  end

  defp safely(fun) do
    {:ok, fun.()}
  rescue
    e -> {:error, Exception.message(e)}
  end
end
