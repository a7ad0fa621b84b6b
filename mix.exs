# The project's own Mix compiler (:pybridge, which runs cargo, and its
# precompiled-library step) has to exist before Mix starts compiling, so it
# is loaded from source here rather than compiled as part of lib/. This also works when pybridge is a dependency: Mix
# evaluates a dependency's mix.exs before compiling it.
unless Code.ensure_loaded?(Mix.Tasks.Compile.Pybridge) do
  Code.require_file("lib/mix/tasks/compile.pybridge.ex", __DIR__)
  Code.require_file("lib/mix/tasks/compile.pybridge/precompiled.ex", __DIR__)
end

defmodule Pybridge.MixProject do
  use Mix.Project

  @version "0.1.0"
  @source_url "https://github.com/pybridge/pybridge"

  def project do
    [
      app: :pybridge,
      version: @version,
      elixir: "~> 1.14",
      compilers: [:pybridge | Mix.compilers()],
      elixirc_paths: elixirc_paths(Mix.env()),
      erlc_paths: ["src"],
      start_permanent: Mix.env() == :prod,
      deps: deps(),
      description: description(),
      package: package(),
      docs: docs(),
      aliases: [docs: ["compile", &erlang_doc_chunks/1, "docs"]],
      name: "pybridge",
      source_url: @source_url
    ]
  end

  def application do
    [
      mod: {Py.Application, []},
      extra_applications: [:logger]
    ]
  end

  defp elixirc_paths(:test), do: ["lib", "test/support"]
  defp elixirc_paths(_), do: ["lib"]

  # Hex packages are only declared when Hex is there to fetch them: pybridge
  # itself compiles and tests with no Mix dependency at all (it builds its NIFs
  # with cargo directly). Set PYBRIDGE_NO_HEX=1 to get that mode with Hex too.
  defp deps do
    if hex_available?() do
      [
        {:rustler_precompiled, "~> 0.8"},
        {:rustler, "~> 0.36", optional: true},
        {:telemetry, "~> 1.0"},
        # Py.Telemetry.metrics/0 is defined only when the application has it.
        {:telemetry_metrics, "~> 0.6 or ~> 1.0", optional: true},
        # Py.LiveDashboard is compiled only when the application has it.
        {:phoenix_live_dashboard, "~> 0.8", optional: true},
        # The web server of `mix pybridge.dashboard` in this repository.
        {:bandit, "~> 1.5", only: :dev},
        {:ex_doc, "~> 0.34", only: :dev, runtime: false}
      ]
    else
      []
    end
  end

  defp hex_available? do
    System.get_env("PYBRIDGE_NO_HEX") in [nil, ""] and Code.ensure_loaded?(Hex)
  end

  defp description do
    "CPython embedded in the BEAM: call Python from Elixir and Erlang " <>
      "through a Rust NIF, with per-process namespaces and context pools."
  end

  defp package do
    [
      licenses: ["Apache-2.0"],
      links: %{"GitHub" => @source_url},
      files: [
        "lib",
        "src",
        "python",
        "priv/.gitkeep",
        "native/Cargo.toml",
        "native/Cargo.lock",
        "native/.cargo",
        "native/pybridge/Cargo.toml",
        "native/pybridge/src",
        "native/pybridge_loader/Cargo.toml",
        "native/pybridge_loader/src",
        "mix.exs",
        ".formatter.exs",
        "guides",
        "checksum-*.exs",
        "README*",
        "LICENSE*",
        "CHANGELOG*"
      ]
    ]
  end

  # The guides in reading order: first steps, the concepts one by one, then
  # running it in production, the Erlang API, and how it is built. A guide
  # not written yet is left out rather than breaking `mix docs`.
  @guides ~w(getting-started type-conversion contexts runtime coalescing shared-dict callbacks
             streaming asyncio telemetry deployment erlang architecture)

  defp docs do
    [
      main: "readme",
      source_ref: "v#{@version}",
      source_url: @source_url,
      extras:
        ["README.md"] ++
          Enum.filter(Enum.map(@guides, &"guides/#{&1}.md"), &File.exists?/1) ++
          ["CHANGELOG.md"],
      # The architecture guide and a few moduledocs name internal modules
      # (@moduledoc false) on purpose, and the compiler's rustler_precompiled,
      # which is no dependency of the docs build: code, not links.
      skip_code_autolink_to: &internal_reference?/1,
      groups_for_extras: [
        Guides:
          ~r{guides/(getting-started|type-conversion|contexts|runtime|coalescing|shared-dict|callbacks|streaming|asyncio)\.md},
        Operations: ~r{guides/(telemetry|deployment)\.md},
        Erlang: ~r{guides/erlang\.md},
        Internals: ~r{guides/architecture\.md}
      ],
      groups_for_modules: [
        Calls: [Py, Py.Object, Py.Bytes, Py.Error, Py.Options, Py.Limits, Py.Imports],
        Contexts: [
          Py.Context,
          Py.Context.Supervisor,
          Py.Context.Pools,
          Py.Context.Registry,
          Py.Runtime,
          Py.Runtime.Python,
          Py.Runtime.Venv,
          Py.Runtime.Memory
        ],
        SharedDict: [Py.SharedDict, Py.SharedDict.Pickled, Py.State],
        Coalescing: [Py.Coalesce],
        Callbacks: [~r/^Py\.Callback/],
        Observability: [Py.Telemetry, Py.Dashboard, Py.LiveDashboard],
        Erlang: [:py, :py_context_router, :py_import, :py_dialect]
      ]
    ]
  end

  # ExDoc reads the Erlang modules' docs (:py and friends, the Erlang group)
  # from EEP 48 chunks, which edoc writes next to the app's ebin.
  defp erlang_doc_chunks(_args) do
    dir = Path.join(Mix.Project.app_path(), "doc")
    files = Enum.map(Path.wildcard("src/*.erl"), &String.to_charlist/1)

    opts = [
      doclet: :edoc_doclet_chunks,
      layout: :edoc_layout_chunks,
      dir: String.to_charlist(dir)
    ]

    :ok = :edoc.files(files, opts)
  end

  @internal ~r/^(Py\.(Native|Call|Remote|Application|Callback\.Pool|Coalesce\.(Flight|Stats|Tables)|Dashboard\.Samples|LiveDashboard\.(Rows|DevServer|DevLoad)|SharedDict\.Locks)\b|Py\.Imports\.each_interpreter\/1$|RustlerPrecompiled\b|Config\.new\/1$)/

  defp internal_reference?(term), do: String.match?(term, @internal)
end
