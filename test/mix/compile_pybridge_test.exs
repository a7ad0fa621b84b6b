defmodule Mix.Tasks.Compile.PybridgeTest do
  # The precompiled-NIF path of the Mix compiler, against stand-ins for
  # rustler_precompiled (Hex, and so the real package, is not available
  # where this suite runs). The stand-ins follow the real API of
  # rustler_precompiled 0.8 (read from its source): Config.new/1,
  # build_metadata/1 returning {:ok, metadata} whose lib name ends in
  # "--<variant>" when a variant of the target is chosen (the first whose
  # function returns true), and download_or_reuse_nif_file/2 returning
  # {:ok, %{load_from: {app, "priv/native/<lib name>"}}} or {:error, reason}.
  use ExUnit.Case, async: false

  alias Mix.Tasks.Compile.Pybridge

  @stub_dir "priv/native/precompiled-stub"

  setup_all do
    if Code.ensure_loaded?(RustlerPrecompiled) do
      flunk("the real rustler_precompiled is loaded; these tests use stand-ins")
    end

    Code.compile_string("""
    defmodule RustlerPrecompiled.Config do
      def new(opts), do: Map.new(opts)
    end

    defmodule RustlerPrecompiled do
      @target "x86_64-unknown-linux-gnu"

      def build_metadata(config) do
        true = @target in config.targets

        suffix =
          case Enum.find(Map.get(config.variants, @target, []), fn {_, f} -> f.(config) end) do
            {name, _} -> "--\#{name}"
            nil -> ""
          end

        [nif | _] = config.nif_versions
        lib = "lib\#{config.crate}-v\#{config.version}-nif-\#{nif}-\#{@target}\#{suffix}"
        {:ok, %{lib_name: lib}}
      end

      def download_or_reuse_nif_file(config, metadata) do
        case :persistent_term.get({__MODULE__, :mode}) do
          {:error, reason} ->
            {:error, reason}

          :ok ->
            lib = "#{@stub_dir}/\#{metadata.lib_name}"
            file = Application.app_dir(config.otp_app, lib) <> ".so"
            File.mkdir_p!(Path.dirname(file))
            File.write!(file, "\#{metadata.lib_name} for \#{inspect(config.module)}")
            send(:persistent_term.get({__MODULE__, :test}), {:downloaded, config})
            {:ok, %{load?: true, load_from: {config.otp_app, lib}, load_data: 0}}
        end
      end
    end
    """)

    on_exit(fn ->
      for mod <- [RustlerPrecompiled, RustlerPrecompiled.Config] do
        :code.purge(mod)
        :code.delete(mod)
      end

      File.rm_rf!(Application.app_dir(:pybridge, @stub_dir))
    end)

    :ok
  end

  setup %{tmp_dir: tmp_dir} do
    :persistent_term.put({RustlerPrecompiled, :test}, self())
    previous = System.get_env("PYBRIDGE_BUILD")
    System.delete_env("PYBRIDGE_BUILD")
    on_exit(fn -> if previous, do: System.put_env("PYBRIDGE_BUILD", previous) end)
    %{priv: Path.join(tmp_dir, "native")}
  end

  @tag :tmp_dir
  test "installs both downloaded libraries under their load names", %{priv: priv} do
    :persistent_term.put({RustlerPrecompiled, :mode}, :ok)
    assert Pybridge.precompiled(priv) == :ok

    assert_received {:downloaded, %{crate: "pybridge", module: Py.Native} = config}
    assert_received {:downloaded, %{crate: "pybridge_loader", module: Py.Native.Loader}}
    assert config.otp_app == :pybridge
    assert config.force_build == false
    assert config.base_url =~ ~r{/releases/download/v\d+\.\d+\.\d+}

    assert File.read!(Path.join(priv, "pybridge.so")) =~
             ~r/^libpybridge-v[\d.]+-nif-2.15-x86_64-unknown-linux-gnu for Py.Native$/

    assert File.read!(Path.join(priv, "pybridge_loader.so")) =~
             ~r/^libpybridge_loader-v[\d.]+-nif-2.15-x86_64-unknown-linux-gnu for Py.Native.Loader$/
  end

  @tag :tmp_dir
  test "a free-threaded Python gets the cp314t variant of the pybridge library", %{priv: priv} do
    :persistent_term.put({RustlerPrecompiled, :mode}, :ok)
    assert Pybridge.precompiled_variant(priv, "cp314t") == :ok

    assert_received {:downloaded, %{crate: "pybridge", module: Py.Native, variants: variants}}
    # Offered for every released target, chosen unconditionally.
    assert [cp314t: chosen] = variants["aarch64-apple-darwin"]
    assert chosen.(%{}) == true

    assert File.read!(Path.join(priv, "pybridge_cp314t.so")) =~
             ~r/^libpybridge-v[\d.]+-nif-2.15-x86_64-unknown-linux-gnu--cp314t for Py.Native$/

    refute File.exists?(Path.join(priv, "pybridge.so"))
  end

  @tag :tmp_dir
  test "a free-threaded version no release has is built from source, saying why", %{priv: priv} do
    :persistent_term.put({RustlerPrecompiled, :mode}, :ok)
    assert {:skip, reason} = Pybridge.precompiled_variant(priv, "cp315t")
    assert reason =~ "no precompiled pybridge NIF is released for a free-threaded cp315t Python"
    refute_received {:downloaded, _}

    :persistent_term.put({RustlerPrecompiled, :mode}, {:error, "404"})
    assert {:skip, reason} = Pybridge.precompiled_variant(priv, "cp314t")
    assert reason =~ "no precompiled pybridge cp314t NIF (404)"
  end

  @tag :tmp_dir
  test "a failed download falls back to a source build, saying why", %{priv: priv} do
    :persistent_term.put({RustlerPrecompiled, :mode}, {:error, "no release for this target"})
    assert {:skip, reason} = Pybridge.precompiled(priv)
    assert reason =~ "no precompiled pybridge NIF (no release for this target)"
    refute File.exists?(Path.join(priv, "pybridge.so"))
  end

  @tag :tmp_dir
  test "PYBRIDGE_BUILD=1 forces a source build", %{priv: priv} do
    :persistent_term.put({RustlerPrecompiled, :mode}, :ok)
    System.put_env("PYBRIDGE_BUILD", "1")
    assert Pybridge.precompiled(priv) == {:skip, nil}
    refute_received {:downloaded, _}
  end
end
