defmodule Py.HostileHelpers do
  @moduledoc false
  # The hostile-object and colliding-key conversions as one scenario that
  # runs inside one BEAM process (a namespace belongs to one process, and
  # each `:peer.call` runs in a process of its own), in this VM or in a peer
  # VM embedding another Python, in a context of the given mode.

  @setup """
  import itertools, threading
  class Liar(set):
      def __len__(self): return 10**18
  class Endless(set):
      def __iter__(self): return itertools.count()
  class I(int):
      def bit_length(self): return 1
      def to_bytes(self, *args, **kwargs): return b'\\x01'
  n = 50_000
  l = list(range(n))
  stop, started = [False], threading.Event()
  def churn():
      started.set()
      i = 0
      while not stop[0]:
          i += 1
          l.append(i)
          l.pop(0)
  t = threading.Thread(target=churn)
  t.start()
  started.wait()
  """

  @doc """
  Runs the conversions in a new context with `opts` (`mode:`) and returns
  what each gave, as comparable terms.
  """
  @spec conversions(keyword) :: map
  def conversions(opts) do
    ctx = Py.Context.new(opts)

    try do
      :ok = Py.exec(ctx, @setup)

      %{
        nan_keys: kind(Py.eval(ctx, "{float('nan'): 1, float('nan'): 2}")),
        nan_keys_large:
          kind(Py.eval(ctx, "{**{i: i for i in range(1000)}, float('nan'): 1, float('nan'): 2}")),
        lying_len: Py.eval(ctx, "Liar({1, 2})"),
        endless_iter: Py.eval(ctx, "Endless({3})"),
        int_subclass: Py.eval(ctx, "I(2**100) == 2**100 and I(2**100)"),
        churned_lengths: churned_lengths(ctx),
        beam_keys: kind(Py.eval(ctx, "d", %{d: %{"a" => 1, :a => 2}}))
      }
    after
      Py.exec(ctx, "stop[0] = True\nt.join()")
      Py.Context.close(ctx)
    end
  end

  @doc "What `conversions/1` gives when every conversion behaves."
  @spec expected() :: map
  def expected do
    %{
      nan_keys: :conversion,
      nan_keys_large: :conversion,
      lying_len: {:ok, MapSet.new([1, 2])},
      endless_iter: {:ok, MapSet.new([3])},
      int_subclass: {:ok, 2 ** 100},
      churned_lengths: :ok,
      beam_keys: :conversion
    }
  end

  # A list another Python thread changes all along converts as a snapshot:
  # one length it had (n, or n + 1 between an append and a pop), ints only.
  defp churned_lengths(ctx) do
    results =
      for _ <- 1..5 do
        {:ok, list} = Py.eval(ctx, "l")
        {length(list), Enum.all?(list, &is_integer/1)}
      end

    if Enum.all?(results, fn {len, ints?} -> len in [50_000, 50_001] and ints? end),
      do: :ok,
      else: results
  end

  defp kind({:error, %Py.Error{type: type}}), do: type
  defp kind(other), do: other
end
