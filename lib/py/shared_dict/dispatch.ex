defmodule Py.SharedDict.Dispatch do
  @moduledoc false
  # How an operation of Py.SharedDict reaches its NIF: on a normal (or
  # dirty-CPU) scheduler for the memory backend, through the one dirty-IO
  # NIF (`shared_dict_io`) for a backend that waits on a disk or network;
  # and how the NIFs' answers become {:ok, _} | {:error, exception}.

  alias Py.Native
  alias Py.SharedDict

  defguardp is_handle(sd) when is_struct(sd, SharedDict) and is_reference(sd.ref)

  # Runs operation `op` of the dict: `fun` (its NIF on a normal or dirty-CPU
  # scheduler) for the memory backend; for a backend that waits on a disk or
  # network, the same operation through the one dirty-IO NIF.
  def run(%SharedDict{io: true} = sd, op, args, _fun),
    do: native(sd, &Native.shared_dict_io(&1, op, args))

  def run(sd, _op, _args, fun), do: native(sd, fun)

  # A get on a disk- or network-backed dict. A backend that shares round
  # trips between concurrent reads (Redis) takes it without a dirty
  # scheduler when a read is on its way, and answers by message; else, and
  # for a read it gives back ({tag, :retry}: a big value, a closed dict),
  # the dirty IO NIF.
  def fetch_versioned(%SharedDict{io: true} = sd, key) do
    tag = make_ref()

    case native(sd, &Native.shared_dict_get_later(&1, key, tag)) do
      :wait ->
        receive do
          {^tag, :retry} -> native(sd, &Native.shared_dict_io(&1, :get, [key]))
          {^tag, answer} -> error_of(answer)
        end

      :dirty ->
        native(sd, &Native.shared_dict_io(&1, :get, [key]))
    end
  end

  def fetch_versioned(sd, key) do
    case native(sd, &Native.shared_dict_get(&1, key)) do
      :dirty -> native(sd, &Native.shared_dict_get_dirty(&1, key))
      result -> result
    end
  end

  def write(sd, key, value, ttl, cond) do
    result =
      case sd do
        %SharedDict{io: true} ->
          io_put(sd, key, value, ttl, cond)

        _ ->
          case native(sd, &Native.shared_dict_put(&1, key, value, ttl, cond)) do
            :dirty -> native(sd, &Native.shared_dict_put_dirty(&1, key, value, ttl, cond))
            result -> result
          end
      end

    case result do
      {:ok, _version} -> :ok
      {:error, _reason} = error -> error_of(error)
    end
  end

  # A put on a disk- or network-backed dict. A backend that queues writes
  # (Redis: concurrent puts share round trips) takes it without a dirty
  # scheduler and answers by message once the write is done; the others,
  # and a write it does not queue, go through the dirty IO NIF.
  defp io_put(sd, key, value, ttl, cond) do
    tag = make_ref()

    case native(sd, &Native.shared_dict_put_later(&1, key, value, ttl, cond, tag)) do
      :wait ->
        receive do
          {^tag, :retry} -> native(sd, &Native.shared_dict_io(&1, :put, [key, value, ttl, cond]))
          {^tag, answer} -> answer
        end

      :dirty ->
        native(sd, &Native.shared_dict_io(&1, :put, [key, value, ttl, cond]))

      answer ->
        answer
    end
  end

  # A NIF's answer (returned or sent by message) with its error as a
  # `Py.Error`.
  defp error_of({:error, {type, message, traceback}}) when is_atom(type) and is_binary(message),
    do: {:error, %Py.Error{type: type, message: message, traceback: traceback}}

  defp error_of(answer), do: answer

  # Runs a NIF on the handle; a handle that is no shared dict of this node
  # raises ArgumentError naming the problem (the NIF only says :badarg).
  def native(sd, fun) when is_handle(sd) do
    error_of(fun.(sd.ref))
  rescue
    e in ArgumentError ->
      if match?(%ArgumentError{message: "argument error"}, e) do
        Py.Options.invalid!(
          "shared dict handle",
          "a handle from Py.SharedDict.new/1 or lookup/1 on this node",
          sd
        )
      else
        reraise e, __STACKTRACE__
      end
  end

  def native(other, _fun) do
    Py.Options.invalid!(
      "shared dict handle",
      "a handle from Py.SharedDict.new/1 or lookup/1",
      other
    )
  end

  def bang!(:ok), do: :ok
  def bang!({:ok, value}), do: value
  def bang!({:error, %Py.Error{} = error}), do: raise(error)

  def bang!({:error, reason}) when is_atom(reason),
    do: raise(Py.Error, type: reason, message: reason_message(reason))

  defp reason_message(:full), do: "the shared dict is full (max_entries)"
end
