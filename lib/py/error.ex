defmodule Py.Error do
  # The bridge's error kinds, each listed once: the `kind` type, the table in
  # the moduledoc, `kinds/0` and `describe/1` are all made from this list.
  # {kind, group, what it means and when it happens}
  @kinds [
    {:timeout, :call,
     "The call ran past its `timeout:`. A queued call is dropped; a running one is " <>
       "interrupted with `pybridge.Timeout`. Also a `node:` call whose node did not answer in time."},
    {:conversion, :call,
     "An argument or a result has no counterpart on the other side (a fun, a port, " <>
       "an improper list, an unhashable key, nesting past the depth limit, ...). " <>
       "When an argument fails, the call does not run."},
    {:closed, :call,
     "The context was closed (a dedicated context whose owner closed it or exited) " <>
       "before the call ran."},
    {:not_started, :call, "The embedded Python interpreter is not running."},
    {:overloaded, :call,
     "The context already had `max_queue` calls waiting (`config :pybridge, max_queue:`, " <>
       "or the pool's): the call was refused at once and did not run. With " <>
       "`overload: :wait` the caller waits for room instead, and gets this error only " <>
       "when none came within its `timeout:`."},
    {:badarg, :call,
     "A process namespace was handed to a context it does not belong to (a bug in " <>
       "the caller of `Py.Native`; `Py` never does this)."},
    {:internal, :call,
     "A bug in pybridge itself (a Rust panic, or no executor thread could be " <>
       "started), caught so the context keeps working; please report it."},
    {:coalesce_crashed, :coalesce,
     "The shared execution of a coalesced call raised, threw, exited or was killed; every " <>
       "caller waiting for it gets this error, whose message names the process and the reason."},
    {:noconnection, :remote, "A `node:` call could not reach the node."},
    {:erpc, :remote, "A `node:` call failed in transport (`:erpc` gave another reason)."},
    {:remote_exit, :remote, "A `node:` call exited or was killed on the other node."},
    {:context_failed, :context,
     "`Py.Context.new/1` could not make the context (e.g. `mode: :subinterpreter` " <>
       "before Python 3.12)."},
    {:destroyed, :shared_dict,
     "The shared dict was destroyed (explicitly, or its owner exited)."},
    {:not_integer, :shared_dict, "`incr` met a value that is not an integer."},
    {:backend, :shared_dict,
     "The dict's backend failed: a SQLite file that is read-only, corrupt, on a full " <>
       "disk or in a missing directory, or locked by another process for too long. The " <>
       "operation changed nothing; the dict works again once the backend does."},
    {:full, :shared_dict,
     "A new key beyond the dict's `max_entries:` (raised by the bang functions)."},
    {:python_not_found, :startup, "The configured Python executable is missing or does not run."},
    {:unsupported_python, :startup,
     "The Python is not CPython 3.10 or newer (3.13 or newer when free-threaded)."},
    {:libpython_not_found, :startup,
     "The Python has no shared libpython (e.g. built without `--enable-shared`)."},
    {:venv_not_found, :startup,
     "The configured virtualenv (or the one given to `Py.activate_venv/1`) does not exist " <>
       "or has no site-packages for this Python."},
    {:nif_not_found, :startup,
     "pybridge's native library is not built (for this Python, when free-threaded)."},
    {:nif_load_failed, :startup, "The native library exists but would not load."},
    {:libpython_load_failed, :startup, "libpython exists but would not load."},
    {:init_failed, :startup, "Python loaded but its interpreter would not initialise."},
    {:already_started, :startup,
     "Another Python already runs in this VM; a VM cannot switch Pythons."},
    {:venv_failed, :runtime,
     "`Py.ensure_venv/3` could not create the venv or install its requirements; the " <>
       "message holds the command and its output."}
  ]

  @groups [
    call:
      "Returned by `Py.eval/1..4`, `Py.exec/1..3`, `Py.call/2..5`, `Py.getattr/3`, " <>
        "`Py.call_method/4` and `Py.reload/1`:",
    remote: "Returned by the same functions with the `node:` option:",
    coalesce: "Returned by `Py.Coalesce.run/4` and by calls with the `coalesce:` option:",
    context: "Raised by `Py.Context.new/1`:",
    shared_dict: "Raised or returned by `Py.SharedDict` functions:",
    startup:
      "Returned by `Py.Runtime.start/1` (and logged when the `:pybridge` application " <>
        "cannot start):",
    runtime: "Returned by the runtime controls (`Py.ensure_venv/3`):"
  ]

  @table Enum.map_join(@groups, "\n", fn {group, intro} ->
           rows =
             for {kind, ^group, meaning} <- @kinds, do: "| `#{inspect(kind)}` | #{meaning} |\n"

           "#{intro}\n\n| `type` | Meaning and when it happens |\n|---|---|\n#{rows}"
         end)

  @moduledoc """
  The error every failed Python call returns (and the bang functions raise).

  Failures come back as `{:error, %Py.Error{}}`, so a caller can tell
  Python's own exceptions from the bridge giving up without parsing strings:

    * `type` is the Python exception class's `__qualname__` as a string
      (`"ValueError"`, `"JSONDecodeError"`, `"Outer.Inner"`) when Python code
      raised, or one of the atoms below (see `t:kind/0`) when pybridge
      itself gave up;
    * `message` is `str()` of the exception, or a sentence saying what went
      wrong;
    * `traceback` is the traceback as Python prints it, or `nil`.

  Misuse on the BEAM side (an unknown option, locals that are not a map, an
  Elixir module where a Python module is expected) is a bug in the caller
  and raises `ArgumentError` instead, in the one format `Py.Options` describes.

  ## Kinds

  #{@table}
  ## Example

      iex> {:error, error} = Py.eval("int('x')")
      iex> error.type
      "ValueError"
      iex> Exception.message(error)
      "ValueError: invalid literal for int() with base 10: 'x'"
  """

  defexception [:type, :message, :traceback]

  @typedoc "The atom `type` of an error the bridge itself produced (see the table above)."
  @type kind ::
          unquote(
            @kinds
            |> Enum.map(&elem(&1, 0))
            |> Enum.reverse()
            |> Enum.reduce(&{:|, [], [&1, &2]})
          )

  @type t :: %__MODULE__{
          type: String.t() | kind,
          message: String.t() | nil,
          traceback: String.t() | nil
        }

  @doc """
  Every kind the bridge produces, in the order of the table above.

  ## Example

      iex> :timeout in Py.Error.kinds()
      true
  """
  @spec kinds() :: [kind, ...]
  def kinds, do: Enum.map(@kinds, &elem(&1, 0))

  @doc """
  What `kind` means and when it happens, in one sentence or two; `nil` for
  anything that is not one of `kinds/0`.

  ## Example

      iex> Py.Error.describe(:closed)
      "The context was closed (a dedicated context whose owner closed it or exited) before the call ran."
  """
  @spec describe(kind | term) :: String.t() | nil
  def describe(kind)

  for {kind, _group, meaning} <- @kinds do
    def describe(unquote(kind)), do: unquote(meaning)
  end

  def describe(_other), do: nil

  @doc """
  Formats the error as `"type: message"`. An error without a message prints
  its type, followed by what the kind means when it is one of `kinds/0`.

  ## Example

      iex> Exception.message(%Py.Error{type: "ValueError", message: "boom"})
      "ValueError: boom"
      iex> Exception.message(%Py.Error{type: :timeout, message: "Python call exceeded 5000 ms"})
      "timeout: Python call exceeded 5000 ms"
      iex> Exception.message(%Py.Error{type: :closed})
      "closed: The context was closed (a dedicated context whose owner closed it or exited) before the call ran."
  """
  @impl true
  @spec message(t) :: String.t()
  def message(%__MODULE__{type: type, message: message}) do
    case text(message) do
      "" -> with_description(text(type), describe(type))
      message -> text(type) <> ": " <> message
    end
  end

  defp with_description(type, nil), do: type
  defp with_description(type, description), do: type <> ": " <> description

  defp text(nil), do: ""
  defp text(atom) when is_atom(atom), do: Atom.to_string(atom)
  defp text(binary) when is_binary(binary), do: binary

  defp text(other) do
    case :unicode.characters_to_binary(other) do
      binary when is_binary(binary) -> binary
      _ -> inspect(other)
    end
  catch
    :error, _ -> inspect(other)
  end
end
