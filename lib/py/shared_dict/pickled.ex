defmodule Py.SharedDict.Pickled do
  @moduledoc """
  A value Python stored in a `Py.SharedDict` that is not plain data.

  Python objects without a BEAM counterpart (a `decimal.Decimal`, a
  dataclass instance) are pickled when Python stores them. The BEAM sees
  them as this struct: `type` says what it is (`"module.Class"`), `data` is
  the pickle. Storing the struct again, from either side, stores the same
  object, and Python reads it back unpickled.
  """

  @enforce_keys [:type, :data]
  defstruct [:type, :data]

  @type t :: %__MODULE__{type: String.t(), data: binary}
end
