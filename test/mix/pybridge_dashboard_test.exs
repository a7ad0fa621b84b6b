defmodule Mix.Tasks.Pybridge.DashboardTest do
  # Without the Phoenix packages (as in this suite) the task says what is
  # missing instead of failing somewhere inside Phoenix.
  use ExUnit.Case, async: false

  alias Mix.Tasks.Pybridge.Dashboard

  test "without the Phoenix deps it names the missing packages and how to add them" do
    if Code.ensure_loaded?(Phoenix.LiveDashboard.Router) do
      flunk("phoenix_live_dashboard is loaded; this test is about its absence")
    end

    assert Dashboard.missing_deps() == [
             :phoenix,
             :phoenix_live_view,
             :phoenix_live_dashboard,
             :bandit
           ]

    Mix.env(:dev)

    try do
      error = assert_raise Mix.Error, fn -> Dashboard.run([]) end
      assert error.message =~ "lacks: phoenix, phoenix_live_view, phoenix_live_dashboard, bandit"
      assert error.message =~ ~s({:phoenix_live_dashboard, "~> 0.8"})
      assert error.message =~ "additional_pages: [python: Py.LiveDashboard]"
    after
      Mix.env(:test)
    end
  end

  test "it refuses to run outside MIX_ENV=dev" do
    error = assert_raise Mix.Error, fn -> Dashboard.run([]) end
    assert error.message =~ "runs only with MIX_ENV=dev"
  end
end
