defmodule Py.ErlangFacadeTest do
  # The examples of the context-affinity reference, called through the Erlang
  # modules :py and :py_context_router exactly as an Erlang caller would
  # (binaries for code, atoms for names, maps for locals and kwargs).
  use ExUnit.Case, async: false

  import Py.TestHelpers

  describe "py:eval/exec/call" do
    test "routed forms" do
      assert :py.eval("1 + 2") == {:ok, 3}
      assert :py.eval("x * y", %{x: 2, y: 3}) == {:ok, 6}
      assert :py.eval("x + 1", %{x: 1}, 5_000) == {:ok, 2}
      assert :py.eval(~c"1 + 1") == {:ok, 2}
      assert :py.exec("facade_x = 42") == :ok
      assert :py.eval("facade_x") == {:ok, 42}
      assert :py.call(:math, :sqrt, [16]) == {:ok, 4.0}
      assert :py.call(:"os.path", :join, ["a", "b"]) == {:ok, "a/b"}
      assert :py.call(:builtins, :int, ["ff"], %{base: 16}) == {:ok, 255}
      assert :py.call(:builtins, :int, ["ff"], %{base: 16}, 5_000) == {:ok, 255}
    end

    test "errors come back as {error, Reason} with the Py.Error map" do
      assert {:error, %{__struct__: Py.Error, type: "ZeroDivisionError"}} = :py.eval("1 / 0")
      assert {:error, %Py.Error{type: "SyntaxError"}} = :py.exec("def (")
      assert {:error, %Py.Error{type: "ModuleNotFoundError"}} = :py.call(:no_such_mod_xyz, :f, [])

      assert {:error, %Py.Error{type: :timeout}} =
               :py.eval("__import__('time').sleep(0.5)", %{}, 50)

      assert {:error, %Py.Error{type: :timeout}} = :py.call(:time, :sleep, [0.5], %{}, 50)
    end
  end

  describe "explicit contexts (seed: Using Explicit Contexts)" do
    test "state persists on one context" do
      ctx = :py.context(1)
      :ok = :py.exec(ctx, "counter = 0")
      :ok = :py.exec(ctx, "counter += 1")
      assert :py.eval(ctx, "counter") == {:ok, 1}
      :ok = :py.exec(ctx, "counter += 1")
      assert :py.eval(ctx, "counter") == {:ok, 2}
    end

    test "multiple independent contexts" do
      ctx1 = :py.context(1)
      ctx2 = if :py_context_router.num_contexts() > 1, do: :py.context(2), else: Py.Context.new()
      :ok = :py.exec(ctx1, "x = 'context one'")
      :ok = :py.exec(ctx2, "x = 'context two'")
      assert :py.eval(ctx1, "x") == {:ok, "context one"}
      assert :py.eval(ctx2, "x") == {:ok, "context two"}
    end

    test "context-first eval/3 and call/4,5" do
      ctx = :py.context(1)
      assert :py.eval(ctx, "x + 1", %{x: 1}) == {:ok, 2}
      assert :py.call(ctx, :math, :sqrt, [9]) == {:ok, 3.0}
      assert :py.call(ctx, :builtins, :int, ["ff"], %{base: 16}) == {:ok, 255}

      # With a context first, the fifth argument is the kwargs (map or proplist).
      assert :py.call(ctx, :builtins, :int, ["11"], base: 2) == {:ok, 3}
      assert :py.ctx_call(ctx, :builtins, :int, ["11"], %{base: 2}, 1_000) == {:ok, 3}
    end
  end

  describe "binding (seed: Binding Contexts to Processes)" do
    test "bind_context / unbind_context" do
      ctx = :py_context_router.get_context()
      :ok = :py_context_router.bind_context(ctx)
      :ok = :py.exec("x = 42")
      assert :py.eval("x") == {:ok, 42}
      assert :py.eval(ctx, "x") == {:ok, 42}
      :ok = :py_context_router.unbind_context()
      assert Py.Context.bound() == nil
    end

    test "scoped binding with try/after" do
      run_with_context = fn fun ->
        ctx = :py_context_router.get_context()
        :ok = :py_context_router.bind_context(ctx)

        try do
          fun.()
        after
          :py_context_router.unbind_context()
        end
      end

      result =
        run_with_context.(fn ->
          :ok = :py.exec("total = 0")
          :ok = :py.exec("for i in range(10): total += i")
          :py.eval("total")
        end)

      assert result == {:ok, 45}
      assert Py.Context.bound() == nil
    end

    test "py:bind/0,1, py:unbind/0,1 and py:with_context/1" do
      assert :py.bind() == :ok
      assert Py.Context.bound() == :py.context()
      assert :py.unbind() == :ok
      assert Py.Context.bound() == nil

      ctx = :py.context(1)
      assert :py.bind(ctx) == :ok
      assert :py.context() == ctx
      assert :py.unbind(ctx) == :ok
      assert Py.Context.bound() == nil

      {:ok, own} = :py.bind(:new)
      assert %Py.Context{pool: :dedicated} = own
      :ok = :py.exec(own, "x = 1")
      assert :py.eval(own, "x") == {:ok, 1}
      assert :py.unbind(own) == :ok
      assert {:error, %Py.Error{type: :closed}} = :py.eval(own, "x")

      result =
        :py.with_context(fn ->
          :ok = :py.exec("total = sum(range(10))")
          :py.eval("total")
        end)

      assert result == {:ok, 45}
      assert Py.Context.bound() == nil
    end

    test "ctx_call/4,5,6, ctx_eval/2,3,4, ctx_exec/2" do
      ctx = :py.context(1)
      assert :py.ctx_exec(ctx, "def add(a, b=0):\n    return a + b\n") == :ok
      assert :py.ctx_call(ctx, :__main__, :add, [1]) == {:ok, 1}
      assert :py.ctx_call(ctx, :__main__, :add, [1], %{b: 2}) == {:ok, 3}
      assert :py.ctx_call(ctx, :__main__, :add, [1], %{b: 3}, 5_000) == {:ok, 4}
      assert :py.ctx_eval(ctx, "add(1, 1)") == {:ok, 2}
      assert :py.ctx_eval(ctx, "add(x, 1)", %{x: 2}) == {:ok, 3}
      assert :py.ctx_eval(ctx, "add(x, 1)", %{x: 3}, 5_000) == {:ok, 4}

      assert {:error, %Py.Error{type: :timeout}} =
               :py.ctx_eval(ctx, "__import__('time').sleep(0.5)", %{}, 50)
    end
  end

  describe "context API reference and pool statistics" do
    test "py:context/0,1, get_context/0,1" do
      assert %Py.Context{} = :py.context()
      assert :py.context() == :py_context_router.get_context()
      assert %Py.Context{index: 1} = :py.context(1)
      assert %Py.Context{pool: :default} = :py_context_router.get_context(:default)
      assert_raise ArgumentError, fn -> :py_context_router.get_context(:no_such_pool) end
      assert_raise ArgumentError, fn -> :py.context(0) end
    end

    test "num_contexts, pool_started, contexts, contexts_started" do
      n = :py_context_router.num_contexts()
      assert n == Py.Context.num_contexts()
      assert :py_context_router.pool_started(:default) == true
      assert :py_context_router.pool_started(:no_such_pool) == false
      assert length(:py_context_router.contexts(:default)) == n
      assert :py.contexts_started() == true
    end
  end

  describe "use cases" do
    test "database connection kept across calls" do
      ctx = :py.context(1)
      # sqlite3 objects only work on the thread that made them. Calls run on
      # the context's home thread unless it is blocked in a long call, e.g. a
      # `time.sleep` left running by an earlier test's timeout; wait for
      # those to end (see guides/contexts.md, "Thread-bound objects").
      assert Py.TestHelpers.eventually(fn -> Py.Context.info(ctx).in_flight == 0 end, 5_000)

      :ok =
        :py.exec(ctx, """
        import sqlite3
        conn = sqlite3.connect(':memory:')
        cursor = conn.cursor()
        cursor.execute('CREATE TABLE users (id INTEGER, name TEXT)')
        """)

      :ok = :py.exec(ctx, "cursor.execute('INSERT INTO users VALUES (1, \"Alice\")')")
      :ok = :py.exec(ctx, "cursor.execute('INSERT INTO users VALUES (2, \"Bob\")')")

      assert :py.eval(ctx, "cursor.execute('SELECT * FROM users ORDER BY id').fetchall()") ==
               {:ok, [{1, "Alice"}, {2, "Bob"}]}

      :ok = :py.exec(ctx, "conn.close()")
    end

    test "incremental processing" do
      ctx = :py.context(1)
      :ok = :py.exec(ctx, "results = []")

      Enum.each([1, 2, 3, 4, 5], fn item ->
        :py.eval(ctx, "results.append(item * 2)", %{item: item})
      end)

      assert :py.eval(ctx, "results") == {:ok, [2, 4, 6, 8, 10]}
    end

    test "per-process chat history through '__main__'" do
      ctx = :py.context()

      :ok =
        :py.exec(ctx, """
        conversation_history = []
        def add_message(role, content):
            conversation_history.append({'role': role, 'content': content})
        def get_history():
            return conversation_history
        """)

      assert {:ok, nil} = :py.call(ctx, :__main__, :add_message, ["user", "hello"])
      assert {:ok, nil} = :py.call(ctx, :__main__, :add_message, ["assistant", "hi"])

      assert :py.call(ctx, :__main__, :get_history, []) ==
               {:ok,
                [
                  %{"role" => "user", "content" => "hello"},
                  %{"role" => "assistant", "content" => "hi"}
                ]}

      other = in_process(fn -> :py.call(ctx, :__main__, :get_history, []) end)
      assert {:error, %Py.Error{}} = other
    end

    test "process namespaces: same context, isolated processes" do
      ctx = :py.context(1)
      :ok = :py.exec(ctx, "counter = 0")
      :ok = :py.exec(ctx, "counter += 1")
      assert :py.eval(ctx, "counter") == {:ok, 1}

      assert in_process(fn ->
               :ok = :py.exec(ctx, "counter = 100")
               :py.eval(ctx, "counter")
             end) == {:ok, 100}

      assert :py.eval(ctx, "counter") == {:ok, 1}

      a =
        Task.async(fn ->
          :ok = :py.exec(ctx, "x = 'from process A'")
          :py.eval(ctx, "x")
        end)

      b =
        Task.async(fn ->
          :ok = :py.exec(ctx, "x = 'from process B'")
          :py.eval(ctx, "x")
        end)

      assert Task.await(a) == {:ok, "from process A"}
      assert Task.await(b) == {:ok, "from process B"}
    end

    test "scheduler affinity default" do
      assert :py.call(:math, :sqrt, [16]) == {:ok, 4.0}
    end

    test "reload" do
      assert :py.reload(:json) == :ok
    end
  end
end
