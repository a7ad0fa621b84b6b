defmodule Py.HardeningInterruptTest do
  # A timed-out call leaves no trace on the thread that ran it. Not async:
  # contexts with one worker, and peer VMs embedding the other Pythons.
  use ExUnit.Case, async: false

  import Py.TestHelpers
  alias Py.HardeningHelpers

  @moduletag timeout: 300_000

  @hooks [:settrace, :setprofile, :cprofile]
  @hooked {:ok, {3, {true, true}}}

  defp call(peer, module, fun, args), do: :peer.call(peer, module, fun, args, 130_000)

  describe "tracing hooks after an interrupt on the same worker" do
    for hook <- @hooks do
      test "#{hook} works on this VM's Python" do
        assert {{:error, %Py.Error{type: :timeout}}, hooked} =
                 HardeningHelpers.hook_after_timeout(unquote(hook))

        assert hooked == @hooked
      end
    end

    @tag :debian_python
    test "every hook works on Debian's Python 3.11" do
      peer = start_python_peer("/usr/bin/python3.11")

      for hook <- @hooks do
        assert {{:error, %Py.Error{type: :timeout}}, @hooked} =
                 call(peer, HardeningHelpers, :hook_after_timeout, [hook])
      end
    end

    for {version, var} <- [
          {"3.12", "PYBRIDGE_TEST_PY312"},
          {"3.14", "PYBRIDGE_TEST_PY314"},
          {"3.14t", "PYBRIDGE_TEST_PY314T"}
        ] do
      test "every hook works on Python #{version}" do
        peer = start_python_peer(python!(unquote(var)))

        modes = if unquote(version) == "3.14t", do: [:main], else: [:main, :subinterpreter]

        # 3.12's _lsprof (cProfile) does not load in sub-interpreters.
        for mode <- modes,
            hook <- @hooks,
            {unquote(version), mode, hook} != {"3.12", :subinterpreter, :cprofile} do
          assert {{:error, %Py.Error{type: :timeout}}, hooked} =
                   call(peer, HardeningHelpers, :hook_after_timeout, [hook, [mode: mode]])

          assert {mode, hook, hooked} == {mode, hook, @hooked}
        end
      end
    end
  end
end
