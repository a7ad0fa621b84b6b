defmodule Py.LiveDashboard.RowsTest do
  # What the LiveDashboard page shows, computed without Phoenix (the page
  # module itself compiles only with phoenix_live_dashboard; it was tried in
  # a browser against the real library, see guides/telemetry.md).
  use ExUnit.Case, async: true

  alias Py.LiveDashboard.Rows

  defp snapshot(overrides \\ %{}) do
    Map.merge(
      %{
        node: node(),
        taken_at: 1_000,
        contexts: [
          %{
            pool: :default,
            index: 1,
            mode: :main,
            calls_total: 10,
            errors_total: 1,
            in_flight: 2,
            queue_length: 1,
            bound_processes: 3,
            namespaces: 4,
            busy_us: 0,
            busy_percent: 12.5
          },
          %{
            pool: :gpu,
            index: 1,
            mode: :subinterpreter,
            calls_total: 5,
            errors_total: 0,
            in_flight: 0,
            queue_length: 0,
            bound_processes: 0,
            namespaces: 1,
            busy_us: 0
          }
        ],
        coalescing: [
          %{
            group: :users,
            side: :beam,
            label: ":users",
            hits: 3,
            misses: 1,
            errors: 0,
            active: 1,
            hit_rate: 0.75
          },
          %{
            group: "embeddings",
            side: :python,
            label: "embeddings",
            hits: 0,
            misses: 2,
            errors: 1,
            active: 0,
            hit_rate: 0.0
          }
        ],
        shared_dicts: [
          %{
            id: 7,
            name: "sessions",
            label: "sessions",
            backend: :memory,
            size: 2,
            puts: 9,
            deletes: 1,
            expired_total: 6,
            recent_expiries: [
              %{key: "a", truncated: false, at: 2_000},
              %{key: String.duplicate("k", 80), truncated: true, at: 1_500}
            ]
          },
          %{
            id: 8,
            name: nil,
            label: "#8",
            backend: :memory,
            size: 0,
            puts: 0,
            deletes: 0,
            expired_total: 1,
            recent_expiries: [%{key: "b", truncated: false, at: 3_000}]
          }
        ]
      },
      overrides
    )
  end

  test "every context becomes a row with the page's columns, and the totals add up" do
    rows = Rows.normalize(snapshot())

    assert [
             %{
               pool: :default,
               index: 1,
               mode: :main,
               calls: 10,
               errors: 1,
               in_flight: 2,
               queue: 1,
               bound: 3,
               envs: 4,
               busy: 12.5
             },
             %{pool: :gpu, mode: :subinterpreter, calls: 5, busy: nil}
           ] = rows.contexts

    assert rows.calls == 15
    assert rows.in_flight == 2
    assert rows.queued == 1
    assert rows.pools == [default: 1, gpu: 1]
  end

  test "coalescing groups of both sides and SharedDicts keep their counters, never values" do
    rows = Rows.normalize(snapshot())

    assert [
             %{group: ":users", side: :beam, hits: 3, hit_rate: 0.75},
             %{group: "embeddings", side: :python, errors: 1}
           ] = rows.coalesce

    assert [%{name: "sessions", size: 2, puts: 9, deletes: 1, expired: 6}, %{name: "#8"}] =
             rows.shared_dicts

    refute Enum.any?(rows.shared_dicts, &Map.has_key?(&1, :value))
  end

  test "expiries of every dict, newest first, with a marked cut past 80 bytes" do
    rows = Rows.normalize(snapshot())
    long = String.duplicate("k", 80) <> "…"

    assert [
             %{dict: "#8", key: "b", at: "1970-01-01T00:00:03.000Z"},
             %{dict: "sessions", key: "a"},
             %{dict: "sessions", key: ^long}
           ] = rows.expiries
  end

  test "keys are shown as at most 80 bytes, cut on a character boundary" do
    assert Rows.truncate_key("short") == "short"
    assert Rows.truncate_key(String.duplicate("x", 80)) == String.duplicate("x", 80)

    # 79 ASCII bytes then a 2-byte character that byte 80 would cut in half.
    key = String.duplicate("x", 79) <> "é" <> "tail"
    shown = Rows.truncate_key(key)
    assert shown == String.duplicate("x", 79) <> "…"
    assert String.valid?(shown)

    assert byte_size(Rows.truncate_key(String.duplicate("€", 100))) <= 80 + byte_size("…")
    # Not a string (a snapshot from an older node, say): inspected, then cut.
    assert Rows.truncate_key({:tuple, 1}) == "{:tuple, 1}"
  end

  test "busy % comes from two snapshots when the snapshot does not carry it" do
    ctx = %{pool: :p, index: 1, mode: :main, calls_total: 0, busy_us: 0}
    first = Rows.normalize(%{taken_at: 1_000, contexts: [ctx]}) |> Rows.add_busy_percent(nil)
    assert [%{busy: nil}] = first.contexts

    # 250 ms busy in one second.
    second =
      %{taken_at: 2_000, contexts: [%{ctx | busy_us: 250_000}]}
      |> Rows.normalize()
      |> Rows.add_busy_percent(first)

    assert [%{busy: 25.0}] = second.contexts
  end

  test "fetch searches, sorts and limits as live_table asks, counting all matches" do
    rows = for i <- 1..5, do: %{name: "dict#{i}", size: i, backend: :memory}
    rows = [%{name: "other", size: nil, backend: :memory} | rows]

    params = %{search: nil, sort_by: :size, sort_dir: :desc, limit: 2}
    assert {[%{size: 5}, %{size: 4}], 6} = Rows.fetch(rows, [:name], params)

    # nil sorts first ascending (not measured yet), case-insensitive search.
    assert {[%{name: "other"} | _], 6} = Rows.fetch(rows, [:name], %{params | sort_dir: :asc})
    assert {[%{name: "dict3"}], 1} = Rows.fetch(rows, [:name], %{params | search: "DICT3"})
    assert {[], 0} = Rows.fetch(rows, [:name], %{params | search: "nothing"})
  end
end
