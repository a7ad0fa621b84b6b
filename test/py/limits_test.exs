defmodule Py.LimitsTest do
  use ExUnit.Case, async: true

  doctest Py.Limits

  @limits_rs Path.expand("../../native/pybridge/src/limits.rs", __DIR__)

  test "the limits with a twin in limits.rs agree with it" do
    source = File.read!(@limits_rs)

    [_, items] = Regex.run(~r/pub const DEFAULT_MAX_RESULT_ITEMS: usize = ([0-9_]+);/, source)

    assert String.to_integer(String.replace(items, "_", "")) ==
             Py.Limits.default_max_result_items()

    [_, queue] = Regex.run(~r/pub const DEFAULT_MAX_QUEUE: usize = ([0-9_]+);/, source)
    assert String.to_integer(String.replace(queue, "_", "")) == Py.Limits.default_max_queue()

    [_, batch] = Regex.run(~r/pub const MAX_STREAM_BATCH: usize = ([0-9_]+);/, source)
    assert String.to_integer(String.replace(batch, "_", "")) == Py.Limits.max_stream_batch()
  end

  test "a timeout past the longest timer is refused, naming the limit" do
    too_long = Py.Limits.max_timeout_ms() + 1

    error = assert_raise ArgumentError, fn -> Py.eval("1", %{}, timeout: too_long) end
    assert error.message =~ Integer.to_string(Py.Limits.max_timeout_ms())
  end
end
