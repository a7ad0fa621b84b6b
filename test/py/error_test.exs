defmodule Py.ErrorTest do
  use ExUnit.Case, async: true

  describe "every kind the bridge produces" do
    test "is documented once, with what it means" do
      kinds = Py.Error.kinds()
      assert kinds == Enum.uniq(kinds)
      {:docs_v1, _, _, _, %{"en" => moduledoc}, _, _} = Code.fetch_docs(Py.Error)

      for kind <- kinds do
        description = Py.Error.describe(kind)
        assert is_binary(description) and String.length(description) > 20, inspect(kind)
        assert moduledoc =~ "| `#{inspect(kind)}` | #{description} |"
      end
    end

    test "prints as `kind: message`, and as `kind: meaning` without a message" do
      for kind <- Py.Error.kinds() do
        name = Atom.to_string(kind)
        with_message = %Py.Error{type: kind, message: "what happened"}
        assert Exception.message(with_message) == name <> ": what happened"

        for empty <- [nil, ""] do
          assert Exception.message(%Py.Error{type: kind, message: empty}) ==
                   name <> ": " <> Py.Error.describe(kind)
        end
      end
    end

    test "the kinds the call path produces today are all listed" do
      ctx = Py.Context.new()
      :ok = Py.Context.close(ctx)
      assert {:error, %Py.Error{type: :closed}} = Py.eval(ctx, "1")
      assert {:error, %Py.Error{type: :conversion}} = Py.eval("f", %{f: fn -> :ok end})
      assert {:error, %Py.Error{type: :timeout}} = Py.exec("while True: pass", timeout: 50)

      for kind <- [:closed, :conversion, :timeout], do: assert(kind in Py.Error.kinds())
    end
  end

  describe "Python exceptions" do
    test "print as `Class: message`, and the class alone without a message" do
      assert Exception.message(%Py.Error{type: "ValueError", message: "boom"}) ==
               "ValueError: boom"

      assert Exception.message(%Py.Error{type: "StopIteration", message: ""}) == "StopIteration"
      assert Exception.message(%Py.Error{type: "Outer.Inner", message: nil}) == "Outer.Inner"
    end

    test "a raised error's message is what Python said" do
      assert_raise Py.Error, "KeyError: 'k'", fn -> Py.eval!("{}['k']") end
      assert_raise Py.Error, "AssertionError", fn -> Py.exec!("assert False") end
    end
  end

  test "unknown atoms and odd messages still print" do
    assert Exception.message(%Py.Error{type: :something_new}) == "something_new"
    assert Exception.message(%Py.Error{type: :x, message: ~c"chars"}) == "x: chars"
    assert Exception.message(%Py.Error{type: :x, message: {:odd, 1}}) == "x: {:odd, 1}"
  end
end
