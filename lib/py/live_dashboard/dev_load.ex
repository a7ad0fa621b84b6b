defmodule Py.LiveDashboard.DevLoad do
  @moduledoc false
  # The synthetic load of `mix pybridge.dashboard`: a few processes that keep
  # every tab of `Py.LiveDashboard` moving. Each one sleeps between rounds,
  # so the load is steady and light (a few hundred calls per second).
  use Supervisor

  @sessions "dashboard.sessions"
  @cache "dashboard.cache"

  @doc false
  @spec start_link(term) :: Supervisor.on_start()
  def start_link(_), do: Supervisor.start_link(__MODULE__, nil, name: __MODULE__)

  @impl true
  def init(nil) do
    sessions = dict(name: @sessions)
    cache = dict(name: @cache, max_entries: 500, evict: :lru)

    children =
      for(i <- 1..6, do: loop({:caller, i}, fn -> caller(i) end)) ++
        for(i <- 1..4, do: loop({:coalescer, i}, &coalescer/0)) ++
        [
          loop(:python_coalescer, &python_coalescer/0),
          loop(:sessions, fn -> sessions(sessions) end),
          loop(:cache, fn -> cache(cache) end)
        ]

    Supervisor.init(children, strategy: :one_for_one, max_restarts: 100)
  end

  defp dict(opts) do
    case Py.SharedDict.new(opts) do
      {:ok, sd} -> sd
      {:error, :exists} -> elem(Py.SharedDict.lookup(opts[:name]), 1)
    end
  end

  defp loop(id, round) do
    Supervisor.child_spec({Task, fn -> forever(round) end}, id: id, restart: :permanent)
  end

  defp forever(round) do
    round.()
    forever(round)
  end

  # Calls spread over the default pool; callers 1 and 2 are bound to the
  # first context, one call in 25 raises.
  defp caller(i) do
    if i <= 2 and Process.get(:bound) == nil do
      Py.Context.bind(Py.context(1))
      Process.put(:bound, true)
    end

    case :rand.uniform(25) do
      1 -> Py.eval("1 / 0")
      _ -> Py.eval("sum(i * i for i in range(n))", %{n: :rand.uniform(20_000)})
    end

    Process.sleep(:rand.uniform(10))
  end

  # BEAM coalescing: four processes asking for the same few keys.
  defp coalescer do
    key = "user:#{:rand.uniform(4)}"

    Py.Coalesce.run(:dashboard_users, key, fn ->
      Process.sleep(20)
      if :rand.uniform(30) == 1, do: raise("lookup failed"), else: {:ok, key}
    end)

    Py.Coalesce.run({:dashboard, :embeddings}, "doc:#{:rand.uniform(20)}", fn ->
      Process.sleep(5)
      Py.eval("len(str(k))", %{k: key})
    end)

    Process.sleep(:rand.uniform(20))
  end

  # Python coalescing: eight threads sharing a named erlang.SharedCall.
  defp python_coalescer do
    Py.exec("""
    import threading, time
    from erlang import SharedCall
    global _dash_shared
    try:
        _dash_shared
    except NameError:
        _dash_shared = SharedCall(name="dashboard.python")

    def _slow(k):
        time.sleep(0.02)
        return k

    def _worker(n):
        for i in range(5):
            _dash_shared.call("k%d" % (i % 3), _slow, i)

    threads = [threading.Thread(target=_worker, args=(n,)) for n in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    """)

    Process.sleep(250)
  end

  # Sessions with short TTLs, so keys expire all the time; now and then a
  # key longer than the 80 bytes the page shows, and a delete.
  defp sessions(sd) do
    id = Base.encode16(:rand.bytes(6), case: :lower)

    key =
      if :rand.uniform(10) == 1,
        do: "session:" <> id <> ":" <> String.duplicate("long-key-segment/", 8),
        else: "session:" <> id

    Py.SharedDict.put(sd, key, %{"user" => id, "secret" => "never shown"},
      ttl: 500 + :rand.uniform(4_000)
    )

    if :rand.uniform(8) == 1, do: Py.SharedDict.delete(sd, key)
    Process.sleep(:rand.uniform(40))
  end

  # A bounded cache without TTLs: evictions count as deletes.
  defp cache(sd) do
    Py.SharedDict.put(sd, "item:#{:rand.uniform(2_000)}", :rand.uniform(1_000_000))
    Process.sleep(:rand.uniform(10))
  end
end
