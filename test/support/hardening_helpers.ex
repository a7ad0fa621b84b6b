defmodule Py.HardeningHelpers do
  @moduledoc false
  # Scenarios of the hardening tests that must run inside one BEAM process
  # (each `:peer.call` runs in a process of its own, and a namespace belongs
  # to one process), in this VM or in a peer VM embedding another Python.

  @hook_code %{
    settrace: """
    import sys
    events = []
    def tracer(frame, event, arg):
        events.append(event)
        return tracer
    def work():
        return sum(range(3))
    sys.settrace(tracer)
    try:
        result = work()
    finally:
        sys.settrace(None)
    seen = ('call' in events, 'line' in events)
    """,
    setprofile: """
    import sys
    events = []
    def profiler(frame, event, arg):
        events.append(event)
    def work():
        return sum(range(3))
    sys.setprofile(profiler)
    try:
        result = work()
    finally:
        sys.setprofile(None)
    seen = ('call' in events, 'return' in events)
    """,
    cprofile: """
    import cProfile
    def work():
        return sum(range(3))
    profile = cProfile.Profile()
    result = profile.runcall(work)
    profile.create_stats()
    seen = (any(f[2] == 'work' for f in profile.stats), True)
    """
  }

  @doc """
  Times out a call to a C function (no bytecode runs after the interrupt
  lands, so it stays pending) in a one-worker context made with `opts`, then
  runs code under the tracing `hook` on the same worker. Returns
  `{timed_out, hooked}`; `hooked` is `{:ok, {3, {true, true}}}` when the hook
  worked.
  """
  @spec hook_after_timeout(:settrace | :setprofile | :cprofile, keyword) :: {term, term}
  def hook_after_timeout(hook, opts \\ []) do
    ctx = Py.Context.new(Keyword.put(opts, :max_workers, 1))

    try do
      timed_out = Py.call(ctx, :time, :sleep, [0.5], timeout: 50)
      # The interrupted call has returned: its worker is free again.
      wait_until(fn -> Py.Context.info(ctx).in_flight == 0 end)
      # A hang would time out; 10 s is plenty for a few traced lines.
      hooked =
        with :ok <- Py.exec(ctx, Map.fetch!(@hook_code, hook), timeout: 10_000) do
          Py.eval(ctx, "(result, seen)", %{}, timeout: 10_000)
        end

      {timed_out, hooked}
    after
      Py.Context.close(ctx)
    end
  end

  defp wait_until(fun, tries \\ 500) do
    cond do
      fun.() -> :ok
      tries == 0 -> raise "condition never became true"
      true -> Process.sleep(10) && wait_until(fun, tries - 1)
    end
  end
end
