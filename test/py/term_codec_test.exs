defmodule Py.TermCodecTest do
  # The NIF's term codec (native/pybridge/src/nif/term/) at its edges, through
  # the real NIF: a term goes to Python and comes back, and Python says what
  # it received. Its byte-level half (big integers and non-Latin-1 atoms in
  # the external term format) also has `cargo test` coverage in
  # native/pybridge/src/convert/etf.rs.
  use ExUnit.Case, async: true

  defp round_trip(value), do: Py.eval("v", %{v: value})

  defp label(n) when abs(n) < 0x1_0000_0000_0000_0000_0000_0000_0000_0000,
    do: Integer.to_string(n)

  defp label(n),
    do: "#{if n < 0, do: "-"}(an integer of #{byte_size(:binary.encode_unsigned(abs(n)))} bytes)"

  describe "integers" do
    @boundaries [
      0,
      1,
      2 ** 31 - 1,
      2 ** 31,
      2 ** 63 - 1,
      2 ** 63,
      2 ** 64 - 1,
      2 ** 64,
      2 ** 2039,
      2 ** 2040,
      2 ** 100_000
    ]

    test "at the 32- and 64-bit boundaries and beyond, both signs, cross unchanged" do
      for n <- @boundaries, value <- [n, -n, n + 1, -n - 1] do
        assert round_trip(value) == {:ok, value}, label(value)

        # In base 16: Python limits int() of long decimal strings.
        assert Py.eval("v == int(s, 16)", %{v: value, s: Integer.to_string(value, 16)}) ==
                 {:ok, true},
               "Python got another value for #{label(value)}"
      end
    end

    test "Python's results at the boundaries come back exact" do
      for n <- @boundaries, value <- [n, -n, n + 1, -n - 1] do
        assert Py.eval("int(s, 16)", %{s: Integer.to_string(value, 16)}) == {:ok, value},
               label(value)
      end
    end
  end

  describe "floats" do
    test "extremes and negative zero cross unchanged" do
      for value <- [
            5.0e-324,
            -5.0e-324,
            2.2250738585072014e-308,
            1.7976931348623157e308,
            -1.7976931348623157e308,
            0.1
          ] do
        assert round_trip(value) == {:ok, value}
      end

      assert {:ok, negative_zero} = round_trip(-0.0)
      assert Py.eval("__import__('math').copysign(1, v)", %{v: negative_zero}) == {:ok, -1.0}
      assert Py.eval("__import__('math').copysign(1, v)", %{v: -0.0}) == {:ok, -1.0}
    end
  end

  describe "containers" do
    test "nested maps with any keys cross unchanged" do
      value = %{
        "a" => %{"b" => %{1 => [%{}, %{{1, "x"} => [1.5, nil]}]}},
        {:t, 2} => %{(MapSet.new([1]) |> MapSet.to_list() |> List.first()) => "one"},
        7 => %{}
      }

      expected = %{
        "a" => %{"b" => %{1 => [%{}, %{{1, "x"} => [1.5, nil]}]}},
        {"t", 2} => %{1 => "one"},
        7 => %{}
      }

      assert round_trip(value) == {:ok, expected}
    end

    test "maps nested deeply keep their structure" do
      nested = Enum.reduce(1..500, :leaf, fn i, acc -> %{"k#{i}" => acc} end)
      assert {:ok, back} = round_trip(nested)
      assert Enum.reduce(500..1//-1, back, fn i, acc -> Map.fetch!(acc, "k#{i}") end) == "leaf"
    end

    test "improper lists are a :conversion error wherever they are" do
      for value <- [
            [1 | 2],
            [[1, 2 | 3]],
            %{"k" => [:a | :b]},
            {1, [2 | 3]},
            ([1, 2, 3 | []] ++ (4 |> List.wrap())) |> then(&[&1 | :tail])
          ] do
        assert {:error, %Py.Error{type: :conversion, message: message}} = round_trip(value)
        assert message =~ "improper list"
      end
    end
  end

  describe "atoms" do
    test "atoms at the length limit become str, Latin-1 or not" do
      for char <- ["a", "é", "λ", "😀"] do
        atom = String.to_atom(String.duplicate(char, 255))
        assert Py.eval("len(v)", %{v: atom}) == {:ok, 255}
        assert round_trip(atom) == {:ok, Atom.to_string(atom)}
      end
    end
  end
end
