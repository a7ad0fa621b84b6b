defmodule Py.Options do
  @moduledoc """
  Validates the options, arguments and settings of pybridge's public
  functions, so that every misuse fails the same way: at once, before any
  work is done, with an `ArgumentError` that names the option, what was
  expected and the value given.

  Each function declares what it takes as a *schema*, a keyword list of
  option names and types, next to the function:

      @eval_schema [timeout: :timeout, node: :node]
      opts = Py.Options.validate!(opts, @eval_schema, "Py.eval/3")

  `validate!/3` checks every entry (an unknown name is an error, a name given
  twice is checked twice and the first wins, as with `Keyword.get/2`) and
  returns the options with their values normalised (`:kwargs` becomes a map
  with string keys). `value!/3` checks one argument or setting the same way,
  and `setting!/3` reads and checks one key of the `:pybridge` application
  environment.

  ## Types

    * `:timeout` — milliseconds (at most 4,294,967,295, the BEAM's longest
      timer) or `:infinity`;
    * `:pos_integer`, `:positive_number`;
    * `:node` — a node name (an atom);
    * `{:in, values}` — one of `values`;
    * `{:rejected, why}` — never valid in this schema; `why` says what to do
      instead;
    * `:kwargs` — a keyword list or a map with atom or string keys; becomes a
      map with string keys;
    * `:locals` — a map with atom or string keys; becomes a map with string
      keys;
    * `:code` — Python source as a string or chardata; becomes a binary;
    * `{:name, what}` — a non-empty atom or string naming a Python function,
      method or attribute (`what`); becomes a string;
    * `:module` — a Python module name (`:math`, `"os.path"`), not an Elixir
      module; becomes a string;
    * `:args` — a list of positional arguments;
    * `:path` — a path (a string) or `nil`; `:paths` — a path, a list of
      paths, or `nil`;
    * `:coalesce` — `true`, `false` or a key (any term but `nil`);
    * `:group` — a coalescing group (any term but `nil`);
    * `:context` — a `%Py.Context{}`;
    * `:batch` — a stream's batch size: a positive integer up to 1,000,000.

  ## Errors

  One format for every failure:

      invalid <what> for <where>: expected <expectation>, got: <value>

  and, for a name no schema has,

      unknown option <name> for <where>: expected one of <names>, got: <entry>

  ## Example

      iex> Py.Options.validate!([timeout: 100], [timeout: :timeout], "Py.eval/3")
      [timeout: 100]
      iex> Py.Options.validate!([timeout: -1], [timeout: :timeout], "Py.eval/3")
      ** (ArgumentError) invalid :timeout option for Py.eval/3: expected a non-negative integer (milliseconds, at most 4294967295) or :infinity, got: -1
  """

  @typedoc "What a value must be; see the moduledoc."
  @type type ::
          :timeout
          | :pos_integer
          | :positive_number
          | :node
          | {:in, [term, ...]}
          | {:rejected, String.t()}
          | :kwargs
          | :locals
          | :code
          | {:name, String.t()}
          | :module
          | :args
          | :path
          | :paths
          | :coalesce
          | :group
          | :context
          | :batch

  @typedoc "The options a function takes: name => type."
  @type schema :: [{atom, type}]

  @max_timeout_ms Py.Limits.max_timeout_ms()

  @max_batch Py.Limits.max_stream_batch()

  @doc """
  Checks `opts` against `schema` and returns them with normalised values;
  `where` names the function for the error message (`"Py.eval/3"`).

  Raises `ArgumentError` when `opts` is not a keyword list, when it has a
  name `schema` does not list, or when a value is not of its type.

  ## Examples

      iex> Py.Options.validate!([kwargs: [base: 16]], [kwargs: :kwargs], "Py.call/4")
      [kwargs: %{"base" => 16}]
      iex> Py.Options.validate!([colour: :red], [timeout: :timeout], "Py.eval/3")
      ** (ArgumentError) unknown option :colour for Py.eval/3: expected one of [:timeout], got: {:colour, :red}
  """
  @spec validate!(term, schema, String.t()) :: keyword
  def validate!([], _schema, _where), do: []
  def validate!(opts, schema, where), do: validate!(opts, schema, where, opts)

  defp validate!([{key, value} | rest], schema, where, all) when is_atom(key) do
    case List.keyfind(schema, key, 0) do
      {^key, type} ->
        [
          {key, cast!(value, type, fn -> "#{inspect(key)} option for #{where}" end)}
          | validate!(rest, schema, where, all)
        ]

      nil ->
        raise ArgumentError,
              "unknown option #{inspect(key)} for #{where}: expected one of " <>
                "#{inspect(Keyword.keys(schema))}, got: #{inspect({key, value})}"
    end
  end

  defp validate!([], _schema, _where, _all), do: []

  defp validate!(_not_keyword, _schema, where, all),
    do: invalid!("options for #{where}", "a keyword list", all)

  @doc """
  Checks one value (an argument, or an entry of a setting) against `type` and
  returns it normalised; `what` names it for the error message
  (`"locals for Py.eval/2"`).

  ## Examples

      iex> Py.Options.value!(:math, :module, "module for Py.call/2")
      "math"
      iex> Py.Options.value!(Enum, :module, "module for Py.call/2")
      ** (ArgumentError) invalid module for Py.call/2: expected a Python module name such as :math or "os.path" (Enum is an Elixir module), got: Enum
  """
  @spec value!(term, type, String.t()) :: term
  def value!(value, type, what), do: cast!(value, type, fn -> what end)

  @doc """
  Reads `key` of the `:pybridge` application environment (`default` when it
  is not set), checks it against `type` and returns it normalised.

  ## Example

      iex> Py.Options.setting!(:no_such_setting, :pos_integer, 7)
      7
  """
  @spec setting!(atom, type, term) :: term
  def setting!(key, type, default) do
    key |> setting(default) |> cast!(type, fn -> "#{inspect(key)} setting for :pybridge" end)
  end

  @doc """
  Like `setting!/3`, for a start function whose `opts` may override the
  application environment: the value in `opts` wins when `key` is there.

  ## Example

      iex> Py.Options.setting!([num_contexts: 2], :num_contexts, :pos_integer, 1)
      2
  """
  @spec setting!(keyword, atom, type, term) :: term
  def setting!(opts, key, type, default) do
    case Keyword.fetch(opts, key) do
      {:ok, value} -> cast!(value, type, fn -> "#{inspect(key)} setting for :pybridge" end)
      :error -> setting!(key, type, default)
    end
  end

  defp setting(key, default), do: Application.get_env(:pybridge, key, default)

  @doc """
  Raises the `ArgumentError` every validation failure raises:
  `invalid <what>: expected <expected>, got: <inspect(value)>`. For checks a
  schema cannot express (a setting whose entries depend on each other).

  ## Example

      iex> Py.Options.invalid!(":pools setting for :pybridge", "a keyword list", :io)
      ** (ArgumentError) invalid :pools setting for :pybridge: expected a keyword list, got: :io
  """
  @spec invalid!(String.t(), String.t(), term) :: no_return
  def invalid!(what, expected, value) do
    raise ArgumentError, "invalid #{what}: expected #{expected}, got: #{inspect(value)}"
  end

  @doc """
  The expectation `type` stands for, as the error messages say it.

  ## Example

      iex> Py.Options.expected({:in, [:batch, :normal]})
      ":batch or :normal"
  """
  @spec expected(type) :: String.t()
  def expected(:timeout),
    do: "a non-negative integer (milliseconds, at most #{@max_timeout_ms}) or :infinity"

  def expected(:pos_integer), do: "a positive integer"
  def expected(:positive_number), do: "a positive number"
  def expected(:node), do: "a node name (an atom)"
  def expected({:in, [only]}), do: inspect(only)

  def expected({:in, values}) do
    {init, [last]} = Enum.split(values, -1)
    Enum.map_join(init, ", ", &inspect/1) <> " or " <> inspect(last)
  end

  def expected({:rejected, why}), do: why
  def expected(:kwargs), do: "a keyword list or a map with atom or string keys"
  def expected(:locals), do: "a map with atom or string keys"
  def expected(:code), do: "Python code as a string"
  def expected({:name, what}), do: "a Python #{what} name as a non-empty atom or string"
  def expected(:module), do: ~s(a Python module name such as :math or "os.path")
  def expected(:args), do: "a list of positional arguments"
  def expected(:path), do: "a path as a string, or nil"
  def expected(:paths), do: "a path or a list of paths (strings), or nil"
  def expected(:coalesce), do: "true, false or a coalescing key (any term but nil)"
  def expected(:group), do: "a coalescing group (any term but nil)"
  def expected(:context), do: "a %Py.Context{}"
  def expected(:batch), do: "a positive integer up to #{@max_batch}"

  # Returns the normalised value, or raises the one error format. `what` is a
  # function so that the hot path builds no strings.
  @compile {:inline, cast!: 3}
  defp cast!(value, type, what) do
    case cast(value, type) do
      {:ok, value} -> value
      :error -> invalid!(what.(), expected(type), value)
      {:error, detail} -> invalid!(what.(), expected(type) <> " (#{detail})", value)
    end
  end

  defp cast(t, :timeout) when is_integer(t) and t >= 0 and t <= @max_timeout_ms, do: {:ok, t}
  defp cast(:infinity, :timeout), do: {:ok, :infinity}
  defp cast(n, :pos_integer) when is_integer(n) and n > 0, do: {:ok, n}
  defp cast(n, :positive_number) when is_number(n) and n > 0, do: {:ok, n}
  defp cast(node, :node) when is_atom(node), do: {:ok, node}

  defp cast(value, {:in, values}) do
    if value in values, do: {:ok, value}, else: :error
  end

  defp cast(_value, {:rejected, _why}), do: :error
  defp cast(kwargs, :kwargs) when is_list(kwargs) or is_map(kwargs), do: names_map(kwargs)
  defp cast(locals, :locals) when is_map(locals) and not is_struct(locals), do: names_map(locals)
  defp cast(code, :code) when is_binary(code), do: {:ok, code}

  defp cast(code, :code) when is_list(code) do
    case :unicode.characters_to_binary(code) do
      binary when is_binary(binary) -> {:ok, binary}
      _ -> :error
    end
  catch
    :error, _ -> :error
  end

  defp cast(%Py.Context{}, :code), do: {:error, "only a context was given"}
  defp cast(name, {:name, _what}), do: name(name, false)
  defp cast(name, :module), do: name(name, true)
  defp cast(args, :args) when is_list(args), do: {:ok, args}
  defp cast(path, :path) when is_binary(path) or is_nil(path), do: {:ok, path}
  defp cast(path, :paths) when is_binary(path) or is_nil(path), do: {:ok, path}

  # An Erlang string (sys.config gives charlists) is a path too.
  defp cast(path, type) when type in [:path, :paths] and is_list(path) and path != [] do
    case charlist_path(path) do
      {:ok, path} -> {:ok, path}
      :error when type == :paths -> paths(path)
      :error -> :error
    end
  end

  defp cast(key, :coalesce) when key != nil, do: {:ok, key}
  defp cast(group, :group) when group != nil, do: {:ok, group}
  defp cast(%Py.Context{} = ctx, :context), do: {:ok, ctx}
  defp cast(n, :batch) when is_integer(n) and n > 0 and n <= @max_batch, do: {:ok, n}
  defp cast(_value, _type), do: :error

  defp paths(paths) do
    Enum.reduce_while(Enum.reverse(paths), {:ok, []}, fn
      path, {:ok, acc} when is_binary(path) -> {:cont, {:ok, [path | acc]}}
      path, {:ok, acc} -> path |> charlist_path() |> then(&add_path(&1, acc))
    end)
  end

  defp add_path({:ok, path}, acc), do: {:cont, {:ok, [path | acc]}}
  defp add_path(:error, _acc), do: {:halt, :error}

  @doc false
  # An Erlang string as a path: {:ok, binary}, or :error for any other term.
  @spec charlist_path(term) :: {:ok, String.t()} | :error
  def charlist_path(list) when is_list(list) and list != [] do
    if List.ascii_printable?(list) or :io_lib.printable_unicode_list(list),
      do: {:ok, List.to_string(list)},
      else: :error
  end

  def charlist_path(_), do: :error

  defp name(name, module?) when is_atom(name) and name not in [nil, true, false] do
    case Atom.to_string(name) do
      "Elixir." <> _ when module? -> {:error, "#{inspect(name)} is an Elixir module"}
      "Elixir." <> _ -> {:error, "#{inspect(name)} is an Elixir alias"}
      "" -> {:error, "it is empty"}
      string -> {:ok, string}
    end
  end

  defp name("", _module?), do: {:error, "it is empty"}
  defp name(name, _module?) when is_binary(name), do: {:ok, name}
  defp name(_other, _module?), do: :error

  # A map or keyword list with atom or string keys -> a map with string keys.
  defp names_map(empty) when empty == %{} or empty == [], do: {:ok, %{}}
  defp names_map(%_{}), do: :error

  defp names_map(enum) do
    converted =
      enum
      |> proper_list!()
      |> Map.new(fn
        {key, value} when is_binary(key) ->
          {key, value}

        {key, value} when is_atom(key) and key not in [nil, true, false] ->
          {Atom.to_string(key), value}

        {key, _value} ->
          throw({:error, "the key #{inspect(key)} is neither an atom nor a string"})

        other ->
          throw({:error, "the entry #{inspect(other)} is not a {name, value} pair"})
      end)

    if is_map(enum) and map_size(converted) != map_size(enum) do
      {:error, "a name is given both as an atom and as a string"}
    else
      {:ok, converted}
    end
  catch
    {:error, _detail} = error -> error
  end

  defp proper_list!(map) when is_map(map), do: map

  defp proper_list!(list) do
    if proper_list?(list), do: list, else: throw({:error, "it is an improper list"})
  end

  defp proper_list?([_ | rest]), do: proper_list?(rest)
  defp proper_list?([]), do: true
  defp proper_list?(_tail), do: false
end
