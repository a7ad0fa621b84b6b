defmodule Py.HardeningFinalizerTest do
  # Python finalisers never run on the bridge's own threads: a finaliser
  # that blocks holds up neither overflow workers nor deadlines. Not async:
  # which thread collects a released object depends on what else runs.
  use ExUnit.Case, async: false

  import Py.TestHelpers
  alias Py.HardeningHelpers

  @bridge_threads ["py-monitor", "py-interrupter"]

  @tag :tmp_dir
  test "a blocking finaliser stalls neither overflow nor deadlines", %{tmp_dir: dir} do
    owner = Py.Context.new()
    {path, _} = slow = HardeningHelpers.latch(dir)

    try do
      :ok = HardeningHelpers.drop_blocking_object(owner, path)
      assert eventually(fn -> File.exists?(path <> ".thread") end, 10_000)
      thread = File.read!(path <> ".thread")
      refute thread in @bridge_threads, "the finaliser ran on #{thread}"

      # Overflow: a quick call gets past a blocked one (the monitor must
      # notice the home worker is stuck and start another worker).
      ctx = Py.Context.new(max_workers: 4)
      {blocker_path, _} = blocker = HardeningHelpers.latch(dir)
      wait = HardeningHelpers.latch_wait()
      blocked = Task.async(fn -> Py.eval(ctx, wait, %{latch: blocker_path}) end)
      assert eventually(fn -> HardeningHelpers.waiting?(blocker) end, 10_000)
      assert Py.eval(ctx, "6 * 7", %{}, timeout: 10_000) == {:ok, 42}
      HardeningHelpers.release(blocker)
      assert Task.await(blocked, 10_000) == {:ok, "go"}

      # Deadlines: a call whose caller died is interrupted by the monitor,
      # so the context's only worker is free again.
      single = Py.Context.new(max_workers: 1)

      caller = spawn(fn -> Py.exec(single, "while True:\n    pass\n", timeout: 200) end)

      assert eventually(fn -> Py.Context.info(single).in_flight == 1 end)
      Process.exit(caller, :kill)
      assert Py.eval(single, "1 + 1", %{}, timeout: 10_000) == {:ok, 2}
    after
      HardeningHelpers.release(slow)
    end
  end
end
