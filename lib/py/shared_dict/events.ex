defmodule Py.SharedDict.Events do
  @moduledoc false
  # Event subscriptions of BEAM processes (Py.SharedDict.subscribe/2 and
  # unsubscribe/2). The NIF keeps the subscribers and their monitors; the
  # events thread sends {:shared_dict, sd, event, key} to each.

  alias Py.Native
  alias Py.SharedDict.{Dispatch, Options}

  def subscribe(sd, events) do
    Dispatch.native(sd, &Native.shared_dict_subscribe(&1, Options.events!(events, "subscribe/2")))
  end

  def unsubscribe(sd, events) do
    events = if events == nil, do: nil, else: Options.events!(events, "unsubscribe/2")
    Dispatch.native(sd, &Native.shared_dict_unsubscribe(&1, events))
  end
end
