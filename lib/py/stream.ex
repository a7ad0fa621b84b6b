defmodule Py.Stream do
  @moduledoc """
  Elixir streams over Python iterators, generators and async generators
  (`Py.stream/4`, `Py.stream_eval/2`).

  Why a stream and not a list: a generator may be infinite, slow (tokens of
  a model) or big, and the consumer often wants only part of it. A
  `Py.stream/4` is lazy: nothing runs in Python until the stream is
  consumed, and then only as far as the consumer asks, one batch ahead at
  most. Items travel in batches (`batch:`, 1,000 by default), each one an
  ordinary call on the caller's context, so a stream costs a call per batch,
  not per item, and other calls interleave with it. A batch returns early,
  with what it has, once it has run 5 ms, so a slow generator's items reach
  the consumer as they come.

  How it ends: when the generator is exhausted; when the consumer stops
  early (`Enum.take/2`, a `halt`, an exception in the consumer), in which
  case the generator is closed and its `finally` blocks run before the
  stream returns; when the consumer process dies, in which case the handle
  on the generator is released with the process and CPython closes the
  generator it frees. An exception raised by the generator reaches the
  consumer as a `Py.Error` raised after the items before it.

  The stream runs where it is consumed: the context is picked, and a
  `:__main__` function looked up in the namespace, of the process that
  consumes it.
  """

  alias Py.{Call, Context, Error, Options}

  @default_batch Py.Limits.default_stream_batch()

  @stream_schema [kwargs: :kwargs, timeout: :timeout, batch: :batch]
  @eval_schema [locals: :locals, timeout: :timeout, batch: :batch]

  @doc false
  # Py.stream/4.
  @spec call(Py.name(), Py.name(), Py.args(), keyword) :: Enumerable.t()
  def call(module, function, args, opts) do
    module = Options.value!(module, :module, "module for Py.stream/4")
    function = Options.value!(function, {:name, "function"}, "function name for Py.stream/4")
    args = Options.value!(args, :args, "arguments for Py.stream/4")
    opts = Options.validate!(opts, @stream_schema, "Py.stream/4")
    job = {:call, module, function, args, Keyword.get(opts, :kwargs, %{})}
    context = fn -> Context.route_call(module, function) end
    resource(context, module == "__main__", job, opts)
  end

  @doc false
  # Py.stream_eval/2.
  @spec eval(Py.code(), keyword) :: Enumerable.t()
  def eval(code, opts) do
    code = Options.value!(code, :code, "code for Py.stream_eval/2")
    opts = Options.validate!(opts, @eval_schema, "Py.stream_eval/2")
    job = {:eval, code, Keyword.get(opts, :locals, %{})}
    resource(&Py.context/0, true, job, opts)
  end

  defp resource(context, namespace?, job, opts) do
    timeout = Keyword.get_lazy(opts, :timeout, &Py.default_timeout/0)
    batch = Keyword.get(opts, :batch, @default_batch)

    Stream.resource(
      fn -> open(context.(), namespace?, job, batch, timeout) end,
      &next/1,
      &close/1
    )
  end

  defp open(ctx, namespace?, job, batch, timeout) do
    case Call.run(ctx, namespace?, {:iterate, job}, timeout) do
      {:ok, %Py.Object{} = iter} ->
        %{ctx: ctx, iter: iter, batch: batch, timeout: timeout, done: false, error: nil}

      {:error, %Error{} = error} ->
        raise error
    end
  end

  defp next(%{error: %Error{} = error}), do: raise(error)
  defp next(%{done: true} = state), do: {:halt, state}

  defp next(%{ctx: ctx, iter: iter, batch: batch, timeout: timeout} = state) do
    case Call.run(ctx, false, {:next, iter, batch}, timeout) do
      {:ok, {items, :more}} ->
        {items, state}

      {:ok, {items, :done}} ->
        {items, %{state | done: true}}

      {:ok, {[], {:error, reason}}} ->
        raise error(reason)

      {:ok, {items, {:error, reason}}} ->
        # The items first; the error at the consumer's next demand.
        {items, %{state | done: true, error: error(reason)}}

      {:error, %Error{} = error} ->
        raise error
    end
  end

  # Halted early (or failed): close the generator so its `finally` runs.
  defp close(%{done: true}), do: :ok

  defp close(%{ctx: ctx, iter: iter, timeout: timeout}) do
    _ = Call.run(ctx, false, {:close, iter}, timeout)
    :ok
  end

  defp error({type, message, traceback}),
    do: %Error{type: type, message: message, traceback: traceback}
end
