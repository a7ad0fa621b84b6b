defmodule Py do
  @moduledoc """
  Call Python from Elixir: evaluate expressions, run statements, call
  functions, and hold on to Python objects — at the cost of a function call.

  pybridge embeds CPython in the BEAM through a NIF. Python code never runs on
  a normal scheduler: each call is submitted to a *context* (an executor with
  its own OS threads, see `Py.Context`) and the caller waits for a reply
  message, so a slow or stuck Python call only blocks its caller, and only
  until its `timeout:`.

  ## Calls

      {:ok, 2} = Py.eval("1 + 1")
      {:ok, 6} = Py.eval("x * y", %{x: 2, y: 3})
      :ok = Py.exec("import math")
      {:ok, 4.0} = Py.call(:math, :sqrt, [16])
      {:ok, "a/b"} = Py.call("os.path", :join, ["a", "b"])
      {:ok, [3, 2, 1]} = Py.call(:builtins, :sorted, [[1, 3, 2]], kwargs: [reverse: true])

  Each function has a form taking a `%Py.Context{}` first
  (`Py.eval(ctx, code)`, `Py.exec(ctx, code)`, `Py.call(ctx, module, fun)`);
  without one, the call runs on the process's bound or routed context
  (`context/0`).

  ## State

  Every process has its own Python namespace in each context (its
  *environment*): what `exec/2` assigns is visible to the same process's later
  `eval/3`, `exec/2` and calls of module `:__main__`, never to other
  processes, and is freed when the process exits. Locals passed to `eval/3`
  are visible to that evaluation only.

  ## Calling back

  Python can call Elixir and Erlang functions registered with
  `register_function/2`: `erlang.call("name", *args)`, `erlang.name(*args)`
  or `from erlang import name`. During a call the function runs in the
  calling process (see `Py.Callback` and the callbacks guide).

  ## Results and errors

  Values convert both ways (see the type conversion guide): numbers, strings,
  binaries, booleans, `nil`/`None`, lists, tuples, maps/dicts, `MapSet`/sets,
  pids. Other Python objects come back as `%Py.Object{}` handles. Failures
  come back as `{:error, %Py.Error{}}`; the bang variants raise it. Misuse on
  the BEAM side (a bad option, an Elixir module name where a Python module is
  expected) raises `ArgumentError`.

  ## Options

    * `:timeout` — milliseconds (or `:infinity`) to wait for the reply;
      default `config :pybridge, timeout: 30_000`. On expiry the call returns
      `{:error, %Py.Error{type: :timeout}}` and the running Python code is
      interrupted.
    * `:kwargs` — keyword arguments of `call/4` and `call_method/4`, as a
      keyword list or a map with atom or string keys.
    * `:node` — run on another connected node's Python (routed forms of
      `eval`, `exec` and `call` only): `Py.eval("1 + 1", %{}, node: :"b@host")`.
      Transport failures come back as `%Py.Error{type: :noconnection}` or
      `%Py.Error{type: :timeout}`; Python errors on that node come back as
      they are. `%Py.Object{}` and `%Py.Context{}` handles are local to their
      node.
    * `:coalesce` — `eval`, `exec` and `call` only: `true` makes concurrent
      identical calls (same code and locals; same module, function, arguments
      and keyword arguments) share one execution and its result, a key of
      your own (any term) makes calls with that key share it. Each caller
      keeps its own `:timeout`; the shared call is interrupted only when every
      caller waiting for it has gone. It runs in the namespace of the caller
      that started it. See `Py.Coalesce` and the coalescing guide.
    * `:group` — with `:coalesce`, the group its key belongs to (for
      `Py.Coalesce.stats/1` and `Py.Coalesce.forget/2`); by default
      `"module.function"` for `call` and `"eval"` or `"exec"`.

  For example:

      {:ok, embedding} = Py.call(:model, :embed, [text], coalesce: true)
  """

  alias Py.{Call, Context, Error, Options}

  @typedoc "Python source code (a UTF-8 string; chardata is accepted too)."
  @type code :: String.t() | iodata

  @typedoc "Variables for an evaluation: atom or string keys."
  @type locals :: %{optional(atom | String.t()) => term}

  @typedoc "A Python module or attribute name: `:math`, `\"os.path\"`."
  @type name :: atom | String.t()

  @typedoc "Keyword arguments for a Python call."
  @type kwargs :: keyword | %{optional(atom | String.t()) => term}

  @typedoc "Positional arguments for a Python call."
  @type args :: [term]

  @typedoc """
  What a Python value becomes on the BEAM: a number, string, binary, boolean,
  `nil`, list, tuple, map or `MapSet` of those, a pid, or a `%Py.Object{}`
  (see the type conversion guide).
  """
  @type value :: term

  @type result :: {:ok, value} | {:error, Error.t()}

  @typedoc "Options of the routed forms of `eval` and `exec`."
  @type option ::
          {:timeout, timeout} | {:node, node} | {:coalesce, boolean | term} | {:group, term}

  @typedoc "Options of the routed form of `call`."
  @type call_option :: option | {:kwargs, kwargs}

  @typedoc "Options of the context-first forms (`:node` is not allowed there)."
  @type ctx_option ::
          {:timeout, timeout} | {:kwargs, kwargs} | {:coalesce, boolean | term} | {:group, term}

  @default_timeout_ms Py.Limits.default_timeout_ms()
  @timeout_key {Py, :default_timeout}

  # What each function takes (see Py.Options). A context is local to its
  # node, so the forms taking one reject `:node`.
  @no_node {:rejected,
            "no :node together with an explicit context (a context is local to its node; " <>
              "use the form without a context)"}
  @coalesce [coalesce: :coalesce, group: :group]
  @eval_schema [timeout: :timeout, node: :node] ++ @coalesce
  @call_schema [timeout: :timeout, kwargs: :kwargs, node: :node] ++ @coalesce
  @ctx_eval_schema [timeout: :timeout, node: @no_node] ++ @coalesce
  @ctx_call_schema [timeout: :timeout, kwargs: :kwargs, node: @no_node] ++ @coalesce
  @getattr_schema [timeout: :timeout]
  @call_method_schema [timeout: :timeout, kwargs: :kwargs]

  ## eval

  @doc """
  Evaluates a Python expression and returns its value.

  Forms: `eval(code)`, `eval(code, locals)`, `eval(code, locals, opts)` run on
  the caller's context (`context/0`); `eval(ctx, code)`,
  `eval(ctx, code, locals)`, `eval(ctx, code, locals, opts)` on `ctx`.

  The expression sees the process's namespace in that context plus `locals`,
  which are visible to this evaluation only. Options: `:timeout`, and `:node`
  in the routed forms.

  ## Examples

      iex> Py.eval("1 + 1")
      {:ok, 2}
      iex> Py.eval("a + b", %{a: 1, b: 2})
      {:ok, 3}
      iex> Py.eval(Py.context(1), "n * 2", %{"n" => 21}, timeout: 5_000)
      {:ok, 42}
      iex> {:error, %Py.Error{type: "ZeroDivisionError"}} = Py.eval("1 / 0")
  """
  @spec eval(code) :: result
  def eval(code), do: Call.run(context(), true, {:eval, code!(code), %{}}, default_timeout())

  @doc """
  `eval(code, locals)` evaluates `code` with `locals` on the caller's context;
  `eval(ctx, code)` evaluates `code` on `ctx`. See `eval/1`.

  ## Examples

      iex> Py.eval("x + 1", %{x: 41})
      {:ok, 42}
      iex> Py.eval(Py.context(1), "2 * 21")
      {:ok, 42}
  """
  @spec eval(Context.t(), code) :: result
  @spec eval(code, locals) :: result
  def eval(%Context{} = ctx, code),
    do: Call.run(ctx, true, {:eval, code!(code), %{}}, default_timeout())

  def eval(code, locals),
    do: Call.run(context(), true, {:eval, code!(code), locals!(locals)}, default_timeout())

  @doc """
  `eval(code, locals, opts)` on the caller's context (options `:timeout`,
  `:node`); `eval(ctx, code, locals)` on `ctx`. See `eval/1`.

  ## Examples

      iex> Py.eval("x + 1", %{x: 1}, timeout: 1_000)
      {:ok, 2}
      iex> Py.eval(Py.context(1), "x + 1", %{"x" => 1})
      {:ok, 2}
  """
  @spec eval(Context.t(), code, locals) :: result
  @spec eval(code, locals, [option]) :: result
  def eval(%Context{} = ctx, code, locals),
    do: Call.run(ctx, true, {:eval, code!(code), locals!(locals)}, default_timeout())

  def eval(code, locals, opts) do
    {timeout, _kwargs, node, co} = opts!(opts, @eval_schema, "Py.eval/3")

    if node do
      Py.Remote.call(node, :eval, [code, locals, remote_opts(timeout, co)], timeout)
    else
      eval_run(context(), code!(code), locals!(locals), timeout, co)
    end
  end

  @doc """
  `eval(ctx, code, locals, opts)`: evaluates on `ctx`; option `:timeout`.
  See `eval/1`.

  ## Example

      iex> Py.eval(Py.context(1), "x * 2", %{x: 21}, timeout: 1_000)
      {:ok, 42}
  """
  @spec eval(Context.t(), code, locals, [ctx_option]) :: result
  def eval(%Context{} = ctx, code, locals, opts) do
    {timeout, _kwargs, _node, co} = opts!(opts, @ctx_eval_schema, "Py.eval/4")
    eval_run(ctx, code!(code), locals!(locals), timeout, co)
  end

  def eval(other, _code, _locals, _opts), do: not_a_context!(other, "Py.eval/4")

  defp eval_run(ctx, code, locals, timeout, co),
    do: Call.run(ctx, true, {:eval, code, locals}, timeout, coalesce(co, "eval", {code, locals}))

  ## exec

  @doc """
  Runs Python statements in the process's namespace; returns `:ok`.

  Forms: `exec(code)`, `exec(code, opts)` on the caller's context;
  `exec(ctx, code)`, `exec(ctx, code, opts)` on `ctx`. What the statements
  assign stays in the calling process's namespace of that context. Options:
  `:timeout`, and `:node` in the routed forms.

  ## Examples

      iex> Py.exec("greeting = 'hello'")
      :ok
      iex> Py.eval("greeting.upper()")
      {:ok, "HELLO"}
      iex> {:error, %Py.Error{type: "SyntaxError"}} = Py.exec("def (")
  """
  @spec exec(code) :: :ok | {:error, Error.t()}
  def exec(code), do: Call.run(context(), true, {:exec, code!(code)}, default_timeout())

  @doc """
  `exec(code, opts)` on the caller's context (options `:timeout`, `:node`);
  `exec(ctx, code)` on `ctx`. See `exec/1`.

  ## Examples

      iex> Py.exec("y = 1", timeout: 1_000)
      :ok
      iex> Py.exec(Py.context(1), "y = 2")
      :ok
  """
  @spec exec(Context.t(), code) :: :ok | {:error, Error.t()}
  @spec exec(code, [option]) :: :ok | {:error, Error.t()}
  def exec(%Context{} = ctx, code),
    do: Call.run(ctx, true, {:exec, code!(code)}, default_timeout())

  def exec(code, opts) do
    {timeout, _kwargs, node, co} = opts!(opts, @eval_schema, "Py.exec/2")

    if node do
      Py.Remote.call(node, :exec, [code, remote_opts(timeout, co)], timeout)
    else
      exec_run(context(), code!(code), timeout, co)
    end
  end

  @doc """
  `exec(ctx, code, opts)`: runs statements on `ctx`; option `:timeout`.
  See `exec/1`.

  ## Example

      iex> Py.exec(Py.context(1), "z = 3", timeout: 1_000)
      :ok
  """
  @spec exec(Context.t(), code, [ctx_option]) :: :ok | {:error, Error.t()}
  def exec(%Context{} = ctx, code, opts) do
    {timeout, _kwargs, _node, co} = opts!(opts, @ctx_eval_schema, "Py.exec/3")
    exec_run(ctx, code!(code), timeout, co)
  end

  def exec(other, _code, _opts), do: not_a_context!(other, "Py.exec/3")

  defp exec_run(ctx, code, timeout, co),
    do: Call.run(ctx, true, {:exec, code}, timeout, coalesce(co, "exec", code))

  ## call

  @doc """
  Calls `module.function(*args, **kwargs)` and returns the result.

  `module` and `function` are atoms or strings; dotted modules work
  (`"os.path"`). Module `:__main__` is the calling process's namespace, so
  functions defined with `exec/2` can be called. Elixir module aliases such as
  `Foo` are not Python modules and raise `ArgumentError`.

  Forms: `call(module, function)`, `call(module, function, args)`,
  `call(module, function, args, opts)` on the caller's context;
  `call(ctx, module, function)`, `call(ctx, module, function, args)`,
  `call(ctx, module, function, args, opts)` on `ctx`. Options: `:kwargs`,
  `:timeout`, and `:node` in the routed forms. The routed forms run on a
  context of the pool the module or function is routed to with
  `Py.Context.register_pool/2,3`, if any.

  ## Examples

      iex> Py.call(:math, :sqrt, [16])
      {:ok, 4.0}
      iex> Py.call("os.path", "basename", ["/tmp/file.txt"])
      {:ok, "file.txt"}
      iex> Py.call(:builtins, :int, ["ff"], kwargs: [base: 16])
      {:ok, 255}
      iex> {:error, %Py.Error{type: "ModuleNotFoundError"}} = Py.call(:no_such_module, :f)
  """
  @spec call(name, name) :: result
  def call(module, function) do
    ctx = Context.route_call(module, function)
    call_run(ctx, module, function, [], %{}, default_timeout())
  end

  @doc """
  `call(module, function, args)` on the caller's context;
  `call(ctx, module, function)` calls with no arguments on `ctx`.
  See `call/2`.

  ## Examples

      iex> Py.call(:math, :pow, [2, 10])
      {:ok, 1024.0}
      iex> {:ok, cwd} = Py.call(Py.context(1), :os, :getcwd)
      iex> is_binary(cwd)
      true
  """
  @spec call(Context.t(), name, name) :: result
  @spec call(name, name, args) :: result
  def call(%Context{} = ctx, module, function),
    do: call_run(ctx, module, function, [], %{}, default_timeout())

  def call(module, function, args) do
    ctx = Context.route_call(module, function)
    call_run(ctx, module, function, args, %{}, default_timeout())
  end

  @doc """
  `call(module, function, args, opts)` on the caller's context (options
  `:kwargs`, `:timeout`, `:node`); `call(ctx, module, function, args)` on
  `ctx`. See `call/2`.

  ## Examples

      iex> Py.call(:builtins, :sorted, [[2, 3, 1]], kwargs: %{reverse: true})
      {:ok, [3, 2, 1]}
      iex> Py.call(Py.context(1), :math, :sqrt, [9])
      {:ok, 3.0}
  """
  @spec call(Context.t(), name, name, args) :: result
  @spec call(name, name, args, [call_option]) :: result
  def call(%Context{} = ctx, module, function, args),
    do: call_run(ctx, module, function, args, %{}, default_timeout())

  def call(module, function, args, opts) do
    {timeout, kwargs, node, co} = opts!(opts, @call_schema, "Py.call/4")

    if node do
      remote_opts = [kwargs: kwargs] ++ remote_opts(timeout, co)
      Py.Remote.call(node, :call, [module, function, args, remote_opts], timeout)
    else
      call_run(Context.route_call(module, function), module, function, args, kwargs, timeout, co)
    end
  end

  @doc """
  `call(ctx, module, function, args, opts)`: calls on `ctx`; options
  `:kwargs`, `:timeout`. See `call/2`.

  ## Example

      iex> Py.call(Py.context(1), :builtins, :round, [2.567], kwargs: [ndigits: 1])
      {:ok, 2.6}
  """
  @spec call(Context.t(), name, name, args, [ctx_option]) :: result
  def call(%Context{} = ctx, module, function, args, opts) do
    {timeout, kwargs, _node, co} = opts!(opts, @ctx_call_schema, "Py.call/5")
    call_run(ctx, module, function, args, kwargs, timeout, co)
  end

  def call(other, _module, _function, _args, _opts), do: not_a_context!(other, "Py.call/5")

  defp call_run(ctx, module, function, args, kwargs, timeout, co \\ nil) do
    module = Options.value!(module, :module, "module for Py.call")
    function = Options.value!(function, {:name, "function"}, "function name for Py.call")
    args = Options.value!(args, :args, "arguments for Py.call")
    job = {:call, module, function, args, kwargs}

    case co do
      nil ->
        Call.run(ctx, module == "__main__", job, timeout)

      co ->
        # The derived key leaves out kwargs when there are none: the key is
        # encoded and hashed on every coalesced call (the native in-flight
        # table), and an empty map only adds to that.
        key =
          if kwargs == %{}, do: {module, function, args}, else: {module, function, args, kwargs}

        coalesce = coalesce(co, module <> "." <> function, key)
        Call.run(ctx, module == "__main__", job, timeout, coalesce)
    end
  end

  ## bang variants

  @doc """
  Like `eval/1`, but returns the value or raises `Py.Error`.

  ## Example

      iex> Py.eval!("2 ** 10")
      1024
  """
  @spec eval!(code) :: value
  def eval!(code), do: unwrap!(eval(code))

  @doc """
  Like `eval/2`, but returns the value or raises `Py.Error`:
  `eval!(code, locals)` on the caller's context, `eval!(ctx, code)` on `ctx`.

  ## Examples

      iex> Py.eval!("x + 1", %{x: 41})
      42
      iex> Py.eval!(Py.context(1), "6 * 7")
      42
  """
  @spec eval!(Context.t(), code) :: value
  @spec eval!(code, locals) :: value
  def eval!(%Context{} = ctx, code), do: unwrap!(eval(ctx, code))
  def eval!(code, locals), do: unwrap!(eval(code, locals))

  @doc """
  Like `eval/3`, but returns the value or raises `Py.Error`:
  `eval!(code, locals, opts)` on the caller's context,
  `eval!(ctx, code, locals)` on `ctx`.

  ## Examples

      iex> Py.eval!("x + 1", %{x: 1}, timeout: 1_000)
      2
      iex> Py.eval!(Py.context(1), "x + 1", %{x: 1})
      2
  """
  @spec eval!(Context.t(), code, locals) :: value
  @spec eval!(code, locals, [option]) :: value
  def eval!(%Context{} = ctx, code, locals), do: unwrap!(eval(ctx, code, locals))
  def eval!(code, locals, opts), do: unwrap!(eval(code, locals, opts))

  @doc """
  Like `eval/4`, but returns the value or raises `Py.Error`.

  ## Example

      iex> Py.eval!(Py.context(1), "x * 2", %{x: 21}, timeout: 1_000)
      42
  """
  @spec eval!(Context.t(), code, locals, [ctx_option]) :: value
  def eval!(ctx, code, locals, opts), do: unwrap!(eval(ctx, code, locals, opts))

  @doc """
  Like `exec/1`, but returns `:ok` or raises `Py.Error`.

  ## Example

      iex> Py.exec!("import json")
      :ok
  """
  @spec exec!(code) :: :ok
  def exec!(code), do: unwrap!(exec(code))

  @doc """
  Like `exec/2`, but returns `:ok` or raises `Py.Error`:
  `exec!(code, opts)` on the caller's context, `exec!(ctx, code)` on `ctx`.

  ## Examples

      iex> Py.exec!("y = 1", timeout: 1_000)
      :ok
      iex> Py.exec!(Py.context(1), "y = 2")
      :ok
  """
  @spec exec!(Context.t(), code) :: :ok
  @spec exec!(code, [option]) :: :ok
  def exec!(%Context{} = ctx, code), do: unwrap!(exec(ctx, code))
  def exec!(code, opts), do: unwrap!(exec(code, opts))

  @doc """
  Like `exec/3`, but returns `:ok` or raises `Py.Error`.

  ## Example

      iex> Py.exec!(Py.context(1), "z = 3", timeout: 1_000)
      :ok
  """
  @spec exec!(Context.t(), code, [ctx_option]) :: :ok
  def exec!(ctx, code, opts), do: unwrap!(exec(ctx, code, opts))

  @doc """
  Like `call/2`, but returns the value or raises `Py.Error`.

  ## Example

      iex> Py.call!(:os, :getcwd) == File.cwd!()
      true
  """
  @spec call!(name, name) :: value
  def call!(module, function), do: unwrap!(call(module, function))

  @doc """
  Like `call/3`, but returns the value or raises `Py.Error`:
  `call!(module, function, args)` on the caller's context,
  `call!(ctx, module, function)` with no arguments on `ctx`.

  ## Examples

      iex> Py.call!(:math, :floor, [2.5])
      2
      iex> Py.call!(Py.context(1), :os, :getcwd) == File.cwd!()
      true
  """
  @spec call!(Context.t(), name, name) :: value
  @spec call!(name, name, args) :: value
  def call!(%Context{} = ctx, module, function), do: unwrap!(call(ctx, module, function))
  def call!(module, function, args), do: unwrap!(call(module, function, args))

  @doc """
  Like `call/4`, but returns the value or raises `Py.Error`:
  `call!(module, function, args, opts)` on the caller's context,
  `call!(ctx, module, function, args)` on `ctx`.

  ## Examples

      iex> Py.call!(:builtins, :int, ["ff"], kwargs: [base: 16])
      255
      iex> Py.call!(Py.context(1), :math, :floor, [2.5])
      2
  """
  @spec call!(Context.t(), name, name, args) :: value
  @spec call!(name, name, args, [call_option]) :: value
  def call!(%Context{} = ctx, module, function, args),
    do: unwrap!(call(ctx, module, function, args))

  def call!(module, function, args, opts), do: unwrap!(call(module, function, args, opts))

  @doc """
  Like `call/5`, but returns the value or raises `Py.Error`.

  ## Example

      iex> Py.call!(Py.context(1), :builtins, :round, [2.567], kwargs: [ndigits: 1])
      2.6
  """
  @spec call!(Context.t(), name, name, args, [ctx_option]) :: value
  def call!(ctx, module, function, args, opts),
    do: unwrap!(call(ctx, module, function, args, opts))

  defp unwrap!({:ok, value}), do: value
  defp unwrap!(:ok), do: :ok
  defp unwrap!({:error, %Error{} = error}), do: raise(error)

  ## streams

  @doc """
  A lazy `Stream` over what `module.function(*args, **kwargs)` returns: a
  generator, an async generator, or any iterable.

  Nothing runs until the stream is consumed, and then only as far as the
  consumer asks plus one batch: items are fetched `batch:` at a time (a
  batch returns early, with what it has, after 5 ms), each batch an ordinary
  call on the consuming process's context. Stopping early (`Enum.take/2`)
  closes the generator, so its `finally` blocks run; if the consuming
  process dies, the generator is closed when its handle is freed. An
  exception raised by the generator is raised as `Py.Error` in the consumer
  after the items before it; so is a failure to start (an unknown module).
  See `Py.Stream` and the streaming guide.

  Options (validated at once): `:kwargs`, `:timeout` (for each batch, the
  default `config :pybridge, timeout:`), `:batch` (items per batch, 1,000 by
  default, at most 1,000,000).

  ## Examples

      iex> Py.stream(:builtins, :range, [5]) |> Enum.to_list()
      [0, 1, 2, 3, 4]
      iex> Py.stream(:itertools, :count, [10]) |> Enum.take(3)
      [10, 11, 12]
  """
  @spec stream(name, name, args, [
          {:kwargs, kwargs} | {:timeout, timeout} | {:batch, pos_integer}
        ]) :: Enumerable.t()
  defdelegate stream(module, function, args \\ [], opts \\ []), to: Py.Stream, as: :call

  @doc """
  A lazy `Stream` over the iterable a Python expression evaluates to (a
  generator expression, a generator call), in the consuming process's
  namespace. Like `stream/4` otherwise.

  Options: `:locals` (variables for the expression), `:timeout`, `:batch`.

  ## Example

      iex> Py.stream_eval("(x * x for x in range(n))", locals: %{n: 4}) |> Enum.to_list()
      [0, 1, 4, 9]
  """
  @spec stream_eval(code, [{:locals, locals} | {:timeout, timeout} | {:batch, pos_integer}]) ::
          Enumerable.t()
  defdelegate stream_eval(code, opts \\ []), to: Py.Stream, as: :eval

  ## coroutines

  @doc """
  Starts `module.function(*args, **kwargs)` and returns a `%Py.Task{}` at
  once; collect the result with `await/2` or `await_many/2`.

  When the function is an `async def` (it returns a coroutine), the
  coroutine runs on the interpreter's event loop, on a thread of its own:
  while it waits it holds no context thread, so thousands can wait at once.
  Other functions run like `call/4`. Only the calling process can await the
  task; if it gives up waiting, dies, or drops the task, the coroutine is
  cancelled (`asyncio.CancelledError` inside it). See `Py.Task` and the
  asyncio guide. (`call/4` of an `async def` function awaits it the same way.)

  Options: `:kwargs`, `:timeout` (how long the coroutine may run before it is
  cancelled; `:infinity` by default, since `await/2` has its own).

  ## Example

      iex> Py.exec!("import asyncio")
      iex> task = Py.async_call(:asyncio, :sleep, [0.01, "done"])
      iex> Py.await(task)
      {:ok, "done"}
  """
  @spec async_call(name, name, args, [{:kwargs, kwargs} | {:timeout, timeout}]) :: Py.Task.t()
  defdelegate async_call(module, function, args \\ [], opts \\ []), to: Py.Task

  @doc """
  Waits up to `timeout` milliseconds (or `:infinity`) for a task's result:
  `{:ok, value}` or `{:error, %Py.Error{}}`. On timeout the coroutine is
  cancelled and the result is `{:error, %Py.Error{type: :timeout}}`. A task
  can be awaited once, by the process that started it.

  ## Example

      iex> Py.async_call(:asyncio, :sleep, [0, 42]) |> Py.await(1_000)
      {:ok, 42}
  """
  @spec await(Py.Task.t(), timeout) :: result
  defdelegate await(task, timeout \\ 5_000), to: Py.Task

  @doc """
  Like `await/2`, but returns the value or raises `Py.Error`.

  ## Example

      iex> Py.async_call(:asyncio, :sleep, [0, :ok]) |> Py.await!()
      "ok"
  """
  @spec await!(Py.Task.t(), timeout) :: value
  def await!(task, timeout \\ 5_000), do: unwrap!(await(task, timeout))

  @doc """
  Waits for every task, all within one `timeout` (milliseconds or
  `:infinity`), and returns their results in order. Tasks still running at
  the deadline are cancelled and give `{:error, %Py.Error{type: :timeout}}`.

  ## Example

      iex> tasks = for n <- 1..3, do: Py.async_call(:asyncio, :sleep, [0.01, n])
      iex> Py.await_many(tasks)
      [ok: 1, ok: 2, ok: 3]
  """
  @spec await_many([Py.Task.t()], timeout) :: [result]
  defdelegate await_many(tasks, timeout \\ 5_000), to: Py.Task

  ## objects

  @doc """
  Reads attribute `name` of a Python object handle.

  Options: `:timeout`.

  ## Example

      iex> {:ok, date} = Py.call(:datetime, :date, [2024, 5, 17])
      iex> Py.getattr(date, :year)
      {:ok, 2024}
  """
  @spec getattr(Py.Object.t(), name, [{:timeout, timeout}]) :: result
  def getattr(object, name, opts \\ [])

  def getattr(%Py.Object{} = object, name, opts) do
    {timeout, _kwargs, _node, _co} = opts!(opts, @getattr_schema, "Py.getattr/3")
    name = Options.value!(name, {:name, "attribute"}, "attribute name for Py.getattr/3")
    Call.run(context(), false, {:getattr, object, name}, timeout)
  end

  def getattr(other, _name, _opts),
    do: Options.invalid!("object for Py.getattr/3", "a %Py.Object{}", other)

  @doc """
  Calls method `name` of a Python object handle: `object.name(*args, **kwargs)`.

  Options: `:kwargs`, `:timeout`.

  ## Example

      iex> {:ok, date} = Py.call(:datetime, :date, [2024, 5, 17])
      iex> Py.call_method(date, :replace, [], kwargs: [day: 1]) |> elem(1) |> Py.call_method(:isoformat)
      {:ok, "2024-05-01"}
  """
  @spec call_method(Py.Object.t(), name, args, [{:timeout, timeout} | {:kwargs, kwargs}]) ::
          result
  def call_method(object, name, args \\ [], opts \\ [])

  def call_method(%Py.Object{} = object, name, args, opts) do
    {timeout, kwargs, _node, _co} = opts!(opts, @call_method_schema, "Py.call_method/4")
    name = Options.value!(name, {:name, "method"}, "method name for Py.call_method/4")
    args = Options.value!(args, :args, "arguments for Py.call_method/4")
    Call.run(context(), false, {:call_method, object, name, args, kwargs}, timeout)
  end

  def call_method(other, _name, _args, _opts),
    do: Options.invalid!("object for Py.call_method/4", "a %Py.Object{}", other)

  @doc """
  Wraps a binary so that Python receives it as `bytes`, even when it is valid
  UTF-8 (plain binaries become `str` then).

  ## Example

      iex> Py.eval("type(b).__name__", %{b: Py.bytes("abc")})
      {:ok, "bytes"}
  """
  @spec bytes(binary) :: Py.Bytes.t()
  def bytes(data) when is_binary(data), do: %Py.Bytes{data: data}

  def bytes(other), do: Options.invalid!("data for Py.bytes/1", "a binary", other)

  ## callbacks

  @doc """
  Registers `fun` under `name` for Python to call: `erlang.call("name",
  *args)`, `erlang.name(*args)` or `from erlang import name`. `fun` is a
  function (called with Python's arguments spread, so its arity is the
  number of arguments) or `{module, function}` (called the same way).
  Registering a name again replaces its function. Returns `:ok`; a name
  that is not an atom or string raises `ArgumentError`.

  During a Python call the function runs in the calling process; from a
  thread Python started itself, in pybridge's callback pool. Its result
  converts to Python like a call's arguments; an exception, exit or throw
  becomes `erlang.Error` (`erlang.ExitError`, `erlang.ThrowError`) with the
  reason in `.reason`. See `Py.Callback`.

  ## Example

      iex> Py.register_function(:add, fn a, b -> a + b end)
      :ok
      iex> Py.eval("__import__('erlang').call('add', 40, 2)")
      {:ok, 42}
      iex> Py.eval("__import__('erlang').add(1, 2)")
      {:ok, 3}
  """
  @spec register_function(name, Py.Callback.callable()) :: :ok
  defdelegate register_function(name, fun), to: Py.Callback

  @doc """
  Removes the function registered as `name`; Python calling it afterwards
  gets `erlang.UnknownFunction`. A callback already running finishes.
  Returns `:ok`, also when nothing was registered.

  ## Example

      iex> Py.register_function("twice", &(&1 * 2))
      :ok
      iex> Py.unregister_function("twice")
      :ok
      iex> "twice" in Py.registered_functions()
      false
  """
  @spec unregister_function(name) :: :ok
  defdelegate unregister_function(name), to: Py.Callback, as: :unregister

  @doc """
  The names of the registered functions, as Python spells them, sorted.

  ## Example

      iex> Py.register_function(:double, &(&1 * 2))
      :ok
      iex> "double" in Py.registered_functions()
      true
  """
  @spec registered_functions() :: [String.t()]
  defdelegate registered_functions(), to: Py.Callback, as: :registered

  ## contexts

  @doc """
  The context the calling process's calls run on: the bound one (see
  `Py.Context.bind/1`), else a context of the `:default` pool picked from the
  caller's pid — always the same for a process, spread over processes.

  ## Example

      iex> Py.context() == Py.context()
      true
  """
  @spec context() :: Context.t()
  def context, do: Context.route()

  @doc """
  `context(n)`: context number `n` (1-based) of the `:default` pool.
  `context(pool)`: the caller's context in `pool` (its bound context when that
  belongs to `pool`, else one picked from the caller's pid).

  Raises `ArgumentError` when `n` is out of range or the pool is unknown.

  ## Example

      iex> %Py.Context{pool: :default, index: 1} = Py.context(1)
  """
  @spec context(pos_integer | atom) :: Context.t()
  def context(index) when is_integer(index), do: context(:default, index)

  def context(pool) when is_atom(pool), do: Context.route(pool)

  def context(other) do
    Options.invalid!(
      "argument for Py.context/1",
      "a context index (1-based) or a pool name",
      other
    )
  end

  @doc """
  Context number `index` (1-based) of `pool`.

  Raises `ArgumentError` when `index` is out of range or the pool is unknown.

  ## Example

      iex> %Py.Context{pool: :default, index: 1} = Py.context(:default, 1)
  """
  @spec context(atom, pos_integer) :: Context.t()
  def context(pool, index) when is_atom(pool) and is_integer(index) do
    contexts = Context.pool!(pool)
    size = tuple_size(contexts)

    if index >= 1 and index <= size do
      elem(contexts, index - 1)
    else
      Options.invalid!(
        "context index for Py.context/2",
        "an index in 1..#{size} (pool #{inspect(pool)} has #{size} contexts)",
        index
      )
    end
  end

  def context(pool, index) do
    Options.invalid!(
      "arguments for Py.context/2",
      "a pool name and a 1-based index",
      {pool, index}
    )
  end

  @doc """
  Runs `fun` with the caller's current context (`context/0`) bound, so every
  call inside it runs on that one context; the previous binding is restored
  afterwards, even when `fun` raises. Returns what `fun` returns.

  ## Example

      iex> Py.with_context(fn ->
      ...>   :ok = Py.exec("total = sum(range(10))")
      ...>   Py.eval("total")
      ...> end)
      {:ok, 45}
  """
  @spec with_context((() -> result)) :: result when result: term
  def with_context(fun) when is_function(fun, 0), do: with_context(context(), fun)

  @doc """
  Runs `fun` with `ctx` bound to the calling process, then restores the
  previous binding (or none), even when `fun` raises, throws or exits.

  ## Example

      iex> Py.with_context(Py.context(1), fn -> Py.context().index end)
      1
  """
  @spec with_context(Context.t(), (() -> result)) :: result when result: term
  def with_context(%Context{} = ctx, fun) when is_function(fun, 0) do
    case Context.bound() do
      ^ctx ->
        fun.()

      previous ->
        :ok = Context.bind(ctx)

        try do
          fun.()
        after
          if previous, do: Context.bind(previous), else: Context.unbind()
        end
    end
  end

  def with_context(ctx, fun) do
    Options.invalid!(
      "arguments for Py.with_context/2",
      "a %Py.Context{} and a 0-arity function",
      {ctx, fun}
    )
  end

  @doc """
  Re-imports `module` from its source in every context (all pools and
  dedicated contexts), e.g. after editing it during development. Returns `:ok`
  or the first error.

  ## Example

      iex> Py.reload(:json)
      :ok
  """
  @spec reload(name) :: :ok | {:error, Error.t()}
  defdelegate reload(module), to: Py.Imports

  ## runtime controls (Py.Runtime.Venv, Py.Runtime.Memory)

  @doc """
  Activates the virtualenv at `path` in every interpreter, without a
  restart: its packages become importable in every context, sub-interpreter
  contexts included (see `Py.Runtime.Venv`).

  ## Example

      :ok = Py.activate_venv("/srv/app/.venv")
      {:ok, "numpy"} = Py.eval("__import__('numpy').__name__")
  """
  @spec activate_venv(Path.t()) :: :ok | {:error, Error.t()}
  defdelegate activate_venv(path), to: Py.Runtime.Venv, as: :activate

  @doc """
  Deactivates the venv `activate_venv/1` activated (see `Py.Runtime.Venv`).

  ## Example

      :ok = Py.deactivate_venv()
  """
  @spec deactivate_venv() :: :ok | {:error, Error.t()}
  defdelegate deactivate_venv(), to: Py.Runtime.Venv, as: :deactivate

  @doc """
  The venv active at run time and `sys.path` (see `t:Py.Runtime.Venv.info/0`).

  ## Example

      {:ok, %{active: active?, sys_path: [_ | _]}} = Py.venv_info()
  """
  @spec venv_info() :: {:ok, Py.Runtime.Venv.info()} | {:error, Error.t()}
  defdelegate venv_info(), to: Py.Runtime.Venv, as: :info

  @doc """
  Creates the venv at `path` when missing, installs `requirements` into it
  and activates it (see `Py.Runtime.Venv.ensure/3`).

  ## Example

      :ok = Py.ensure_venv("/srv/app/.venv", ["requests>=2"])
  """
  @spec ensure_venv(Path.t(), Path.t() | [String.t()], keyword) :: :ok | {:error, Error.t()}
  defdelegate ensure_venv(path, requirements \\ [], opts \\ []),
    to: Py.Runtime.Venv,
    as: :ensure

  @doc """
  Python's memory statistics: collector counters, tracked objects, RSS and,
  while `tracemalloc` traces, the top allocating lines (see
  `t:Py.Runtime.Memory.stats/0`). Options: `:context`, `:top`, `:timeout`.

  ## Example

      {:ok, %{gc_count: {_, _, _}, objects: _, rss: _}} = Py.memory_stats()
  """
  @spec memory_stats(keyword) :: {:ok, Py.Runtime.Memory.stats()} | {:error, Error.t()}
  defdelegate memory_stats(opts \\ []), to: Py.Runtime.Memory

  @doc """
  Runs Python's cycle collector on generations 0 to `generation` in every
  interpreter; `{:ok, unreachable_objects_found}`.

  ## Example

      {:ok, _found} = Py.gc()
      {:ok, _found} = Py.gc(0)
  """
  @spec gc(0..2) :: {:ok, non_neg_integer} | {:error, Error.t()}
  defdelegate gc(generation \\ 2), to: Py.Runtime.Memory

  @doc """
  Starts `tracemalloc` with `frames` frames per allocation (default 1);
  `memory_stats/1` then reports traced memory and the top lines.

  ## Example

      :ok = Py.tracemalloc_start()
  """
  @spec tracemalloc_start(pos_integer) :: :ok | {:error, Error.t()}
  defdelegate tracemalloc_start(frames \\ 1), to: Py.Runtime.Memory

  @doc """
  Stops `tracemalloc` and frees its traces.

  ## Example

      :ok = Py.tracemalloc_stop()
  """
  @spec tracemalloc_stop() :: :ok | {:error, Error.t()}
  defdelegate tracemalloc_stop(), to: Py.Runtime.Memory

  ## options and arguments

  # Read on every call, so it comes from :persistent_term (set when the
  # application starts), not from the application environment.
  @doc false
  # `config :pybridge, timeout:` (Py.Coalesce uses it too).
  @compile {:inline, default_timeout: 0}
  @spec default_timeout() :: timeout
  def default_timeout, do: :persistent_term.get(@timeout_key, @default_timeout_ms)

  @doc false
  # Validates `config :pybridge, timeout:` and publishes it; called at start.
  @spec put_default_timeout!() :: :ok
  def put_default_timeout! do
    timeout = Options.setting!(:timeout, :timeout, @default_timeout_ms)
    :persistent_term.put(@timeout_key, timeout)
  end

  # {timeout, kwargs, node, coalesce}; the first occurrence of a key wins, as
  # with Keyword.get/2, and every occurrence is validated. `coalesce` is nil
  # or {true | key, group | nil}.
  defp opts!([], _schema, _where), do: {default_timeout(), %{}, nil, nil}

  # The common coalesced form, `[coalesce: true]`, without the general
  # walk (it costs as much as the rest of coalescing an uncontended call);
  # only for the schemas that take `:coalesce`.
  defp opts!([coalesce: true], schema, _where)
       when schema in [@eval_schema, @call_schema, @ctx_eval_schema, @ctx_call_schema],
       do: {default_timeout(), %{}, nil, {true, nil}}

  defp opts!(opts, schema, where) do
    opts = Options.validate!(opts, schema, where)

    {Keyword.get_lazy(opts, :timeout, &default_timeout/0), Keyword.get(opts, :kwargs, %{}),
     Keyword.get(opts, :node), coalesce_opts(opts, where)}
  end

  defp coalesce_opts(opts, where) do
    case {Keyword.get(opts, :coalesce, false), Keyword.get(opts, :group)} do
      {false, nil} ->
        nil

      {false, group} ->
        Options.invalid!(
          ":group option for #{where}",
          "it together with coalesce: true or coalesce: key",
          group
        )

      coalesce ->
        coalesce
    end
  end

  # {group, key} for Py.Call.run/5: the key derived from the call unless one
  # was given, the group named after the call unless one was given.
  defp coalesce(nil, _default_group, _derived_key), do: nil
  defp coalesce({true, group}, default_group, key), do: {group || default_group, key}
  defp coalesce({key, group}, default_group, _key), do: {group || default_group, key}

  # The options a `node:` call hands to the other node.
  defp remote_opts(timeout, nil), do: [timeout: timeout]
  defp remote_opts(timeout, {key, nil}), do: [timeout: timeout, coalesce: key]
  defp remote_opts(timeout, {key, group}), do: [timeout: timeout, coalesce: key, group: group]

  @compile {:inline, code!: 1, locals!: 1}
  defp code!(code) when is_binary(code), do: code
  defp code!(code), do: Options.value!(code, :code, "code")

  defp locals!(locals) when locals == %{}, do: locals
  defp locals!(locals), do: Options.value!(locals, :locals, "locals for Py.eval")

  defp not_a_context!(other, where),
    do: Options.invalid!("first argument for #{where}", "a %Py.Context{}", other)
end
