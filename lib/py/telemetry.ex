defmodule Py.Telemetry do
  @moduledoc """
  `:telemetry` events of pybridge: calls, coalescing, SharedDicts, contexts
  and overload, for metrics, logs and the LiveDashboard.

  The events exist when the [telemetry](https://hex.pm/packages/telemetry)
  library is present at compile time (pybridge declares it as a dependency
  when Hex is available). Without it, every place that would emit one
  compiles to nothing: `enabled?/0` says which build this is.

  Every event, its measurements and its metadata are listed in the
  [telemetry guide](telemetry.md), with an example handler. In short:

    * `[:pybridge, :call, :start | :stop | :exception]` — a span around
      every `eval`, `exec` and `call` (`Py.Call.run/5`);
    * `[:pybridge, :coalesce, :hit | :miss | :error]` — coalescing of the
      BEAM's groups and of named Python `erlang.SharedCall` groups;
    * `[:pybridge, :shared_dict, :put | :delete | :expired]` — SharedDict
      changes (never the value; the key only with `telemetry_keys: true`);
    * `[:pybridge, :context, :start | :stop]` and `[:pybridge, :overloaded]`.

  Call spans, the overload event, SharedDict events and the Python side's
  coalescing cost nothing measurable while no handler is attached to them:
  a process of pybridge's (`Py.Telemetry.Relay`) looks at the attached
  handlers every `config :pybridge, telemetry_poll_ms:` (1,000 by default)
  and switches them on or off, so they start within that time of
  `:telemetry.attach/4`, or at once after `refresh/0`.

  `metrics/0` gives `Telemetry.Metrics` definitions for a dashboard.
  """

  @enabled Code.ensure_compiled(:telemetry) == {:module, :telemetry}

  @doc """
  Whether this build emits events (the telemetry library was present when
  pybridge was compiled).

  ## Example

      iex> is_boolean(Py.Telemetry.enabled?())
      true
  """
  @spec enabled?() :: boolean
  def enabled?, do: @enabled

  @doc false
  # The span of `Py.Call.run/5` around `body`, which gives `{result, timing}`;
  # the macro's value is the result. Compiled out, it is exactly
  # `elem(body, 0)`: nothing else runs.
  defmacro call_span(ctx, job, coalesce, do: body) do
    if @enabled do
      quote do
        if Py.Telemetry.calls_watched?() do
          span = Py.Telemetry.call_start(unquote(ctx), unquote(job), unquote(coalesce))

          try do
            unquote(body)
          catch
            kind, reason ->
              Py.Telemetry.call_exception(span, kind, reason, __STACKTRACE__)
              :erlang.raise(kind, reason, __STACKTRACE__)
          else
            {result, timing} ->
              Py.Telemetry.call_stop(span, result, timing)
              result
          end
        else
          {result, _timing} = unquote(body)
          result
        end
      end
    else
      quote do
        {result, _timing} = unquote(body)
        result
      end
    end
  end

  @doc false
  # Executes `event` when telemetry is compiled in; else compiles to
  # nothing (the arguments are not even evaluated).
  defmacro execute(event, measurements, metadata) do
    if @enabled do
      quote do
        :telemetry.execute(unquote(event), unquote(measurements), unquote(metadata))
      end
    else
      quote do: :ok
    end
  end

  if @enabled do
    @gate {__MODULE__, :calls_watched}

    @doc false
    # Whether a handler is attached to a [:pybridge, :call, _] or
    # [:pybridge, :overloaded] event, as Py.Telemetry.Relay last saw it: a
    # call skips its span (two handler lookups and three clock reads) when
    # nobody listens. An :atomics read, published once.
    @spec calls_watched?() :: boolean
    def calls_watched? do
      case :persistent_term.get(@gate, nil) do
        nil -> false
        gate -> :atomics.get(gate, 1) == 1
      end
    end

    @doc false
    # Py.Telemetry.Relay's switch for calls_watched?/0.
    @spec watch_calls(boolean) :: :ok
    def watch_calls(on?) do
      gate =
        case :persistent_term.get(@gate, nil) do
          nil ->
            gate = :atomics.new(1, signed: false)
            :persistent_term.put(@gate, gate)
            gate

          gate ->
            gate
        end

      :atomics.put(gate, 1, if(on?, do: 1, else: 0))
    end

    @doc false
    @spec call_start(Py.Context.t(), Py.Call.job(), Py.Call.coalesce()) :: {integer, map}
    def call_start(ctx, job, coalesce) do
      {kind, module, function} = describe(job)

      metadata = %{
        kind: kind,
        module: module,
        function: function,
        context: ctx,
        pool: ctx.pool,
        node: node(),
        coalesced?: coalesce != nil,
        # Set by the stop event when the call failed; nil in the start
        # event (a success then reuses this very map).
        error: nil
      }

      start = System.monotonic_time()

      :telemetry.execute(
        [:pybridge, :call, :start],
        %{monotonic_time: start, system_time: System.system_time()},
        metadata
      )

      {start, metadata}
    end

    @doc false
    @spec call_stop({integer, map}, Py.Call.result(), Py.Call.timing()) :: :ok
    def call_stop({start, metadata}, result, timing) do
      stop = System.monotonic_time()
      measurements = timing(timing, %{duration: stop - start, monotonic_time: stop})

      metadata =
        case result do
          {:error, %Py.Error{type: type}} -> %{metadata | error: type}
          _ -> metadata
        end

      :telemetry.execute([:pybridge, :call, :stop], measurements, metadata)

      if metadata.error == :overloaded do
        :telemetry.execute(
          [:pybridge, :overloaded],
          %{count: 1},
          Map.take(metadata, [:context, :pool, :node, :kind, :module, :function])
        )
      end

      :ok
    end

    @doc false
    @spec call_exception({integer, map}, atom, term, Exception.stacktrace()) :: :ok
    def call_exception({start, metadata}, kind, reason, stacktrace) do
      stop = System.monotonic_time()

      :telemetry.execute(
        [:pybridge, :call, :exception],
        %{duration: stop - start, monotonic_time: stop},
        # The span convention's kind (:error, :exit, :throw) replaces the
        # call's, which stays as :call_kind.
        Map.merge(metadata, %{
          call_kind: metadata.kind,
          kind: kind,
          reason: reason,
          stacktrace: stacktrace
        })
      )
    end

    defp timing(nil, measurements), do: measurements

    defp timing(%{queue_us: queue_us, run_us: run_us}, measurements) do
      Map.merge(measurements, %{
        queue_time: System.convert_time_unit(queue_us, :microsecond, :native),
        run_time: System.convert_time_unit(run_us, :microsecond, :native)
      })
    end

    # {kind, module, function} of a job; a job of a kind added later
    # (streams, async calls) is reported under its own tag.
    defp describe({:eval, _code, _locals}), do: {:eval, nil, nil}
    defp describe({:exec, _code}), do: {:exec, nil, nil}
    defp describe({:call, module, function, _args, _kwargs}), do: {:call, module, function}
    defp describe({:getattr, _object, name}), do: {:call, nil, name}
    defp describe({:call_method, _object, name, _args, _kwargs}), do: {:call, nil, name}
    defp describe({:reload, module}), do: {:call, module, nil}
    # Py.stream: the start names the call or eval; its batches and its close
    # are :stream spans of their own.
    defp describe({:iterate, {:call, module, function, _args, _kwargs}}),
      do: {:stream, module, function}

    defp describe({:iterate, _eval}), do: {:stream, nil, nil}
    defp describe({:next, _iter, _batch}), do: {:stream, nil, nil}
    defp describe({:close, _iter}), do: {:stream, nil, nil}
    # Py.async_call/4 to Py.await/2 (async_start/2).
    defp describe({:async, {:call, module, function, _args, _kwargs}}),
      do: {:async, module, function}

    defp describe(job) when is_tuple(job), do: {elem(job, 0), nil, nil}
  end

  @doc false
  # The span of a call that starts in one function and ends in another: a
  # `%Py.Task{}` from `Py.async_call/4` to `Py.await/2` (kind `:async`).
  # `async_start/2` gives what `async_stop/3` takes; nil when compiled out.
  @spec async_start(Py.Context.t(), Py.Call.job()) :: {integer, map} | nil
  @spec async_stop({integer, map} | nil, Py.Call.result(), Py.Call.timing()) :: :ok
  if @enabled do
    def async_start(ctx, job),
      do: if(calls_watched?(), do: call_start(ctx, {:async, job}, nil), else: nil)

    def async_stop(nil, _result, _timing), do: :ok
    def async_stop(span, result, timing), do: call_stop(span, result, timing)
  else
    def async_start(_ctx, _job), do: nil
    def async_stop(_span, _result, _timing), do: :ok
  end

  @metrics Code.ensure_compiled(Telemetry.Metrics) == {:module, Telemetry.Metrics}

  @doc """
  `Telemetry.Metrics` definitions of pybridge's main figures, for a
  reporter or the LiveDashboard's Metrics page: calls per pool (a counter,
  and their latency, queue time and run time as summaries in
  milliseconds), calls refused as overloaded, coalescing per group and side
  (hits, misses, errors and the hit rate), and SharedDict expiries,
  writes and deletes per dict.

  Needs the [telemetry_metrics](https://hex.pm/packages/telemetry_metrics)
  library at compile time; without it the list is empty.

      # lib/my_app_web/telemetry.ex
      def metrics do
        [
          # ... your application's metrics
        ] ++ Py.Telemetry.metrics()
      end

  ## Example

      iex> is_list(Py.Telemetry.metrics())
      true
  """
  @spec metrics() :: [struct]
  if @metrics do
    def metrics do
      import Telemetry.Metrics, only: [counter: 2, sum: 2, last_value: 2, summary: 2]
      ms = {:native, :millisecond}
      pool = [tags: [:pool]]
      group = [tags: [:side, :group], tag_values: &__MODULE__.coalesce_tags/1]
      dict = [tags: [:name], tag_values: &__MODULE__.shared_dict_tags/1]

      [
        counter("pybridge.call.stop.duration", [description: "Python calls"] ++ pool),
        summary("pybridge.call.stop.duration", [unit: ms, description: "call latency"] ++ pool),
        summary("pybridge.call.stop.queue_time", [unit: ms, description: "time queued"] ++ pool),
        summary("pybridge.call.stop.run_time", [unit: ms, description: "time running"] ++ pool),
        counter("pybridge.call.exception.duration", [description: "calls that raised"] ++ pool),
        sum("pybridge.overloaded.count", [description: "calls refused: queue full"] ++ pool),
        sum("pybridge.coalesce.hit.count", [description: "coalescing hits"] ++ group),
        sum("pybridge.coalesce.miss.count", [description: "coalescing misses"] ++ group),
        sum("pybridge.coalesce.error.count", [description: "coalesced errors"] ++ group),
        last_value("pybridge.coalesce.miss.hit_rate", [description: "hit rate"] ++ group),
        sum("pybridge.shared_dict.expired.count", [description: "TTL expiries"] ++ dict),
        sum("pybridge.shared_dict.put.count", [description: "writes"] ++ dict),
        sum("pybridge.shared_dict.delete.count", [description: "deletes"] ++ dict)
      ]
    end
  else
    def metrics, do: []
  end

  @doc false
  # Tags of a coalescing event: its group as text.
  @spec coalesce_tags(map) :: map
  def coalesce_tags(%{group: group, side: side}) when is_binary(group),
    do: %{group: group, side: side}

  def coalesce_tags(%{group: group, side: side}), do: %{group: inspect(group), side: side}

  @doc false
  # Tags of a SharedDict event: its name, or `#id` for a dict without one.
  @spec shared_dict_tags(map) :: map
  def shared_dict_tags(%{name: nil, id: id}), do: %{name: "##{id}"}
  def shared_dict_tags(%{name: name}), do: %{name: name}

  @doc """
  Makes `Py.Telemetry.Relay` look for attached handlers now (instead of at
  its next poll), so that call, overload, SharedDict and Python-side
  coalescing events flow at once after `:telemetry.attach/4` (and stop at
  once after `:telemetry.detach/1`). Returns `:ok`
  (also when telemetry is compiled out).

  ## Example

      iex> Py.Telemetry.refresh()
      :ok
  """
  @spec refresh() :: :ok
  if @enabled do
    def refresh do
      if Process.whereis(Py.Telemetry.Relay), do: Py.Telemetry.Relay.refresh(), else: :ok
    end
  else
    def refresh, do: :ok
  end
end
