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

  @spin_code """
  import mmap, sys, time
  with open(path, 'r+b') as f:
      flags = mmap.mmap(f.fileno(), 2)
  switch = sys.getswitchinterval()
  # No forced GIL hand-over while spinning: a thread sharing this GIL could
  # not run until the loop ends.
  sys.setswitchinterval(100.0)
  try:
      flags[1] = 1
      deadline = time.monotonic() + limit
      while flags[0] == 0 and time.monotonic() < deadline:
          pass
      saw_flag = flags[0] == 1
  finally:
      sys.setswitchinterval(switch)
      flags.close()
  """

  @doc """
  Spins in pure Python in `ctx`, holding its GIL without ever handing it
  over, until byte 0 of the file at `path` (mapped in memory) is set, or
  `limit` seconds pass; sets byte 1 once spinning. Returns `{:ok, true}`
  when the flag was seen.
  """
  @spec spin_holding_gil(Py.Context.t(), Path.t(), pos_integer) :: term
  def spin_holding_gil(ctx, path, limit) do
    with :ok <- Py.exec(ctx, "path, limit = #{inspect(path)}, #{limit}", timeout: 10_000),
         :ok <- Py.exec(ctx, @spin_code, timeout: (limit + 30) * 1000) do
      Py.eval(ctx, "saw_flag")
    end
  end

  @doc "Sets byte 0 of the file at `path` from Python in `ctx`, through a memory map."
  @spec set_flag(Py.Context.t(), Path.t()) :: term
  def set_flag(ctx, path) do
    code = """
    import mmap
    with open(path, 'r+b') as f:
        flags = mmap.mmap(f.fileno(), 2)
    flags[0] = 1
    flags.close()
    """

    with :ok <- Py.exec(ctx, "path = #{inspect(path)}"),
         :ok <- Py.exec(ctx, code, timeout: 120_000) do
      {:ok, true}
    end
  end

  @doc """
  Makes a latch in `dir`: a FIFO that Python code blocks on, inside one C
  call that no interrupt can end, until `release/1` (see `latch_wait/0`).
  Tests use it to know that a call is still running, instead of guessing
  from how long it takes. The calling process holds the FIFO open, so what
  `release/1` writes waits there for a reader that comes later.
  Returns `{path, fd}`; `path` is what the Python code needs.
  """
  @spec latch(Path.t()) :: {Path.t(), :file.fd()}
  def latch(dir) do
    path = Path.join(dir, "latch-#{System.unique_integer([:positive])}")
    {_, 0} = System.cmd("mkfifo", [path])
    # Read and write: opening a FIFO so never blocks.
    {:ok, fd} = :file.open(path, [:read, :write, :raw, :binary])
    {path, fd}
  end

  @doc """
  Python code (for `Py.eval`, with local `latch`, the latch's path) that
  blocks until the latch is released and then evaluates to `"go"`. Just
  before blocking it creates the file `waiting?/1` looks for.
  """
  @spec latch_wait() :: String.t()
  def latch_wait do
    "(lambda os: (lambda fd: (open(latch + '.in', 'w').close(), os.read(fd, 2), os.close(fd))" <>
      "[1].decode())(os.open(latch, os.O_RDWR)))(__import__('os'))"
  end

  @doc "True once a Python call has reached the latch (it is blocked there until released)."
  @spec waiting?({Path.t(), :file.fd()}) :: boolean
  def waiting?({path, _fd}), do: File.exists?(path <> ".in")

  @doc "Releases one waiter of the latch, now or whenever it comes."
  @spec release({Path.t(), :file.fd()}) :: :ok
  def release({_path, fd}), do: :file.write(fd, "go")

  @doc """
  Makes an object in `ctx` whose finaliser writes the name of the thread it
  runs on to `latch_path <> ".thread"` and then blocks on the latch, and
  lets the BEAM drop it (the handle dies with a process of its own).
  """
  @spec drop_blocking_object(Py.Context.t(), Path.t()) :: :ok
  def drop_blocking_object(ctx, latch_path) do
    code = """
    type('Slow', (), {'__del__': lambda self, p=path, os=__import__('os'):
        (open(p + '.thread', 'w').write(
            open('/proc/self/task/%d/comm' % __import__('threading').get_native_id()).read().strip()),
         os.read(os.open(p, os.O_RDWR), 2))})()
    """

    # Through builtins.eval, so that the process gets no namespace (whose
    # release on exit would have a context worker collect at once).
    Task.async(fn ->
      {:ok, %Py.Object{}} = Py.call(ctx, :builtins, :eval, [code, %{"path" => latch_path}])
      :ok
    end)
    |> Task.await(30_000)
  end

  @doc """
  In a new context made with `opts`, binds `x`, then times out an exec that
  rebinds it, binds `y` and loops forever; returns what the process's next
  call sees: `{:ok, {1, false}}` when the timed-out exec left no trace.
  """
  @spec timed_out_exec_trace(keyword) :: term
  def timed_out_exec_trace(opts \\ []) do
    ctx = Py.Context.new(opts)

    try do
      :ok = Py.exec(ctx, "x = 1")

      {:error, %Py.Error{type: :timeout}} =
        Py.exec(ctx, "x = 2\ny = 3\nwhile True:\n    pass\n", timeout: 200)

      Py.eval(ctx, "(x, 'y' in globals())", %{}, timeout: 30_000)
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
