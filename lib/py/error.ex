defmodule Py.Error do
  @moduledoc """
  An error returned (or raised by the bang functions) when a Python call fails.

  Every failure of `Py.eval/2`, `Py.exec/2`, `Py.call/4` and friends comes back
  as `{:error, %Py.Error{}}`, so callers can tell Python's own exceptions from
  failures of the bridge without parsing strings:

    * `type` is the Python exception class name as a string (`"ValueError"`,
      `"SyntaxError"`, `"ModuleNotFoundError"`, ...) when Python code raised,
      or an atom when pybridge itself gave up: `:timeout` (the call ran past its
      `timeout:` and was interrupted), `:conversion` (a term or a result has no
      counterpart on the other side), `:closed` (the context was closed),
      `:noconnection`, `:erpc` or `:remote_exit` (a `node:` call could not
      reach or complete on the other node), `:internal` (a bug in
      pybridge, caught so the context keeps working), or a start-up failure
      such as `:python_not_found`.
    * `message` is the exception's message.
    * `traceback` is the formatted Python traceback, or `nil` when there is none.

  ## Example

      iex> {:error, error} = Py.eval("int('x')")
      iex> error.type
      "ValueError"
      iex> Exception.message(error)
      "ValueError: invalid literal for int() with base 10: 'x'"
  """

  defexception [:type, :message, :traceback]

  @type t :: %__MODULE__{
          type: String.t() | atom,
          message: String.t(),
          traceback: String.t() | nil
        }

  @doc """
  Formats the error as `"Type: message"`.

  ## Example

      iex> Exception.message(%Py.Error{type: "ValueError", message: "boom"})
      "ValueError: boom"
      iex> Exception.message(%Py.Error{type: :timeout, message: "Python call exceeded 5000 ms"})
      "timeout: Python call exceeded 5000 ms"
  """
  @impl true
  @spec message(t) :: String.t()
  def message(%__MODULE__{type: type, message: message}) do
    type = if is_atom(type), do: Atom.to_string(type), else: to_string(type)

    case message do
      nil -> type
      "" -> type
      message -> type <> ": " <> to_string(message)
    end
  end
end
