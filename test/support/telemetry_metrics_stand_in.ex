# A stand-in for the `telemetry_metrics` library (1.x), compiled only when
# the real one is missing (no Hex here), so that the suite can check
# `Py.Telemetry.metrics/0`: each definition names an event pybridge emits,
# a measurement that event carries, and tags its metadata has. It builds
# the same structs with the same fields as the library (name, event_name,
# measurement, tags, tag_values, unit, description, ...) from the same
# arguments, and nothing else. It never lives in lib/.
unless Code.ensure_loaded?(Telemetry.Metrics) do
  defmodule Telemetry.Metrics do
    @moduledoc false

    for kind <- [Counter, Sum, LastValue, Summary, Distribution] do
      defmodule Module.concat(__MODULE__, kind) do
        @moduledoc false
        defstruct [
          :name,
          :event_name,
          :measurement,
          :tags,
          :tag_values,
          :keep,
          :drop,
          :description,
          :unit,
          :reporter_options
        ]
      end
    end

    def counter(name, opts \\ []), do: build(Telemetry.Metrics.Counter, name, opts)
    def sum(name, opts \\ []), do: build(Telemetry.Metrics.Sum, name, opts)
    def last_value(name, opts \\ []), do: build(Telemetry.Metrics.LastValue, name, opts)
    def summary(name, opts \\ []), do: build(Telemetry.Metrics.Summary, name, opts)
    def distribution(name, opts \\ []), do: build(Telemetry.Metrics.Distribution, name, opts)

    defp build(struct, name, opts) do
      name = name |> String.split(".") |> Enum.map(&String.to_atom/1)
      {event_name, [measurement]} = Enum.split(name, -1)

      struct(struct,
        name: name,
        event_name: Keyword.get(opts, :event_name, event_name),
        measurement: Keyword.get(opts, :measurement, measurement),
        tags: Keyword.get(opts, :tags, []),
        tag_values: Keyword.get(opts, :tag_values, & &1),
        keep: Keyword.get(opts, :keep),
        drop: Keyword.get(opts, :drop),
        description: Keyword.get(opts, :description),
        unit: Keyword.get(opts, :unit, :unit),
        reporter_options: Keyword.get(opts, :reporter_options, [])
      )
    end
  end
end
