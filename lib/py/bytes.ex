defmodule Py.Bytes do
  @moduledoc """
  A binary that must reach Python as `bytes`, never as `str`.

  A plain BEAM binary is handed to Python as `str` when it is valid UTF-8 and
  as `bytes` otherwise. When the distinction matters (hashing, binary
  protocols, a payload that happens to be ASCII), wrap it with `Py.bytes/1`.
  Python `bytes` always come back as plain binaries.

  ## Example

      iex> Py.eval("type(b).__name__", %{b: Py.bytes("abc")})
      {:ok, "bytes"}
  """

  @enforce_keys [:data]
  defstruct [:data]

  @type t :: %__MODULE__{data: binary}
end
