defmodule Py.Application do
  @moduledoc false
  # Loads and starts the embedded Python (Py.Runtime), then the supervision
  # tree of the context pools. If Python cannot be started the application
  # does not start either, with the reason logged in plain words.

  use Application

  require Logger

  @impl true
  def start(_type, _args) do
    Py.put_default_timeout!()

    case Py.Runtime.start() do
      :ok ->
        # Py.Telemetry.Relay only where telemetry is compiled in.
        children =
          [
            Py.Output,
            Py.Coalesce.Tables,
            Py.Dashboard.Samples,
            Py.SharedDict.CallbackLog,
            Py.Context.Supervisor,
            Py.Callback.Pool
          ] ++ telemetry_children()

        Supervisor.start_link(children, strategy: :one_for_one, name: Py.Supervisor)

      {:error, %Py.Error{} = error} ->
        Logger.error("pybridge could not start Python: " <> Exception.message(error))
        {:error, {:pybridge_python, error}}
    end
  end

  if Py.Telemetry.enabled?() do
    defp telemetry_children, do: [Py.Telemetry.Relay]
  else
    defp telemetry_children, do: []
  end
end
