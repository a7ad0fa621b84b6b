if Code.ensure_loaded?(Phoenix.LiveDashboard.PageBuilder) do
  defmodule Py.LiveDashboard do
    @moduledoc """
    A [Phoenix LiveDashboard](https://hexdocs.pm/phoenix_live_dashboard) page
    for the Python side of a node: its contexts, its request-coalescing
    groups and its SharedDicts with their TTL expiries.

    Operators already watch the BEAM from LiveDashboard; this page puts the
    Python workload beside it, so a busy context, a coalescing group that
    stopped coalescing or a dict whose keys expire in bulk shows up where they
    look. It is compiled only when `phoenix_live_dashboard` is a dependency of
    the application.

    Mount it in the router:

        live_dashboard "/dashboard", additional_pages: [python: Py.LiveDashboard]

    Three tabs, each a sortable, searchable table refreshed at the dashboard's
    interval:

      * **Contexts** — every context of every pool: pool, index, mode, calls,
        errors, calls in flight, queue length, bound processes, process
        namespaces ("envs") and busy % (the share of the last refresh
        interval its home worker spent running calls);
      * **Coalescing** — every group, BEAM and Python side: hits, misses,
        errors, executions running, hit rate;
      * **SharedDicts & TTL expiries** — every dict: backend, size, puts,
        deletes, expired keys; and, in a second sub-tab, the most recent
        expiries of every dict, with key and time.

    SharedDict values are never shown, and keys only as their first 80 bytes.

    All data comes from `Py.Dashboard.snapshot/1`, called for the node chosen
    in the dashboard's node selector: the page works against a remote node
    when pybridge runs there (the menu link is disabled otherwise).

    `mix pybridge.dashboard` serves a dashboard with this page on
    http://127.0.0.1:4000 under a synthetic load, to look at it.
    """
    use Phoenix.LiveDashboard.PageBuilder

    alias Py.LiveDashboard.Rows

    @title "Python"

    # The chosen node needs pybridge's code and its application running:
    # Py.Supervisor is the application's top supervisor. (A requirement
    # `application: :pybridge` would not do: LiveDashboard 0.8 checks it with
    # Application.get_application/1, which takes a module.)
    @impl true
    def init(opts) do
      {:ok, Map.new(opts), module: Py.Dashboard, process: Py.Supervisor}
    end

    @impl true
    def menu_link(_session, capabilities) do
      if Py.Dashboard in capabilities.modules and Py.Supervisor in capabilities.processes do
        {:ok, @title}
      else
        {:disabled, @title, "https://hexdocs.pm/pybridge/Py.LiveDashboard.html"}
      end
    end

    @impl true
    def mount(_params, _session, socket) do
      {:ok, load(socket)}
    end

    @impl true
    def handle_refresh(socket) do
      {:noreply, load(socket)}
    end

    # One snapshot per refresh feeds the cards and the table of the tab shown;
    # busy % is the growth of each context's busy time since the previous one.
    defp load(socket) do
      node = socket.assigns.page.node
      previous = socket.assigns[:snapshot]

      case fetch_snapshot(node) do
        {:ok, snapshot} ->
          snapshot = Rows.add_busy_percent(snapshot, previous)
          assign(socket, snapshot: snapshot, error: nil)

        {:error, reason} ->
          assign(socket, snapshot: nil, error: reason)
      end
    end

    defp fetch_snapshot(node) do
      case Py.Dashboard.snapshot(node) do
        {:ok, snapshot} -> {:ok, Rows.normalize(snapshot)}
        {:error, reason} -> {:error, reason}
        %{} = snapshot -> {:ok, Rows.normalize(snapshot)}
      end
    rescue
      e -> {:error, Exception.message(e)}
    catch
      :exit, reason -> {:error, inspect(reason)}
    end

    @impl true
    # The tabs are live_nav_bar items, and each tab's content follows the
    # bar rather than sitting in the item's slot: LiveDashboard 0.8's nav bar
    # component does not re-render its slot when only the page's assigns
    # change, so content there would never refresh (seen in Chromium: the
    # numbers stayed at their first values while the snapshots moved on).
    def render(assigns) do
      ~H"""
      <div :if={@error} class="alert alert-warning">
        Could not read pybridge's state on <%= @page.node %>: <%= format_error(@error) %>
      </div>
      <.live_nav_bar :if={@snapshot} id="python_nav_bar" page={@page}>
        <:item name="contexts" label="Contexts" method="patch"><span hidden></span></:item>
        <:item name="coalescing" label="Coalescing" method="patch"><span hidden></span></:item>
        <:item name="shared_dicts" label="SharedDicts & TTL expiries" method="patch"><span hidden></span></:item>
      </.live_nav_bar>
      <div :if={@snapshot && tab(@page) == "contexts"} id="python-tab-contexts">
        <.summary snapshot={@snapshot} />
        <.live_table
          id="python_contexts"
          dom_id="python-contexts"
          page={@page}
          title="Contexts"
          rows_name="contexts"
          row_fetcher={rows(@snapshot.contexts, [:pool, :mode])}
          default_sort_by={:calls}
        >
          <:col field={:pool} sortable={:asc} />
          <:col field={:index} text_align="right" sortable={:asc} />
          <:col field={:mode} sortable={:asc} />
          <:col field={:calls} text_align="right" sortable={:desc} />
          <:col field={:errors} text_align="right" sortable={:desc} />
          <:col field={:in_flight} header="In flight" text_align="right" sortable={:desc} />
          <:col field={:queue} text_align="right" sortable={:desc} />
          <:col field={:bound} header="Bound processes" text_align="right" sortable={:desc} />
          <:col field={:envs} header="Envs" text_align="right" sortable={:desc} />
          <:col :let={row} field={:busy} header="Busy %" text_align="right" sortable={:desc}>
            <%= Rows.format_percent(row.busy) %>
          </:col>
        </.live_table>
      </div>
      <div :if={@snapshot && tab(@page) == "coalescing"} id="python-tab-coalescing">
        <.live_table
          id="python_coalescing"
          dom_id="python-coalescing"
          page={@page}
          title="Coalescing groups"
          rows_name="groups"
          row_fetcher={rows(@snapshot.coalesce, [:group, :side])}
          default_sort_by={:hits}
        >
          <:col field={:group} sortable={:asc} />
          <:col field={:side} sortable={:asc} />
          <:col field={:hits} text_align="right" sortable={:desc} />
          <:col field={:misses} text_align="right" sortable={:desc} />
          <:col field={:errors} text_align="right" sortable={:desc} />
          <:col field={:active} text_align="right" sortable={:desc} />
          <:col :let={row} field={:hit_rate} header="Hit rate %" text_align="right" sortable={:desc}>
            <%= Rows.format_percent(row.hit_rate && row.hit_rate * 100) %>
          </:col>
        </.live_table>
      </div>
      <div :if={@snapshot && tab(@page) == "shared_dicts"} id="python-tab-shared-dicts">
        <%!-- Two tables, two sub-tabs: live_table keeps its search and sort in
             the page's URL parameters, which tables on one view would share. --%>
        <.live_nav_bar
          id="python_dicts_nav_bar"
          page={@page}
          nav_param="dicts"
          style={:bar}
          extra_params={["nav"]}
        >
          <:item name="dicts" label="SharedDicts" method="patch"><span hidden></span></:item>
          <:item name="expiries" label="Recent TTL expiries" method="patch"><span hidden></span></:item>
        </.live_nav_bar>
        <div :if={dicts_tab(@page) == "dicts"}>
          <.live_table
            id="python_shared_dicts"
            dom_id="python-shared-dicts"
            page={@page}
            title="SharedDicts"
            rows_name="dicts"
            row_fetcher={rows(@snapshot.shared_dicts, [:name, :backend])}
            default_sort_by={:size}
          >
            <:col field={:name} sortable={:asc} />
            <:col field={:backend} sortable={:asc} />
            <:col field={:size} text_align="right" sortable={:desc} />
            <:col field={:puts} text_align="right" sortable={:desc} />
            <:col field={:deletes} text_align="right" sortable={:desc} />
            <:col field={:expired} header="Expired" text_align="right" sortable={:desc} />
          </.live_table>
        </div>
        <div :if={dicts_tab(@page) == "expiries"}>
          <.live_table
            id="python_expiries"
            dom_id="python-expiries"
            page={@page}
            title="Recent TTL expiries"
            hint="The latest keys each dict expired, newest first. Keys are cut to 80 bytes; values are never shown."
            rows_name="expiries"
            row_fetcher={rows(@snapshot.expiries, [:dict, :key])}
            default_sort_by={:at}
          >
            <:col field={:at} header="Expired at (UTC)" sortable={:desc} />
            <:col field={:dict} header="SharedDict" sortable={:asc} />
            <:col field={:key} sortable={:asc} />
          </.live_table>
        </div>
      </div>
      """
    end

    @tabs ~w(contexts coalescing shared_dicts)

    defp dicts_tab(%{params: %{"dicts" => "expiries"}}), do: "expiries"
    defp dicts_tab(_page), do: "dicts"

    # The tab shown: the nav bar's `nav` parameter, else the first tab.
    defp tab(%{params: params}) do
      case params do
        %{"nav" => tab} when tab in @tabs -> tab
        _ -> hd(@tabs)
      end
    end

    attr(:snapshot, :map, required: true)

    defp summary(assigns) do
      ~H"""
      <.row>
        <:col>
          <.card title="Contexts" inner_title={pools(@snapshot.pools)}>
            <%= length(@snapshot.contexts) %>
          </.card>
        </:col>
        <:col>
          <.card title="Calls" inner_title="completed, all contexts">
            <%= @snapshot.calls %>
          </.card>
        </:col>
        <:col>
          <.card title="Now" inner_title="calls in flight / waiting in a queue">
            <%= @snapshot.in_flight %> / <%= @snapshot.queued %>
          </.card>
        </:col>
      </.row>
      """
    end

    defp pools(pools), do: Enum.map_join(pools, ", ", fn {pool, n} -> "#{pool}: #{n}" end)

    # live_table's row_fetcher: (params, node) -> {rows, total}.
    defp rows(list, searchable), do: fn params, _node -> Rows.fetch(list, searchable, params) end

    defp format_error(reason) when is_binary(reason), do: reason
    defp format_error(reason), do: inspect(reason)
  end
end
