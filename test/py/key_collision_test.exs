defmodule Py.KeyCollisionTest do
  # Keys that are distinct on one side and equal on the other. Before these
  # were checked, a small Python dict kept one of the values without a word
  # and a large one (more than 32 keys, a hash map on the BEAM) crashed the
  # VM; a BEAM map kept the later value.
  use ExUnit.Case, async: true

  setup do
    :ok =
      Py.exec("""
      class SameText(str):
          # Equal to no other object, so it sits in a dict beside 'a'.
          def __hash__(self): return 1
          def __eq__(self, other): return self is other

      def with_filler(n, pairs):
          d = {i: i for i in range(n)}
          for k, v in pairs: d[k] = v
          return d
      """)
  end

  describe "Python to BEAM" do
    for n <- [0, 30, 1000] do
      test "two NaN keys among #{n} others are an error naming the key" do
        assert {:error, %Py.Error{type: :conversion, message: message}} =
                 Py.eval("with_filler(n, [(float('nan'), 1), (float('nan'), 2)])", %{
                   n: unquote(n)
                 })

        assert message ==
                 "cannot convert a dict whose keys nan and nan would both become the BEAM " <>
                   "term :nan, which a map holds only once"
      end

      test "a str subclass key beside the equal str among #{n} others is an error" do
        assert {:error, %Py.Error{type: :conversion, message: message}} =
                 Py.eval("with_filler(n, [('a', 1), (SameText('a'), 2)])", %{n: unquote(n)})

        assert message =~ ~s(would both become the BEAM term "a")
      end

      test "str and bytes keys of the same text among #{n} others are an error" do
        assert {:error, %Py.Error{type: :conversion, message: message}} =
                 Py.eval("with_filler(n, [(('k', 1), 1), ((b'k', 1), 2)])", %{n: unquote(n)})

        assert message =~ ~s(would both become the BEAM term {"k", 1})
      end
    end

    test "set members that become one term are an error" do
      assert {:error, %Py.Error{type: :conversion, message: message}} =
               Py.eval("{float('nan'), float('nan'), 1}")

      assert message =~ "set whose members nan and nan would both become the BEAM term :nan"
    end

    test "distinct keys of mixed types convert" do
      assert {:ok, map} =
               Py.eval("with_filler(100, [(1.5, 'f'), ('a', 's'), (b'\\xff', 'b'), (None, 'n')])")

      assert map_size(map) == 104
      assert %{1.5 => "f", "a" => "s", <<255>> => "b", nil => "n"} = map
    end
  end

  describe "BEAM to Python" do
    test "an atom and a binary of the same text are an error naming both" do
      assert {:error, %Py.Error{type: :conversion, message: message}} =
               Py.eval("d", %{d: %{"a" => 1, :a => 2}})

      assert message ==
               ~s(cannot convert a map whose keys :a and "a" are equal in Python, ) <>
                 "and a dict holds each only once"
    end

    test "1, 1.0 and true are an error, in maps and in MapSets" do
      assert {:error, %Py.Error{type: :conversion, message: message}} =
               Py.eval("d", %{d: %{1 => :int, 1.0 => :float}})

      assert message =~ "keys 1 and 1.0 are equal in Python"

      assert {:error, %Py.Error{type: :conversion, message: message}} =
               Py.eval("d", %{d: %{true => :bool, 1 => :int}})

      assert message =~ "keys 1 and true are equal in Python" or
               message =~ "keys true and 1 are equal in Python"

      assert {:error, %Py.Error{type: :conversion, message: message}} =
               Py.eval("s", %{s: MapSet.new([1, 1.0])})

      assert message =~ "MapSet whose members"
    end

    test "a large map with colliding keys is an error too" do
      map = Map.new(1..1000, &{"k#{&1}", &1}) |> Map.put(:k7, :atom)

      assert {:error, %Py.Error{type: :conversion, message: message}} = Py.eval("d", %{d: map})
      assert message =~ ~s(keys "k7" and :k7) or message =~ ~s(keys :k7 and "k7")
    end

    test "%Py.Object{} keys whose objects are equal are an error" do
      {:ok, one} = Py.eval("__import__('decimal').Decimal(1)")
      {:ok, other} = Py.eval("__import__('decimal').Decimal('1.0')")

      assert {:error, %Py.Error{type: :conversion, message: message}} =
               Py.eval("d", %{d: %{one => :a, other => :b}})

      assert message =~ "are equal in Python"
    end

    test "keys that stay distinct in Python convert" do
      assert {:ok, 4} = Py.eval("len(d)", %{d: %{"a" => 1, Py.bytes("a") => 2, 1.5 => 3, 2 => 4}})
    end
  end
end
