defmodule Py.Dashboard do
  @moduledoc """
  Everything an operator's dashboard shows about a node's Python, in one
  map: its contexts, its coalescing groups (BEAM and Python) and its
  SharedDicts with their recent TTL expiries.

  `snapshot/1` is the one source of the LiveDashboard page (`Py.LiveDashboard`)
  and works without Phoenix: call it from IEx, a health check or your own
  page. It reads counters that already exist (`Py.Context.info/1`,
  `Py.Coalesce.stats/0`, `Py.SharedDict.stats/1`), so taking one costs no
  Python call except asking each interpreter for its named
  `erlang.SharedCall` groups (at most a second each).

  SharedDict values are never in a snapshot: only keys of recent expiries,
  cut to 80 bytes.

  ## Example

      %{node: node, contexts: [%{pool: :default} | _], coalescing: _, shared_dicts: _} =
        Py.Dashboard.snapshot()
      true = node == node()
  """

  alias Py.Dashboard.Samples

  @typedoc """
  A snapshot of one node:

    * `:node`, `:taken_at` — which node, and when (Unix time, milliseconds);
    * `:contexts` — every context (`Py.Context.all/0`), see `t:context/0`;
    * `:coalescing` — every coalescing group used so far, see `t:group/0`;
    * `:shared_dicts` — every live SharedDict (`Py.SharedDict.all/0`), see
      `t:shared_dict/0`.
  """
  @type t :: %{
          node: node,
          taken_at: integer,
          contexts: [context],
          coalescing: [group],
          shared_dicts: [shared_dict]
        }

  @typedoc """
  A context: `Py.Context.info/1` (pool, index, mode, calls, errors, in
  flight, queue, bound processes, namespaces, workers, ...) plus
  `:busy_percent`, the share of the time since the previous snapshot of this
  node (or since the context started) that its workers spent running calls,
  in percent (above 100 while overflow workers run).
  """
  @type context :: %{
          required(:pool) => atom,
          required(:index) => pos_integer,
          required(:mode) => Py.Context.mode(),
          required(:calls_total) => non_neg_integer,
          required(:errors_total) => non_neg_integer,
          required(:cancelled_total) => non_neg_integer,
          required(:in_flight) => non_neg_integer,
          required(:queue_length) => non_neg_integer,
          required(:bound_processes) => non_neg_integer,
          required(:namespaces) => non_neg_integer,
          required(:workers) => pos_integer,
          required(:busy_us) => non_neg_integer,
          required(:busy_percent) => float,
          optional(atom) => term
        }

  @typedoc """
  A coalescing group: `side` `:beam` for `Py.Coalesce` groups (`group` is
  the term), `:python` for named `erlang.SharedCall` instances (`group` is
  the name, summed over interpreters); `label` is the group as text; the
  counters are `t:Py.Coalesce.stats/0`'s.
  """
  @type group :: %{
          group: term,
          side: :beam | :python,
          label: String.t(),
          hits: non_neg_integer,
          misses: non_neg_integer,
          errors: non_neg_integer,
          active: non_neg_integer,
          hit_rate: float
        }

  @typedoc """
  A SharedDict: its id, name (`nil` for a process's dict), `label` (the name,
  or `#id`), backend and `Py.SharedDict.stats/1` counters; recent expiries
  newest first, each key cut to at most 80 bytes (at a character boundary;
  `truncated: true` then) with its expiry time (Unix ms). `error` says why
  the counters could not be read (a backend that cannot be reached; they
  are zero then), else it is `nil`.
  """
  @type shared_dict :: %{
          id: pos_integer,
          name: String.t() | nil,
          label: String.t(),
          backend: atom,
          size: non_neg_integer,
          puts: non_neg_integer,
          deletes: non_neg_integer,
          expired_total: non_neg_integer,
          recent_expiries: [%{key: String.t(), truncated: boolean, at: integer}],
          error: String.t() | nil
        }

  @key_bytes 80
  # Python groups take up to a second per interpreter.
  @remote_timeout_ms 15_000

  @doc """
  The snapshot of `node` (this node by default; another connected node is
  asked over `:erpc`). Raises `Py.Error` when that node cannot answer (type
  `:noconnection`, `:timeout` or `:erpc`); `fetch/1` returns it instead.

  ## Example

      iex> snapshot = Py.Dashboard.snapshot()
      iex> Enum.any?(snapshot.contexts, &(&1.pool == :default))
      true
  """
  @spec snapshot(node) :: t
  def snapshot(node \\ node()) do
    case fetch(node) do
      {:ok, snapshot} -> snapshot
      {:error, error} -> raise error
    end
  end

  @doc """
  Like `snapshot/1`, as `{:ok, snapshot}` or `{:error, %Py.Error{}}` when
  the node cannot answer.

  ## Example

      iex> {:ok, %{node: node}} = Py.Dashboard.fetch(node())
      iex> node == node()
      true
      iex> {:error, %Py.Error{type: :noconnection}} = Py.Dashboard.fetch(:"nobody@nowhere")
  """
  @spec fetch(node) :: {:ok, t} | {:error, Py.Error.t()}
  def fetch(node \\ node())

  def fetch(node) when node == node(), do: {:ok, local()}

  def fetch(node) when is_atom(node) do
    {:ok, :erpc.call(node, __MODULE__, :snapshot, [node], @remote_timeout_ms)}
  catch
    :error, {:erpc, :noconnection} ->
      {:error, %Py.Error{type: :noconnection, message: "node #{inspect(node)} is not reachable"}}

    :error, {:erpc, :timeout} ->
      {:error,
       %Py.Error{
         type: :timeout,
         message: "node #{inspect(node)} did not answer within #{@remote_timeout_ms} ms"
       }}

    kind, reason ->
      {:error,
       %Py.Error{
         type: :erpc,
         message:
           "the snapshot of node #{inspect(node)} failed: " <>
             Exception.format_banner(kind, reason)
       }}
  end

  def fetch(other), do: Py.Options.invalid!("node for Py.Dashboard.fetch/1", "a node name", other)

  defp local do
    %{
      node: node(),
      taken_at: System.system_time(:millisecond),
      contexts: contexts(),
      coalescing: coalescing(),
      shared_dicts: shared_dicts()
    }
  end

  defp contexts do
    Enum.flat_map(Py.Context.all(), fn ctx ->
      try do
        info = Py.Context.info(ctx)
        [Map.put(info, :busy_percent, Samples.busy_percent(ctx.ref, info.busy_us))]
      rescue
        _ in [ArgumentError, Py.Error] -> []
      end
    end)
  end

  # A dict destroyed, or a context closed, after it was listed is left out.
  defp shared_dicts do
    Enum.flat_map(Py.SharedDict.all(), fn sd ->
      try do
        [shared_dict(sd)]
      rescue
        Py.Error -> []
      end
    end)
  end

  defp coalescing do
    Py.Coalesce.stats()
    |> Enum.map(fn
      {{:python, name}, stats} when is_binary(name) ->
        Map.merge(stats, %{group: name, side: :python, label: name})

      {group, stats} ->
        Map.merge(stats, %{group: group, side: :beam, label: inspect(group)})
    end)
    |> Enum.sort_by(&{&1.side, &1.label})
  end

  defp shared_dict(sd) do
    listed = %{
      id: sd.id,
      name: sd.name,
      label: sd.name || "##{sd.id}",
      backend: Py.SharedDict.backend(sd),
      error: nil
    }

    case Py.SharedDict.stats(sd) do
      %{} = stats ->
        Map.merge(listed, %{
          size: stats.size,
          puts: stats.puts,
          deletes: stats.deletes,
          expired_total: stats.expired_total,
          recent_expiries: Enum.map(stats.recent_expiries, &expiry/1)
        })

      # Its backend is unreachable (a Redis server down): listed, with the
      # reason and no counters, rather than hiding it or failing the page.
      {:error, error} ->
        Map.merge(listed, %{
          size: 0,
          puts: 0,
          deletes: 0,
          expired_total: 0,
          recent_expiries: [],
          error: Exception.message(error)
        })
    end
  end

  defp expiry({key, at}) do
    {key, truncated} = cut(key)
    %{key: key, truncated: truncated, at: at}
  end

  @doc false
  # `key` cut to at most 80 bytes, at a UTF-8 character boundary.
  @spec cut(String.t()) :: {String.t(), boolean}
  def cut(key) when byte_size(key) <= @key_bytes, do: {key, false}

  def cut(key) do
    <<head::binary-size(@key_bytes), _::binary>> = key
    {valid_prefix(head), true}
  end

  defp valid_prefix(bin) do
    if String.valid?(bin),
      do: bin,
      else: valid_prefix(binary_part(bin, 0, byte_size(bin) - 1))
  end
end
