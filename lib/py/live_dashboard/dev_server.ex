defmodule Py.LiveDashboard.DevServer do
  @moduledoc false
  # What `mix pybridge.dashboard` serves: a Phoenix endpoint on 127.0.0.1
  # with LiveDashboard and the `Py.LiveDashboard` page, and the synthetic
  # load (`Py.LiveDashboard.DevLoad`). The endpoint and router are defined
  # when the task runs, so nothing Phoenix is compiled into pybridge for them
  # and they exist only in a development VM.

  @endpoint Py.LiveDashboard.DevEndpoint
  @router Py.LiveDashboard.DevRouter
  @pubsub Py.LiveDashboard.DevPubSub

  @doc false
  @spec start(port: :inet.port_number(), load: boolean) :: {:ok, pid}
  def start(opts) do
    port = Keyword.fetch!(opts, :port)
    define_modules()

    Application.put_env(:pybridge, @endpoint,
      adapter: adapter(),
      url: [host: "127.0.0.1", port: port],
      http: [ip: {127, 0, 0, 1}, port: port],
      server: true,
      check_origin: ["//127.0.0.1", "//localhost"],
      secret_key_base: random(48),
      live_view: [signing_salt: random(12)],
      pubsub_server: @pubsub,
      render_errors: [formats: [html: Py.LiveDashboard.DevErrors], layout: false]
    )

    Application.put_env(:phoenix, :json_library, Jason)

    children =
      [
        {Phoenix.PubSub, name: @pubsub},
        @endpoint
      ] ++ if(Keyword.get(opts, :load, true), do: [Py.LiveDashboard.DevLoad], else: [])

    Supervisor.start_link(children, strategy: :one_for_one, name: __MODULE__)
  end

  defp adapter do
    if Code.ensure_loaded?(Bandit.PhoenixAdapter),
      do: Bandit.PhoenixAdapter,
      else: Phoenix.Endpoint.Cowboy2Adapter
  end

  # :crypto comes with Phoenix (plug_crypto needs it); pybridge itself does
  # not depend on it, hence the call through a variable.
  defp random(bytes) do
    crypto = :crypto
    bytes |> crypto.strong_rand_bytes() |> Base.url_encode64()
  end

  defp define_modules do
    unless Code.ensure_loaded?(@router) do
      dashboard_opts = [additional_pages: [python: Py.LiveDashboard]] ++ metrics()

      Module.create(
        @router,
        quote do
          use Phoenix.Router
          import Phoenix.LiveDashboard.Router

          pipeline :browser do
            plug(:fetch_session)
            plug(:protect_from_forgery)
          end

          scope "/" do
            pipe_through(:browser)
            live_dashboard("/dashboard", unquote(dashboard_opts))
          end
        end,
        Macro.Env.location(__ENV__)
      )

      Module.create(
        Py.LiveDashboard.DevErrors,
        quote do
          def render(template, _assigns),
            do: Phoenix.Controller.status_message_from_template(template)
        end,
        Macro.Env.location(__ENV__)
      )

      Module.create(
        @endpoint,
        quote do
          use Phoenix.Endpoint, otp_app: :pybridge

          @session [store: :cookie, key: "_pybridge_dashboard", signing_salt: "pybridge"]

          socket("/live", Phoenix.LiveView.Socket, websocket: [connect_info: [session: @session]])

          plug(:redirect_root)
          # Query parameters (the dashboard's tabs, node and sorting live there).
          plug(Plug.Parsers, parsers: [:urlencoded], pass: ["*/*"])
          plug(Plug.Session, @session)
          plug(unquote(@router))

          def redirect_root(%Plug.Conn{request_path: "/"} = conn, _opts) do
            conn
            |> Phoenix.Controller.redirect(to: "/dashboard/python")
            |> Plug.Conn.halt()
          end

          def redirect_root(conn, _opts), do: conn
        end,
        Macro.Env.location(__ENV__)
      )
    end

    :ok
  end

  # The Metrics page draws Py.Telemetry's metrics when that module is there.
  defp metrics do
    if Code.ensure_loaded?(Py.Telemetry) and function_exported?(Py.Telemetry, :metrics, 0),
      do: [metrics: Py.Telemetry],
      else: []
  end
end
