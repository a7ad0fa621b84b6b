defmodule Mix.Tasks.Pybridge.Dashboard do
  @shortdoc "Serves a LiveDashboard with the pybridge page under a synthetic load (dev)"

  @moduledoc """
  Serves Phoenix LiveDashboard with the `Py.LiveDashboard` page on
  http://127.0.0.1:4000/dashboard/python while a synthetic load runs, so you
  can see what the page shows without wiring it into an application first.

      mix pybridge.dashboard
      mix pybridge.dashboard --port 4001 --no-load

  Options:

    * `--port` — the port to listen on (default 4000; always 127.0.0.1);
    * `--no-load` — serve the page without the synthetic load.

  The load is a handful of processes on this node: Python calls spread over
  the default pool's contexts (a few of them bound, a few raising), BEAM and
  Python request coalescing (`Py.Coalesce.run/3` and a named
  `erlang.SharedCall`), and a named SharedDict, `"dashboard.sessions"`,
  whose keys get short TTLs so the expiries tab fills up.

  It is a development tool: it runs only with `MIX_ENV=dev`, serves an
  unauthenticated dashboard on the loopback address, and needs the Phoenix
  dependencies in the project: `phoenix_live_dashboard` (with
  `phoenix_live_view`, `phoenix`, and so on) and a web server, `bandit` or
  `plug_cowboy`. Without them it says which are missing and stops.
  """

  use Mix.Task

  @switches [port: :integer, load: :boolean]

  # Modules the dashboard needs, and the package that brings each.
  @needed [
    {Phoenix.Endpoint, :phoenix},
    {Phoenix.LiveView, :phoenix_live_view},
    {Phoenix.LiveDashboard.Router, :phoenix_live_dashboard}
  ]

  @impl Mix.Task
  def run(args) do
    {opts, _} = OptionParser.parse!(args, strict: @switches)

    unless Mix.env() == :dev do
      Mix.raise(
        "mix pybridge.dashboard serves an unauthenticated dashboard and runs only with " <>
          "MIX_ENV=dev (it is #{Mix.env()})"
      )
    end

    Mix.Task.run("compile")

    case missing_deps() do
      [] ->
        serve(opts)

      missing ->
        Mix.raise(missing_message(missing))
    end
  end

  defp serve(opts) do
    # pybridge compiles Py.LiveDashboard only when it finds the page builder;
    # as a path or Git dependency compiled before phoenix_live_dashboard it
    # has not.
    unless Code.ensure_loaded?(Py.LiveDashboard) do
      Mix.raise(
        "Py.LiveDashboard was not compiled (pybridge was built before " <>
          "phoenix_live_dashboard); run `mix deps.compile pybridge --force`"
      )
    end

    Mix.Task.run("app.start")
    port = Keyword.get(opts, :port, 4000)
    {:ok, _} = Py.LiveDashboard.DevServer.start(port: port, load: Keyword.get(opts, :load, true))
    Mix.shell().info("pybridge dashboard: http://127.0.0.1:#{port}/dashboard/python")
    unless iex_running?(), do: Process.sleep(:infinity)
  end

  @doc false
  # The packages the dashboard needs that this project does not have.
  @spec missing_deps() :: [atom]
  def missing_deps do
    libs = for {module, package} <- @needed, not Code.ensure_loaded?(module), do: package

    server =
      if Code.ensure_loaded?(Bandit.PhoenixAdapter) or
           (Code.ensure_loaded?(Phoenix.Endpoint.Cowboy2Adapter) and
              Code.ensure_loaded?(Plug.Cowboy)),
         do: [],
         else: [:bandit]

    libs ++ server
  end

  @doc false
  @spec missing_message([atom]) :: String.t()
  def missing_message(missing) do
    """
    mix pybridge.dashboard needs the Phoenix LiveDashboard packages, and this \
    project lacks: #{Enum.join(missing, ", ")}.

    Add them to your deps in mix.exs, for example

        {:phoenix_live_dashboard, "~> 0.8"},
        {:bandit, "~> 1.5"}

    (phoenix_live_dashboard brings phoenix and phoenix_live_view), run \
    `mix deps.get`, then `mix pybridge.dashboard` again. In an application \
    that already has a Phoenix endpoint, mount the page in its router instead:

        live_dashboard "/dashboard", additional_pages: [python: Py.LiveDashboard]\
    """
  end

  defp iex_running?, do: Code.ensure_loaded?(IEx) and IEx.started?()
end
