defmodule Py.LiveDictTest do
  # `from erlang import LiveDict`: LiveDict 2.0's API over a SharedDict. The
  # README's examples (../shared/seeds/livedict-README.md) run as written
  # but for the import line.
  use ExUnit.Case, async: true

  import ExUnit.CaptureLog
  import Py.TestHelpers
  alias Py.SharedDict, as: SD

  @moduletag timeout: 120_000

  @sync """
  from erlang import LiveDict

  live = LiveDict(work_mode='sync', backend='memory')
  live.set('foo', 123)
  print(live.get('foo'))  # 123
  live.delete('foo')
  """

  @async """
  import asyncio
  from erlang import LiveDict

  async def main():
      live = LiveDict(work_mode='async', backend='memory')
      await live.set('bar', 'hello')
      print(await live.get('bar'))

  asyncio.run(main())
  """

  @ttl """
  import time
  from erlang import LiveDict

  live = LiveDict(work_mode='sync', backend='memory')
  live.set('temp', 'expire-me', ttl=2)
  print(live.get('temp'))  # 'expire-me'
  time.sleep(3)
  print(live.get('temp'))  # None
  """

  # Uses `live` from the example before it, as in the README.
  @callbacks """
  def on_set(key, val):
      print(f'Set {key} = {val}')

  async def on_expire(key, val):
      print(f'{key} expired')

  cb1 = live.register_callback('set', on_set)
  cb2 = live.register_callback('expire', on_expire, is_async=True)
  live.set_callback_enabled(cb1, False)
  live.unregister_callback(cb2)
  """

  # As written: async_cb1/async_cb2 are the reader's own; registering runs.
  @gather """
  async def main_callback(key, val):
      await asyncio.gather(async_cb1(key, val), async_cb2(key, val))

  live.register_callback('expire', main_callback, is_async=True)
  """

  @sandbox """
  import time
  from erlang import LiveDict

  def bad_callback(key, val):
      raise RuntimeError('Oops!')

  def slow_callback(key, val):
      time.sleep(3)

  live = LiveDict(work_mode='sync', backend='memory')
  live.register_callback('set', bad_callback)
  live.register_callback('set', slow_callback, timeout=1.0)
  live.set('x', 99)  # Exceptions handled safely
  """

  @locking """
  from erlang import LiveDict

  live = LiveDict(work_mode='sync', backend='memory')
  live.set('counter', 1)

  if live.lock('counter', timeout=1):
      try:
          val = live.get('counter')
          live.set('counter', val + 1)
      finally:
          live.unlock('counter')

  print(live.get('counter'))  # Updated safely
  """

  # Runs `code` in this process's namespace with its prints captured;
  # returns what it printed.
  defp run(code) do
    {:ok, printed} = Py.eval("run_captured(code)", %{code: code})
    printed
  end

  setup do
    :ok =
      Py.exec("""
      import contextlib, io

      def run_captured(code):
          out = io.StringIO()
          with contextlib.redirect_stdout(out):
              exec(code, globals())
          return out.getvalue()
      """)
  end

  test "the README's sync, async, TTL and locking examples print what the README says" do
    assert run(@sync) == "123\n"
    assert run(@async) == "hello\n"
    assert run(@ttl) == "expire-me\nNone\n"
    assert run(@callbacks) == ""
    assert run(@gather) == ""
    assert run(@locking) == "2\n"
  end

  test "the README's sandbox example: the writer goes on, the failures are counted" do
    log =
      capture_log(fn ->
        assert run(@sandbox) == ""
        assert {:ok, 99} = Py.eval("live.get('x')")
        {:ok, name} = Py.eval("live.shared_dict.name")
        {:ok, sd} = SD.lookup(name)
        assert eventually(fn -> SD.stats(sd).callback_errors == 1 end, 20_000)
        assert eventually(fn -> SD.stats(sd).callback_timeouts == 1 end, 20_000)
        :sys.get_state(Py.SharedDict.CallbackLog)
      end)

    assert log =~ "Oops!"
  end

  test "name= shares the store with the BEAM; a private dict goes with its LiveDict" do
    name = "livedict-#{System.unique_integer([:positive])}"

    :ok =
      Py.exec("""
      from erlang import LiveDict
      shared = LiveDict(name='#{name}')
      shared.set('k', {'v': 1}, ttl=60)
      private = LiveDict()
      private_name = private.shared_dict.name
      """)

    {:ok, sd} = SD.lookup(name)
    assert SD.get(sd, "k") == %{"v" => 1}
    assert {:ok, private} = Py.eval("private_name")
    assert {:ok, %SD{}} = SD.lookup(private)
    :ok = Py.exec("private.stop()")
    assert SD.lookup(private) == :error
    assert {:ok, {true, 1}} = Py.eval("'k' in shared, len(shared)")
  end

  test "a key set again with a longer TTL lives until the new TTL (LiveDict 2.0.2 expires it at the first)" do
    :ok =
      Py.exec("""
      import time
      from erlang import LiveDict
      live = LiveDict()
      live.set('a', 1, ttl=0.2)
      live.set('a', 2, ttl=600)
      time.sleep(0.5)
      """)

    assert {:ok, 2} = Py.eval("live.get('a')")
  end

  test "two async callbacks on one event each run once (LiveDict 2.0.2 runs the last twice)" do
    log = SD.new!()
    :ok = SD.subscribe(log, [:put])

    :ok =
      Py.exec("""
      from erlang import LiveDict, SharedDict
      live = LiveDict()
      def make(name, log):
          async def cb(key, val):
              SharedDict(log).incr(name)
          return cb
      """)

    {:ok, _} =
      Py.eval(
        "live.register_callback('set', make('c1', l), is_async=True), " <>
          "live.register_callback('set', make('c2', l), is_async=True), live.set('k', 1)",
        %{l: log}
      )

    assert_receive {:shared_dict, ^log, :put, "c1"}, 20_000
    assert_receive {:shared_dict, ^log, :put, "c2"}, 20_000
    {:ok, nil} = Py.eval("live.set('k', 2)")
    assert_receive {:shared_dict, ^log, :put, _}, 20_000
    assert_receive {:shared_dict, ^log, :put, _}, 20_000
    assert SD.get(log, "c1") == 2
    assert SD.get(log, "c2") == 2
  end

  test "async mode: every method is awaitable; a lock belongs to the task" do
    :ok =
      Py.exec("""
      import asyncio
      from erlang import LiveDict

      async def scenario():
          live = LiveDict(work_mode='async')
          await live.set('n', 0)
          cb = await live.register_callback('set', lambda k, v: None)
          assert await live.set_callback_enabled(cb, False) is True
          assert await live.unregister_callback(cb) is True
          assert await live.exists('n') and await live.keys() == ['n']
          assert await live.items() == [('n', 0)]
          order = []
          async def holder():
              assert await live.lock('n', timeout=1)
              order.append('held')
              await asyncio.sleep(0.05)
              order.append('released')
              await live.unlock('n')
          async def waiter():
              await asyncio.sleep(0)
              # Another task of the same thread waits for the lock.
              assert await live.lock('n', timeout=0.01) is False
              assert await live.lock('n', timeout=5)
              order.append('waiter')
              await live.unlock('n')
          await asyncio.gather(holder(), waiter())
          await live.delete('n')
          assert await live.get('n') is None
          await live.stop()
          return order

      result = asyncio.run(scenario())
      """)

    assert {:ok, ["held", "released", "waiter"]} = Py.eval("result")
  end

  @tag :tmp_dir
  test "the sqlite backend with uri= keeps the data in that file", %{tmp_dir: dir} do
    path = Path.join(dir, "live.db")

    :ok =
      Py.exec("""
      from erlang import LiveDict
      durable = LiveDict(backend='sqlite', uri='#{path}', name='livedict-sqlite-#{System.unique_integer([:positive])}')
      durable.set('k', [1, 'two'])
      """)

    assert {:ok, [1, "two"]} = Py.eval("durable.get('k')")
    {:ok, name} = Py.eval("durable.shared_dict.name")
    {:ok, sd} = SD.lookup(name)
    assert SD.get(sd, "k") == [1, "two"]
    assert SD.backend(sd) == :sqlite
    assert File.exists?(path)
  end

  test "bad arguments raise like LiveDict's" do
    assert {:error, %Py.Error{type: "ValueError", message: msg}} =
             Py.eval("__import__('erlang').LiveDict(backend='sqlite')")

    assert msg =~ "requires uri="

    assert {:error, %Py.Error{type: "ValueError", message: "Unsupported backend: cassandra"}} =
             Py.eval("__import__('erlang').LiveDict(backend='cassandra')")

    assert {:error, %Py.Error{type: "ValueError"}} =
             Py.eval("__import__('erlang').LiveDict(work_mode='threads')")
  end
end
