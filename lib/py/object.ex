defmodule Py.Object do
  @moduledoc """
  A handle on a Python object that has no plain BEAM counterpart.

  Results that are not numbers, strings, bytes, booleans, `None` or
  containers of those (a `datetime.date`, a class instance, a compiled regex,
  ...) come back as a `%Py.Object{}` instead of being stringified. The handle
  keeps the object alive in Python until the BEAM garbage-collects the last
  copy of the struct; it can be passed back as an argument or a local, read
  with `Py.getattr/3` and driven with `Py.call_method/4`.

    * `ref` is the NIF resource holding the Python reference (opaque);
    * `type` is the object's qualified type name (`"datetime.date"`);
    * `repr` is Python's `repr()` of the object (truncated), which is what
      `inspect/1` shows.

  A handle is only meaningful on the node that created it.

  ## Example

      iex> {:ok, date} = Py.call(:datetime, :date, [2024, 1, 2])
      iex> inspect(date)
      "#Py.Object<datetime.date(2024, 1, 2)>"
      iex> Py.call_method(date, :isoformat)
      {:ok, "2024-01-02"}
  """

  @enforce_keys [:ref]
  defstruct [:ref, :type, :repr]

  @type t :: %__MODULE__{ref: reference(), type: String.t(), repr: String.t()}

  defimpl Inspect do
    import Inspect.Algebra

    def inspect(%Py.Object{repr: repr, type: type}, _opts) do
      shown =
        cond do
          is_binary(repr) -> repr
          is_binary(type) -> type
          true -> "?"
        end

      concat(["#Py.Object<", shown, ">"])
    end
  end
end
