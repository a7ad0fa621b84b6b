defmodule Py.SharedDict.SqliteTest do
  # What only a durable backend promises: data across restarts, across
  # BEAMs and across `kill -9`, expiries as absolute times, and clear
  # errors (never a raise from get/3) when the disk misbehaves. Real
  # separate BEAMs are started with `elixir` on this test build's code path.
  use ExUnit.Case, async: true

  alias Py.SharedDict, as: SD

  @moduletag timeout: 300_000

  setup do
    dir = Path.join(Py.SharedDictCase.dir(), "sqlite-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)
    {:ok, dir: dir, name: "sqlite_test_#{System.unique_integer([:positive])}"}
  end

  defp open(name, path, opts \\ []),
    do: SD.new([name: name, backend: {:sqlite, path}] ++ opts)

  # ── Separate BEAMs ──────────────────────────────────────────────────

  # Elixir code run in a new BEAM with this build's code and the test
  # Python configuration, after pybridge started there.
  defp vm_args(code) do
    ebin = :code.lib_dir(:pybridge) |> Path.join("ebin")
    venv = Application.get_env(:pybridge, :venv)

    prelude = """
    Application.put_env(:pybridge, :venv, #{inspect(venv)})
    {:ok, _} = Application.ensure_all_started(:pybridge)
    """

    ["-pa", ebin, "-e", prelude <> code]
  end

  # Runs `code` in a new BEAM to the end: {exit status, output}.
  defp run_vm(code) do
    System.cmd(System.find_executable("elixir"), vm_args(code), stderr_to_stdout: true)
  end

  # Starts `code` in a new BEAM; its output arrives as port lines.
  defp start_vm(code) do
    Port.open({:spawn_executable, System.find_executable("elixir")}, [
      :binary,
      :exit_status,
      {:line, 4096},
      args: vm_args(code)
    ])
  end

  defp next_line(port, timeout \\ 120_000) do
    receive do
      {^port, {:data, {:eol, line}}} -> line
      {^port, {:exit_status, status}} -> flunk("the VM exited (#{status}) early")
    after
      timeout -> flunk("no output from the VM")
    end
  end

  defp writer_code(name, path, prefix) do
    """
    {:ok, sd} = Py.SharedDict.new(name: #{inspect(name)}, backend: {:sqlite, #{inspect(path)}})
    IO.puts("pid " <> System.pid())
    Enum.each(1..1_000_000, fn i ->
      :ok = Py.SharedDict.put(sd, "#{prefix}" <> Integer.to_string(i), i)
      IO.puts("ack " <> Integer.to_string(i))
    end)
    """
  end

  test "every write acknowledged before kill -9 is there when a new VM reopens the file", ctx do
    path = Path.join(ctx.dir, "kill9.db")
    port = start_vm(writer_code(ctx.name, path, "k"))
    "pid " <> os_pid = next_line(port)
    # The first 300 acknowledged writes (more may be in flight when it dies).
    acked = for _ <- 1..300, do: next_line(port)
    assert List.last(acked) == "ack 300"
    {_, 0} = System.cmd("kill", ["-9", os_pid])

    # Drain: every line it managed to print was acknowledged too.
    acked = acked ++ drain(port)
    last = acked |> List.last() |> String.replace_prefix("ack ", "") |> String.to_integer()
    assert last >= 300

    {out, 0} =
      run_vm("""
      {:ok, sd} = Py.SharedDict.new(name: #{inspect(ctx.name)}, backend: {:sqlite, #{inspect(path)}})
      missing = Enum.reject(1..#{last}, fn i -> Py.SharedDict.get(sd, "k" <> Integer.to_string(i)) == i end)
      IO.puts("missing " <> inspect(missing) <> " size " <> Integer.to_string(Py.SharedDict.size(sd)))
      """)

    assert out =~ "missing [] size"
    [_, size] = Regex.run(~r/size (\d+)/, out)
    assert String.to_integer(size) >= last
  end

  defp drain(port) do
    receive do
      {^port, {:data, {:eol, "ack " <> _ = line}}} -> [line | drain(port)]
      {^port, {:data, _}} -> drain(port)
      {^port, {:exit_status, _}} -> []
    after
      60_000 -> flunk("the killed VM's port never closed")
    end
  end

  test "two VMs writing the same file at once lose nothing, and this VM sees it all", ctx do
    path = Path.join(ctx.dir, "shared.db")

    code = fn prefix ->
      """
      {:ok, sd} = Py.SharedDict.new(name: #{inspect(ctx.name)}, backend: {:sqlite, #{inspect(path)}})
      for i <- 1..150 do
        :ok = Py.SharedDict.put(sd, "#{prefix}" <> Integer.to_string(i), i)
        {:ok, _} = Py.SharedDict.incr(sd, "n")
      end
      IO.puts("done")
      """
    end

    [a, b] = Enum.map(["a", "b"], &Task.async(fn -> run_vm(code.(&1)) end))
    assert {out_a, 0} = Task.await(a, 280_000)
    assert {out_b, 0} = Task.await(b, 280_000)
    assert out_a =~ "done" and out_b =~ "done"

    {:ok, sd} = open(ctx.name, path)
    assert SD.get(sd, "n") == 300
    assert SD.size(sd) == 301
    for p <- ["a", "b"], i <- 1..150, do: assert(SD.get(sd, p <> "#{i}") == i)
    SD.destroy(sd)
  end

  test "a second VM sees what this one committed, at once", ctx do
    path = Path.join(ctx.dir, "seen.db")
    {:ok, sd} = open(ctx.name, path)
    :ok = SD.put(sd, "from_test", %{"list" => [1, 2.5, "x"], "t" => {1, nil}})
    :ok = SD.put(sd, "pickled", %SD.Pickled{type: "m.C", data: <<128, 4, 0>>})

    {out, 0} =
      run_vm("""
      {:ok, sd} = Py.SharedDict.new(name: "other", backend: {:sqlite, #{inspect(path)}})
      IO.puts(inspect({Py.SharedDict.get(sd, "from_test"), Py.SharedDict.get(sd, "pickled")}))
      """)

    assert out =~
             ~s({%{"list" => [1, 2.5, "x"], "t" => {1, nil}}, %Py.SharedDict.Pickled{type: "m.C", data: <<128, 4, 0>>}})

    SD.destroy(sd)
  end

  # ── One VM ─────────────────────────────────────────────────────────

  # Runs `sql` on the file with Python's own sqlite3, behind pybridge's back.
  defp raw_sql(path, sql) do
    {:ok, _} =
      Py.eval(
        "(lambda c: (c.execute(sql), c.commit(), c.close()))(__import__('sqlite3').connect(p))",
        %{sql: sql, p: path}
      )

    :ok
  end

  test "reopening the same path by name gives the same data and absolute expiries", ctx do
    path = Path.join(ctx.dir, "reopen.db")
    {:ok, sd} = open(ctx.name, path)
    :ok = SD.put(sd, "kept", 1)
    :ok = SD.put(sd, "ttl", 2, ttl: 3_600_000)
    :ok = SD.destroy(sd)
    {:ok, again} = open(ctx.name, path)
    assert SD.to_map(again) == %{"kept" => 1, "ttl" => 2}
    assert SD.ttl(again, "ttl") in 3_590_000..3_600_000
    SD.destroy(again)
    # The Erlang facade takes the same option.
    {:ok, erl} = :py.shared_dict_new(%{name: ctx.name <> "_erl", backend: {:sqlite, path}})
    assert :py.shared_dict_get(erl, "kept") == 1

    assert {:error, %Py.Error{type: :backend}} =
             :py.shared_dict_new([{:backend, {:sqlite, "/nope/x.db"}}])

    :py.shared_dict_destroy(erl)
  end

  test "a key that expired while closed is never returned and raises :expire once at open",
       ctx do
    path = Path.join(ctx.dir, "expired.db")
    {:ok, sd} = open(ctx.name, path)
    :ok = SD.put(sd, "gone", 1, ttl: 3_600_000)
    :ok = SD.put(sd, "stays", 2)
    :ok = SD.destroy(sd)

    # Its hour passes while nobody has the file open.
    raw_sql(path, "UPDATE pybridge_entries SET expires_at = 1 WHERE key = 'gone'")

    {:ok, sd} = open(ctx.name, path, subscribe: [:expire])
    assert_receive {:shared_dict, ^sd, :expire, "gone"}, 5_000
    assert SD.get(sd, "gone") == nil
    assert SD.to_map(sd) == %{"stays" => 2}
    assert SD.stats(sd).expired_total == 1
    :ok = SD.destroy(sd)
    {:ok, again} = open(ctx.name, path, subscribe: [:expire])
    refute_receive {:shared_dict, _, :expire, _}, 200
    SD.destroy(again)
  end

  test "Python opens the same file by name and reads what the BEAM wrote", ctx do
    path = Path.join(ctx.dir, "py.db")
    {:ok, sd} = open(ctx.name, path)
    :ok = SD.put(sd, "n", 41)
    :ok = SD.destroy(sd)

    assert {:ok, 42} =
             Py.eval(
               "(lambda d: (d.incr('n'), d['n'])[1])" <>
                 "(__import__('erlang').SharedDict.open(name, 'sqlite', path=p))",
               %{name: ctx.name <> "_py", p: path}
             )

    {:ok, again} = open(ctx.name, path)
    assert SD.get(again, "n") == 42
    SD.destroy(again)
    {:ok, py} = SD.lookup(ctx.name <> "_py")
    assert SD.backend(py) == :sqlite
    SD.destroy(py)
  end

  test "the normal-scheduler NIFs never touch the file: they send the caller to dirty IO",
       ctx do
    {:ok, sd} = open(ctx.name, Path.join(ctx.dir, "io.db"))
    assert sd.io
    :ok = SD.put(sd, "k", 1)
    assert Py.Native.shared_dict_get(sd.ref, "k") == :dirty
    assert Py.Native.shared_dict_put(sd.ref, "k", 2, nil, :always) == :dirty
    assert SD.get(sd, "k") == 1

    assert {:ok, 1, _version} = Py.Native.shared_dict_io(sd.ref, :get, ["k"])
    SD.destroy(sd)
  end

  # ── Faults ─────────────────────────────────────────────────────────

  test "a path in a missing directory is a clear error", ctx do
    path = Path.join([ctx.dir, "no", "such", "d.db"])
    assert {:error, %Py.Error{type: :backend, message: msg}} = open(ctx.name, path)
    assert msg =~ "does not exist"
    assert SD.lookup(ctx.name) == :error
    assert_raise Py.Error, ~r/backend/, fn -> SD.new!(backend: {:sqlite, path}) end
    # Python: an OSError.
    assert {:error, %Py.Error{type: "OSError"}} =
             Py.eval("__import__('erlang').SharedDict.open('x_missing', 'sqlite', path=p)", %{
               p: path
             })
  end

  test "a corrupt file is a clear error; a corrupt value reads as missing, fetch says why",
       ctx do
    junk = Path.join(ctx.dir, "junk.db")
    File.write!(junk, :binary.copy("not sqlite at all ", 1000))
    assert {:error, %Py.Error{type: :backend, message: msg}} = open(ctx.name, junk)
    assert msg =~ "not a database"

    path = Path.join(ctx.dir, "value.db")
    {:ok, sd} = open(ctx.name, path)
    :ok = SD.put(sd, "k", 1)

    raw_sql(path, "UPDATE pybridge_entries SET value = x'01ff07'")

    for _ <- 1..1_000, do: assert(SD.get(sd, "k", :default) == :default)
    assert {:error, %Py.Error{type: :backend, message: why}} = SD.fetch(sd, "k")
    assert why =~ "unreadable"
    assert {:error, %Py.Error{type: :backend}} = SD.to_map(sd)
    assert {:error, %Py.Error{type: :backend}} = SD.update(sd, "k", 0, &(&1 + 1))
    assert {:error, %Py.Error{type: :backend}} = SD.incr(sd, "k")
    # It can be overwritten.
    :ok = SD.put(sd, "k", 2)
    assert SD.get(sd, "k") == 2
    SD.destroy(sd)
  end

  @tag :root
  test "a read-only file cannot be opened, and opens with its data once writable", ctx do
    src = Path.join(ctx.dir, "src")
    ro = Path.join(ctx.dir, "ro")
    File.mkdir_p!(src)
    File.mkdir_p!(ro)
    {:ok, sd} = open(ctx.name, Path.join(src, "d.db"))
    :ok = SD.put(sd, "k", "kept")
    :ok = SD.destroy(sd)
    File.rm(Path.join(src, "d.db-wal"))
    File.rm(Path.join(src, "d.db-shm"))
    {_, 0} = System.cmd("mount", ["--bind", src, ro])
    on_exit(fn -> System.cmd("umount", [ro]) end)
    {_, 0} = System.cmd("mount", ["-o", "remount,bind,ro", ro])

    assert {:error, %Py.Error{type: :backend, message: msg}} =
             open(ctx.name, Path.join(ro, "d.db"))

    assert msg =~ ~r/read-?only|unable to open/i
    {_, 0} = System.cmd("mount", ["-o", "remount,bind,rw", ro])
    {:ok, sd} = open(ctx.name, Path.join(ro, "d.db"))
    assert SD.get(sd, "k") == "kept"
    SD.destroy(sd)
  end

  @tag :root
  test "a full disk: clear errors, get never raises, nothing acknowledged lost, recovery",
       ctx do
    mnt = Path.join(ctx.dir, "tiny")
    File.mkdir_p!(mnt)
    {_, 0} = System.cmd("mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mnt])
    on_exit(fn -> System.cmd("umount", ["-l", mnt]) end)
    # Space to give back later.
    filler = Path.join(mnt, "filler")
    File.write!(filler, :binary.copy(<<0>>, 300_000))
    {:ok, sd} = open(ctx.name, Path.join(mnt, "d.db"))
    value = :binary.copy("v", 20_000)

    {acked, error} =
      Enum.reduce_while(1..500, {[], nil}, fn i, {acked, nil} ->
        case SD.put(sd, "k#{i}", value) do
          :ok -> {:cont, {[i | acked], nil}}
          {:error, %Py.Error{} = e} -> {:halt, {acked, e}}
        end
      end)

    assert %Py.Error{type: :backend, message: msg} = error
    assert msg =~ ~r/full/i
    assert length(acked) > 5

    # Reads in a hot loop never raise while the disk is full.
    for _ <- 1..200, i <- Enum.take(acked, 5), do: assert(SD.get(sd, "k#{i}") == value)
    assert {:error, %Py.Error{type: :backend}} = SD.put(sd, "more", value)
    for i <- acked, do: assert(SD.get(sd, "k#{i}") == value)

    # Room comes back: writes work again by themselves.
    File.rm!(filler)
    assert SD.put(sd, "after", 1) == :ok
    assert SD.get(sd, "after") == 1
    for i <- acked, do: assert(SD.get(sd, "k#{i}") == value)
    SD.destroy(sd)
  end
end
