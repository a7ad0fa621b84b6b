defmodule Py.OptionsTest do
  use ExUnit.Case, async: true

  alias Py.Options

  doctest Py.Options

  @schema [timeout: :timeout, kwargs: :kwargs, node: :node]

  describe "validate!/3" do
    test "returns the options, values normalised, in their order" do
      assert Options.validate!([], @schema, "f/1") == []

      assert Options.validate!([node: :a@b, kwargs: %{x: 1}, timeout: :infinity], @schema, "f/1") ==
               [node: :a@b, kwargs: %{"x" => 1}, timeout: :infinity]
    end

    test "an unknown option names itself, its value and the valid ones" do
      assert_raise ArgumentError,
                   "unknown option :colour for f/1: expected one of [:timeout, :kwargs, :node], " <>
                     "got: {:colour, :red}",
                   fn -> Options.validate!([timeout: 1, colour: :red], @schema, "f/1") end
    end

    test "options that are not a keyword list" do
      for bad <- [%{timeout: 1}, :timeout, [1, 2], [{"timeout", 1}], [timeout: 1] ++ :tail] do
        assert_raise ArgumentError,
                     "invalid options for f/1: expected a keyword list, got: #{inspect(bad)}",
                     fn -> Options.validate!(bad, @schema, "f/1") end
      end
    end

    test "a wrong type names the option, the expectation and the value" do
      assert_raise ArgumentError,
                   "invalid :node option for f/1: expected a node name (an atom), got: 1",
                   fn -> Options.validate!([node: 1], @schema, "f/1") end
    end

    test "every occurrence is checked; the first wins, as with Keyword.get/2" do
      opts = Options.validate!([timeout: 1, timeout: 2], @schema, "f/1")
      assert Keyword.get(opts, :timeout) == 1

      assert_raise ArgumentError, ~r/^invalid :timeout option for f\/1: /, fn ->
        Options.validate!([timeout: 1, timeout: -2], @schema, "f/1")
      end
    end
  end

  describe "each type's expectation" do
    # {type, good values => normalised, bad values, expected text}
    @cases [
      {:timeout, [{0, 0}, {4_294_967_295, 4_294_967_295}, {:infinity, :infinity}],
       [-1, 4_294_967_296, 1.0, "1", nil],
       "a non-negative integer (milliseconds, at most 4294967295) or :infinity"},
      {:pos_integer, [{1, 1}, {256, 256}], [0, -1, 1.0, :one], "a positive integer"},
      {:positive_number, [{1, 1}, {0.5, 0.5}], [0, -0.5, "1"], "a positive number"},
      {:node, [{:a@b, :a@b}, {nil, nil}], ["a@b", 1], "a node name (an atom)"},
      {{:in, [:batch, :normal]}, [{:batch, :batch}], [:other, "batch"], ":batch or :normal"},
      {{:in, [:main, :sub, :free]}, [{:sub, :sub}], [:x], ":main, :sub or :free"},
      {{:rejected, "no :node here"}, [], [:a@b, nil], "no :node here"},
      {:kwargs,
       [
         {[], %{}},
         {%{}, %{}},
         {[a: 1], %{"a" => 1}},
         {%{"b" => 2, :c => 3}, %{"b" => 2, "c" => 3}}
       ], [5, "a", MapSet.new()], "a keyword list or a map with atom or string keys"},
      {:locals, [{%{}, %{}}, {%{"y" => 2, x: 1}, %{"x" => 1, "y" => 2}}], [[x: 1], MapSet.new()],
       "a map with atom or string keys"},
      {:code, [{"1 + 1", "1 + 1"}, {[~c"1 +", " 1"], "1 + 1"}], [1, :code, [-1]],
       "Python code as a string"},
      {{:name, "method"}, [{:upper, "upper"}, {"upper", "upper"}], [nil, true, 1, ~c"upper"],
       "a Python method name as a non-empty atom or string"},
      {:module, [{:math, "math"}, {"os.path", "os.path"}], [nil, 1],
       ~s(a Python module name such as :math or "os.path")},
      {:args, [{[], []}, {[1, 2], [1, 2]}], [{1, 2}, %{}], "a list of positional arguments"},
      # Charlists are paths too: Erlang's sys.config gives strings as charlists.
      {:path, [{"/x", "/x"}, {~c"/x", "/x"}, {nil, nil}], [:x, [1, 2], []],
       "a path as a string, or nil"},
      {:paths,
       [
         {"/x", "/x"},
         {["/x", "/y"], ["/x", "/y"]},
         {~c"/x", "/x"},
         {[~c"/x", "/y"], ["/x", "/y"]},
         {nil, nil}
       ], [[:x], :x, [~c"/x", 1]], "a path or a list of paths (strings), or nil"}
    ]

    for {type, good, bad, expected} <- @cases do
      test "#{inspect(type)}" do
        type = unquote(Macro.escape(type))
        assert Options.expected(type) == unquote(expected)

        for {value, normalised} <- unquote(Macro.escape(good)) do
          assert Options.value!(value, type, "x") == normalised
        end

        for value <- unquote(Macro.escape(bad)) do
          assert_raise ArgumentError,
                       "invalid x: expected #{unquote(expected)}, got: #{inspect(value)}",
                       fn -> Options.value!(value, type, "x") end
        end
      end
    end

    test "what went wrong inside a value is said in parentheses" do
      for {value, type, detail} <- [
            {Foo.Bar, :module, "Foo.Bar is an Elixir module"},
            {Foo, {:name, "function"}, "Foo is an Elixir alias"},
            {"", :module, "it is empty"},
            {:"", {:name, "attribute"}, "it is empty"},
            {%{1 => :a}, :locals, "the key 1 is neither an atom nor a string"},
            {[:a], :kwargs, "the entry :a is not a {name, value} pair"},
            {[a: 1] ++ :tail, :kwargs, "it is an improper list"},
            {%{:x => 1, "x" => 2}, :kwargs, "a name is given both as an atom and as a string"},
            {%Py.Context{pool: :p, index: 1, ref: nil}, :code, "only a context was given"}
          ] do
        message =
          "invalid x: expected #{Options.expected(type)} (#{detail}), got: #{inspect(value)}"

        assert_raise ArgumentError, message, fn -> Options.value!(value, type, "x") end
      end
    end
  end

  describe "settings" do
    test "come from the application environment, else the default, and are checked" do
      assert Options.setting!(:pybridge_options_test_unset, :pos_integer, 3) == 3
      assert Options.setting!([], :pybridge_options_test_unset, :pos_integer, 3) == 3

      assert Options.setting!(
               [pybridge_options_test_unset: 5],
               :pybridge_options_test_unset,
               :pos_integer,
               3
             ) == 5

      assert_raise ArgumentError,
                   "invalid :pybridge_options_test_unset setting for :pybridge: expected a positive integer, got: 0",
                   fn ->
                     Options.setting!(
                       [pybridge_options_test_unset: 0],
                       :pybridge_options_test_unset,
                       :pos_integer,
                       3
                     )
                   end

      assert_raise ArgumentError, ~r/^invalid :pybridge_options_test_unset setting/, fn ->
        Options.setting!(:pybridge_options_test_unset, :pos_integer, :not_a_number)
      end
    end
  end

  describe "the callers use it" do
    test "Py.Runtime.start/1 checks its options before anything else" do
      assert_raise ArgumentError,
                   "invalid :venv option for Py.Runtime.start/1: expected a path as a string, or nil, got: 1",
                   fn -> Py.Runtime.start(venv: 1) end

      assert_raise ArgumentError, ~r/^unknown option :pyhton for Py.Runtime.start\/1: /, fn ->
        Py.Runtime.start(pyhton: "python3")
      end

      assert_raise ArgumentError,
                   ~s{invalid :python option for Py.Runtime.Python.discover/1: expected a path as a string, or nil, got: :python3},
                   fn -> Py.Runtime.Python.discover(python: :python3) end
    end

    test "Py.Context.Pools.config!/1 checks the pool settings" do
      assert_raise ArgumentError,
                   "invalid :num_contexts setting for :pybridge: expected a positive integer, got: 0",
                   fn -> Py.Context.Pools.config!(num_contexts: 0) end

      assert_raise ArgumentError,
                   "invalid :mode option for pool :io in the :pools setting for :pybridge: " <>
                     "expected :main or :subinterpreter, got: :isolated",
                   fn -> Py.Context.Pools.config!(pools: [io: [size: 2, mode: :isolated]]) end

      assert_raise ArgumentError,
                   "invalid :pools setting for :pybridge: expected each pool once, got: [io: 2, io: 3]",
                   fn -> Py.Context.Pools.config!(pools: [io: 2, io: 3]) end
    end
  end
end
