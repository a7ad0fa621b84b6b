defmodule Py.SharedDict.Locks do
  @moduledoc false
  # Per-key locks for BEAM processes (Py.SharedDict.lock/3 and friends).
  #
  # The NIF never waits: it takes the lock, or registers the caller as a
  # waiter and answers :wait. The waiter is sent
  # {:"$py_shared_dict_unlocked", dict_id, key} when the lock is released
  # (by unlock, by its holder's exit, or by destroy) and tries again; so a
  # waiting process sits in `receive`, never on a scheduler.

  alias Py.Native
  alias Py.SharedDict
  alias Py.SharedDict.{Dispatch, Options}

  @lock_schema [timeout: :timeout]

  def lock(sd, key, opts) do
    key = Options.key!(key, "lock/3")
    opts = Py.Options.validate!(opts, @lock_schema, "Py.SharedDict.lock/3")

    deadline =
      case Keyword.get(opts, :timeout, 5_000) do
        :infinity -> :infinity
        ms -> System.monotonic_time(:millisecond) + ms
      end

    acquire(sd, key, deadline)
  end

  defp acquire(sd, key, deadline) do
    case call(sd, :lock, key) do
      :ok ->
        :ok

      :wait ->
        id = sd.id

        receive do
          {:"$py_shared_dict_unlocked", ^id, ^key} -> acquire(sd, key, deadline)
        after
          wait_ms(sd, deadline) ->
            if remaining(deadline) > 0,
              do: acquire(sd, key, deadline),
              else: give_up(sd, key, deadline)
        end

      {:error, _} = error ->
        error
    end
  end

  # A lock on a server (Redis) is released by another node or lapses with
  # its lease; both are announced, and a waiter also tries again every
  # @poll_ms in case an announcement was lost with a connection.
  @poll_ms 1_000
  defp wait_ms(%SharedDict{io: true}, :infinity), do: @poll_ms
  defp wait_ms(%SharedDict{io: true}, deadline), do: min(remaining(deadline), @poll_ms)
  defp wait_ms(_sd, deadline), do: remaining(deadline)

  # A dict whose backend does I/O takes its locks on a dirty IO scheduler.
  defp call(%SharedDict{io: true} = sd, op, key),
    do: Dispatch.native(sd, &Native.shared_dict_io(&1, op, [key]))

  defp call(sd, :lock, key), do: Dispatch.native(sd, &Native.shared_dict_lock(&1, key))
  defp call(sd, :unlock, key), do: Dispatch.native(sd, &Native.shared_dict_unlock(&1, key))

  defp call(sd, :lock_cancel, key),
    do: Dispatch.native(sd, &Native.shared_dict_lock_cancel(&1, key))

  # The lock may have been released just as the wait ran out: one last
  # attempt, after leaving the waiters and flushing a late wake-up.
  defp give_up(sd, key, _deadline) do
    call(sd, :lock_cancel, key)
    id = sd.id

    receive do
      {:"$py_shared_dict_unlocked", ^id, ^key} -> :ok
    after
      0 -> :ok
    end

    case call(sd, :lock, key) do
      :ok ->
        :ok

      :wait ->
        call(sd, :lock_cancel, key)
        {:error, :timeout}

      {:error, _} = error ->
        error
    end
  end

  defp remaining(:infinity), do: :infinity
  defp remaining(deadline), do: max(deadline - System.monotonic_time(:millisecond), 0)

  def unlock(sd, key) do
    case call(sd, :unlock, Options.key!(key, "unlock/2")) do
      true -> :ok
      false -> {:error, :not_held}
      {:error, _} = error -> error
    end
  end

  def with_lock(sd, key, fun, opts) do
    key = Options.key!(key, "with_lock/4")

    case lock(sd, key, opts) do
      :ok ->
        try do
          {:ok, fun.()}
        after
          unlock(sd, key)
        end

      error ->
        error
    end
  end
end
