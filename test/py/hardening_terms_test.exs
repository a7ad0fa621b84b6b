defmodule Py.HardeningTermsTest do
  # Python cannot make BEAM terms: erlang.Pid and erlang.Ref come only from
  # the BEAM, and the bridge takes back only those it made.
  use ExUnit.Case, async: true

  # An erlang.Pid/Ref built behind the classes' back with `etf` and,
  # optionally, the seal of another value: what hostile code could try.
  @forge """
  (lambda erlang: (lambda obj: (
      erlang._Term.__dict__['_etf'].__set__(obj, etf),
      seal_of is not None and erlang._Term.__dict__['_seal'].__set__(obj, seal_of._seal),
      obj)[-1])(object.__new__(getattr(erlang, kind))))(__import__('erlang'))
  """

  defp forge(kind, etf, seal_of) do
    Py.eval(@forge, %{kind: kind, etf: Py.bytes(etf), seal_of: seal_of})
  end

  test "Python cannot call erlang.Pid or erlang.Ref" do
    etf = :erlang.term_to_binary(self())

    for kind <- ["Pid", "Ref"] do
      assert {:error, %Py.Error{type: "TypeError", message: message}} =
               Py.eval("getattr(__import__('erlang'), kind)(etf)", %{
                 kind: kind,
                 etf: Py.bytes(etf)
               })

      assert message =~ "come only from the BEAM"
    end
  end

  test "a forged pid or reference is refused on its way back, with a clear error" do
    pid = self()
    ref = make_ref()

    cases = [
      # Real terms' bytes, but no seal.
      {"Pid", :erlang.term_to_binary(pid), nil},
      {"Ref", :erlang.term_to_binary(ref), nil},
      # Junk the BEAM could not decode.
      {"Pid", <<131, 1, 2, 3>>, nil},
      # Another pid's bytes under a real pid's seal.
      {"Pid", :erlang.term_to_binary(spawn(fn -> :ok end)), pid},
      # A real pid's bytes and seal, passed off as a reference.
      {"Ref", :erlang.term_to_binary(pid), pid}
    ]

    for {kind, etf, seal_of} <- cases do
      assert {:error, %Py.Error{type: :conversion, message: message}} = forge(kind, etf, seal_of),
             inspect({kind, etf, seal_of})

      assert message =~ "erlang.#{kind} was not made by pybridge"
    end
  end

  test "a real pid whose term Python altered is refused" do
    other = :erlang.term_to_binary(spawn(fn -> :ok end))

    code = """
    (lambda erlang: (erlang._Term.__dict__['_etf'].__set__(p, other), p)[-1])(__import__('erlang'))
    """

    assert {:error, %Py.Error{type: :conversion, message: message}} =
             Py.eval(code, %{p: self(), other: Py.bytes(other)})

    assert message =~ "was not made by pybridge (or was altered)"
  end

  test "pids and references the BEAM sent go back as themselves, copies too" do
    pid = self()
    ref = make_ref()
    code = "(p, r, __import__('copy').copy(p), __import__('copy').deepcopy([r]), {p: r})"

    assert Py.eval(code, %{p: pid, r: ref}) == {:ok, {pid, ref, pid, [ref], %{pid => ref}}}
  end
end
