defmodule Py.TestHelpers do
  @moduledoc false
  # Small helpers shared by the pybridge test suites.

  import ExUnit.Assertions, only: [flunk: 1]

  @doc """
  Calls `fun` until it returns a truthy value or `timeout` ms have passed;
  returns the last value. Used for effects that happen asynchronously
  (monitors firing, resources being garbage-collected).
  """
  @spec eventually((() -> term), non_neg_integer, pos_integer) :: term
  def eventually(fun, timeout \\ 3_000, interval \\ 20) do
    deadline = System.monotonic_time(:millisecond) + timeout
    loop(fun, deadline, interval)
  end

  defp loop(fun, deadline, interval) do
    case fun.() do
      result when result not in [nil, false] ->
        result

      result ->
        if System.monotonic_time(:millisecond) >= deadline do
          result
        else
          Process.sleep(interval)
          loop(fun, deadline, interval)
        end
    end
  end

  @doc """
  Like `eventually/3`, but flunks the test ("condition never held") when
  `fun` never returns a truthy value; returns that value. The bound only
  catches "never" on a loaded machine, it measures nothing.
  """
  @spec assert_eventually((() -> term), non_neg_integer, pos_integer) :: term
  def assert_eventually(fun, timeout \\ 3_000, interval \\ 20) do
    eventually(fun, timeout, interval) || flunk("condition never held")
  end

  @doc """
  The Python executable named by the environment variable `var` (one of
  the `PYBRIDGE_TEST_PY*`); flunks the test when it is unset or missing.
  """
  @spec python!(String.t()) :: String.t()
  def python!(var) do
    path = System.get_env(var)

    unless path && File.exists?(path) do
      flunk("#{var} is not set to a Python executable: run the suite with `make test`")
    end

    path
  end

  @doc """
  Installs `source` as the Python module `name` (in `sys.modules` of the
  default context), once: a second call with the same name does nothing.
  """
  @spec install_module(String.t(), String.t()) :: :ok
  def install_module(name, source) do
    Py.exec("""
    import sys, types
    if #{inspect(name)} not in sys.modules:
        _m = types.ModuleType(#{inspect(name)})
        exec(#{inspect(source)}, _m.__dict__)
        sys.modules[#{inspect(name)}] = _m
    """)
  end

  @doc "Runs `fun` in a fresh process and returns its result (re-raising its exceptions)."
  @spec in_process((() -> result)) :: result when result: term
  def in_process(fun) do
    fun |> Task.async() |> Task.await(30_000)
  end

  @doc """
  Starts a peer VM running pybridge on `python` (a Python executable) and
  returns its `:peer` pid. The peer has this VM's code paths and none of its
  application environment, so it embeds exactly that Python.
  """
  @spec start_python_peer(String.t(), keyword) :: pid
  def start_python_peer(python, app_env \\ []) do
    {:ok, peer, _node} =
      :peer.start_link(%{
        connection: :standard_io,
        args: Enum.flat_map(:code.get_path(), &[~c"-pa", &1]),
        env: [{~c"PYBRIDGE_PYTHON", String.to_charlist(python)}]
      })

    :ok = :peer.call(peer, Application, :load, [:pybridge])

    for {key, value} <- app_env,
        do: :peer.call(peer, Application, :put_env, [:pybridge, key, value])

    {:ok, _} = :peer.call(peer, Application, :ensure_all_started, [:pybridge], 60_000)
    peer
  end

  @doc """
  Starts a distributed peer VM named after `prefix`, connected to this VM
  (made a distributed node first if it is not one), with this VM's code
  paths and pybridge application environment, pybridge started. Returns
  `{peer, node}`.
  """
  @spec start_node_peer(String.t()) :: {pid, node}
  def start_node_peer(prefix) do
    unless Node.alive?() do
      start_epmd!()

      {:ok, _} =
        Node.start(:"#{prefix}_#{System.unique_integer([:positive])}@127.0.0.1", :longnames)
    end

    {:ok, peer, node} =
      :peer.start(%{
        name: :"#{prefix}_peer_#{System.unique_integer([:positive])}",
        host: ~c"127.0.0.1",
        args: [~c"-setcookie", Atom.to_charlist(Node.get_cookie())]
      })

    :ok = :erpc.call(node, :code, :add_pathsa, [:code.get_path()])

    for {key, value} <- Application.get_all_env(:pybridge) do
      :ok = :erpc.call(node, :application, :set_env, [:pybridge, key, value])
    end

    {:ok, _} = :erpc.call(node, Application, :ensure_all_started, [:pybridge], 60_000)
    {peer, node}
  end

  # `epmd -daemon` returns before the daemon listens (on a fresh machine it
  # is not running yet): wait until it answers, or fail saying so.
  defp start_epmd! do
    System.cmd("epmd", ["-daemon"])

    unless eventually(fn -> match?({:ok, _}, :erl_epmd.names(~c"127.0.0.1")) end, 30_000) do
      flunk("epmd did not start listening within 30 s")
    end
  end

  @doc """
  Starts and closes `n` dedicated contexts with `opts`, each used for an
  eval and an exec, all from the calling process; returns the results of
  the calls. For peers, where every `:peer.call` runs in a process of its own.
  """
  @spec context_churn(pos_integer, keyword) :: [term]
  def context_churn(n, opts) do
    for _ <- 1..n do
      ctx = Py.Context.new(opts)
      obj = Py.eval(ctx, "object()")
      exec = Py.exec(ctx, "data = bytes(1_000_000)")
      :ok = Py.Context.close(ctx)
      {elem(obj, 0), exec}
    end
  end

  @doc """
  Starts a dedicated context with `opts`, evaluates `code` on it, closes it
  and returns the result. For peers.
  """
  @spec eval_in_new_context(keyword, String.t()) :: term
  def eval_in_new_context(opts, code) do
    ctx = Py.Context.new(opts)
    result = Py.eval(ctx, code)
    :ok = Py.Context.close(ctx)
    result
  end

  @doc """
  Starts a dedicated context with `opts`, runs `code` in it with a
  StringIO as the group leader, closes it and returns `{result, output}`.
  For peers, where ExUnit.CaptureIO is not running.
  """
  @spec exec_output_in_new_context(keyword, String.t()) :: {term, String.t()}
  def exec_output_in_new_context(opts, code) do
    ctx = Py.Context.new(opts)
    {:ok, io} = StringIO.open("")
    leader = Process.group_leader()
    Process.group_leader(self(), io)

    result =
      try do
        Py.exec(ctx, code)
      after
        Process.group_leader(self(), leader)
      end

    :ok = Py.Context.close(ctx)
    {_, output} = StringIO.contents(io)
    {result, output}
  end

  @doc """
  Starts a dedicated context with `opts` whose first call imports the
  `erlang` module and gets an `erlang.Pid`; returns what that call gave.
  """
  @spec first_call_uses_erlang(keyword) :: term
  def first_call_uses_erlang(opts) do
    ctx = Py.Context.new(opts)
    result = Py.eval(ctx, "__import__('erlang').Pid is type(p) and p", %{p: self()})
    :ok = Py.Context.close(ctx)
    {result, self()}
  end

  @doc """
  Makes an object in `ctx` that writes "gone" to `path` when Python frees
  it, and returns nothing of it: the handle dies with the calling process.
  """
  @spec drop_tracked_object(Py.Context.t(), Path.t()) :: :ok
  def drop_tracked_object(ctx, path) do
    # Through builtins.eval, so that the calling process gets no namespace
    # (whose release on exit would have the context collect anyway).
    code = "type('T', (), {'__del__': lambda self, p=path: open(p, 'w').write('gone')})()"
    {:ok, %Py.Object{}} = Py.call(ctx, :builtins, :eval, [code, %{"path" => path}])
    :ok
  end

  @doc """
  Makes a Python object in `owner` and uses it there and in each of
  `others`; returns `{result_in_owner, results_elsewhere}`. For peers:
  `%Py.Object{}` handles do not survive a trip through another VM.
  """
  @spec object_uses(Py.Context.t(), [Py.Context.t()]) :: {term, [term]}
  def object_uses(owner, others) do
    {:ok, %Py.Object{} = obj} = Py.eval(owner, "type('Box', (), {'n': 2})()")
    {Py.eval(owner, "o.n", %{o: obj}), Enum.map(others, &Py.eval(&1, "o.n", %{o: obj}))}
  end

  @doc """
  Code and locals for `Py.eval/3` that run python/tests with unittest inside
  the embedded interpreter; the result is `{tests_run, failures, report}`.
  """
  @spec python_suite() :: {String.t(), map}
  def python_suite do
    other = spawn(fn -> :ok end)
    ref = make_ref()

    values = %{
      "pid" => self(),
      "same_pid" => self(),
      "other_pid" => other,
      "ref" => ref,
      "same_ref" => ref,
      "other_ref" => make_ref()
    }

    code = """
    (lambda sys, io, unittest: (
        sys.path.insert(0, dir) if dir not in sys.path else None,
        __import__('fixtures').VALUES.update(values),
        (lambda stream: (
            lambda result: (result.testsRun, len(result.failures) + len(result.errors), stream.getvalue())
        )(unittest.TextTestRunner(stream=stream, verbosity=2).run(
            unittest.TestLoader().discover(dir, pattern='test_*.py', top_level_dir=dir))))(io.StringIO())
    )[-1])(__import__('sys'), __import__('io'), __import__('unittest'))
    """

    {code, %{dir: Path.expand("../../python/tests", __DIR__), values: values}}
  end

  @doc "Milliseconds `fun` takes, and its result."
  @spec timed((() -> result)) :: {non_neg_integer, result} when result: term
  def timed(fun) do
    t0 = System.monotonic_time(:millisecond)
    result = fun.()
    {System.monotonic_time(:millisecond) - t0, result}
  end
end
