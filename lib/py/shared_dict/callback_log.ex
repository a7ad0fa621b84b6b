defmodule Py.SharedDict.CallbackLog do
  @moduledoc false
  # Logs the Python SharedDict callbacks that raised or ran past their
  # timeout. The native side counts each failure in the dict's stats and
  # sends this process one message per failure (from its events thread), so
  # a failing callback costs the writer nothing and the log names the dict,
  # the event, the key and the error.

  use GenServer

  require Logger

  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(opts \\ []), do: GenServer.start_link(__MODULE__, opts, name: __MODULE__)

  @impl true
  def init(_opts) do
    :ok = Py.Native.shared_dict_callback_log()
    {:ok, nil}
  end

  @impl true
  def handle_info(
        {:py_shared_dict_callback_failed, {dict, id, event}, {key, reason, message}},
        state
      ) do
    what = if reason == :timeout, do: "timed out", else: "raised"

    Logger.warning(
      "SharedDict #{dict}: Python callback #{id} (#{event}) #{what} for key #{inspect(key)}: " <>
        message
    )

    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}
end
