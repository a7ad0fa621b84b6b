defmodule Py.Test.RedisServer do
  @moduledoc """
  A `redis-server` of a test's (or a bench's) own: started on a free
  loopback port with a temp dir for its files, stopped by `stop/1`. Never a
  fixed port, never a shared server. `make deps` installs `redis-server`.
  """

  defstruct [:port, :dir, :os_pid, :url, :exe]

  @type t :: %__MODULE__{}

  @doc "Whether `redis-server` is installed."
  @spec available?() :: boolean
  def available?, do: System.find_executable("redis-server") != nil

  @doc """
  Starts a server; `extra` are more `redis-server` arguments. Its files
  (the append-only file: every write is fsynced before Redis answers) live
  in a fresh temp dir. On a free port picked here unless `port` is given:
  another program may take that port before the server binds it, so a
  server that does not come up is started again on a new one, up to three
  times.
  """
  @spec start([String.t()], :inet.port_number() | nil) :: t
  def start(extra \\ [], port \\ nil)

  def start(extra, nil), do: start_on_free_port(extra, 3)
  def start(extra, port), do: start_on(extra, port)

  defp start_on_free_port(extra, attempts) do
    start_on(extra, free_port())
  rescue
    e in RuntimeError ->
      if attempts > 1,
        do: start_on_free_port(extra, attempts - 1),
        else: reraise(e, __STACKTRACE__)
  end

  defp start_on(extra, port) do
    exe =
      System.find_executable("redis-server") || raise "redis-server is not installed (make deps)"

    dir = Path.join(System.tmp_dir!(), "pybridge-redis-#{System.unique_integer([:positive])}")
    File.mkdir_p!(dir)

    server = %__MODULE__{
      port: port,
      dir: dir,
      exe: exe,
      url: "redis://127.0.0.1:#{port}/"
    }

    spawn_server(server, extra)
  end

  @doc """
  The one server shared by every test of this run that needs just "a
  Redis": started on the first call, stopped after the suite.
  """
  @spec shared() :: t
  def shared, do: shared_once(__MODULE__, &start/0, &stop/1)

  @doc """
  The one value `start` makes for `owner` in this test run: made by the
  first caller (others wait for it), then `stop`ped after the suite.
  """
  @spec shared_once(module, (() -> value), (value -> any)) :: value when value: term
  def shared_once(owner, start, stop) do
    case :persistent_term.get({owner, :shared}, nil) do
      nil ->
        :global.trans({owner, self()}, fn ->
          case :persistent_term.get({owner, :shared}, nil) do
            nil ->
              value = start.()
              :persistent_term.put({owner, :shared}, value)
              ExUnit.after_suite(fn _ -> stop.(value) end)
              value

            value ->
              value
          end
        end)

      value ->
        value
    end
  end

  @doc """
  Kills the server at once (no save on shutdown). Only while its pid is
  still this server: a struct kept from before a `restart/2` (or a second
  `stop/1`) holds a pid that died, and on a busy machine that number may
  already be another process's.
  """
  @spec kill(t) :: :ok
  def kill(%__MODULE__{os_pid: pid, port: port}) when is_integer(pid) do
    if ours?(pid, port) do
      System.cmd("kill", ["-9", Integer.to_string(pid)], stderr_to_stdout: true)
    end

    wait_until(fn -> not ping(port) end, 5_000)
    :ok
  end

  # Whether `pid` is a redis-server on `port` (its process title names
  # the address it listens on).
  defp ours?(pid, port) do
    case System.cmd("ps", ["-o", "command=", "-p", Integer.to_string(pid)], stderr_to_stdout: true) do
      {out, 0} -> out =~ "redis-server" and out =~ ":#{port}"
      _ -> false
    end
  end

  @doc "Kills the server and starts it again on the same port and dir."
  @spec restart(t, [String.t()]) :: t
  def restart(server, extra \\ []) do
    kill(server)
    spawn_server(server, extra)
  end

  @doc "Kills the server and removes its files."
  @spec stop(t) :: :ok
  def stop(server) do
    kill(server)
    File.rm_rf(server.dir)
    :ok
  end

  @doc "Runs `redis-cli` against the server; its output."
  @spec cli(t, [String.t()]) :: String.t()
  def cli(server, args) do
    {out, _} =
      System.cmd("redis-cli", ["-p", Integer.to_string(server.port) | args],
        stderr_to_stdout: true
      )

    out
  end

  @doc "A TCP port nobody listens on now."
  @spec free_port() :: :inet.port_number()
  def free_port do
    [port] = free_ports(1)
    port
  end

  @doc "`n` distinct free loopback ports (all held open while picked)."
  @spec free_ports(pos_integer) :: [:inet.port_number()]
  def free_ports(n) do
    socks = for _ <- 1..n, do: elem(:gen_tcp.listen(0, ip: {127, 0, 0, 1}), 1)
    ports = for sock <- socks, do: elem(:inet.port(sock), 1)
    Enum.each(socks, &:gen_tcp.close/1)
    ports
  end

  defp spawn_server(server, extra) do
    args =
      ["--port", Integer.to_string(server.port), "--bind", "127.0.0.1", "--dir", server.dir] ++
        ["--save", "", "--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no"] ++
        extra

    # sh starts the server in the background and prints its pid; the BEAM
    # does not own it, so stop/1 (or kill/1) is what ends it.
    {out, 0} =
      System.cmd("sh", [
        "-c",
        ~s(exec "$0" "$@" >/dev/null 2>&1 & echo $!),
        server.exe | args
      ])

    pid = out |> String.trim() |> String.to_integer()
    server = %{server | os_pid: pid}

    unless wait_until(fn -> ping(server.port) end, 10_000) do
      # Not left behind (it may still be starting, or have found its port
      # taken).
      System.cmd("kill", ["-9", Integer.to_string(pid)], stderr_to_stdout: true)
      raise "redis-server did not answer on port #{server.port}"
    end

    server
  end

  defp ping(port) do
    case :gen_tcp.connect({127, 0, 0, 1}, port, [:binary, active: false], 200) do
      {:ok, sock} ->
        # A server being killed may accept, then close the connection
        # before the PING goes out: that is "not answering", not a crash.
        reply = with :ok <- :gen_tcp.send(sock, "PING\r\n"), do: :gen_tcp.recv(sock, 0, 1_000)

        :gen_tcp.close(sock)
        match?({:ok, "+PONG" <> _}, reply)

      _ ->
        false
    end
  end

  @doc "Polls `fun` every 20 ms until it is truthy or `ms` have passed; its last result."
  @spec wait_until((() -> as_boolean(term)), integer) :: as_boolean(term)
  def wait_until(fun, ms) when ms <= 0, do: fun.()

  def wait_until(fun, ms) do
    if fun.() do
      true
    else
      Process.sleep(20)
      wait_until(fun, ms - 20)
    end
  end
end
