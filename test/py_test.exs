defmodule PyTest do
  # Every test runs in its own process, so the Python state it creates lives in
  # its own process namespace: these tests can run concurrently.
  use ExUnit.Case, async: true

  import Py.TestHelpers

  doctest Py
  doctest Py.Error
  doctest Py.Object
  doctest Py.Bytes

  describe "eval" do
    test "evaluates expressions" do
      assert Py.eval("1 + 1") == {:ok, 2}
      assert Py.eval("'a' * 3") == {:ok, "aaa"}
      assert Py.eval("[i * i for i in range(4)]") == {:ok, [0, 1, 4, 9]}
    end

    test "takes locals with atom or string keys" do
      assert Py.eval("a + b", %{a: 1, b: 2}) == {:ok, 3}
      assert Py.eval("a + b", %{"a" => 1, "b" => 2}) == {:ok, 3}
      assert Py.eval("a + b", %{:a => 1, "b" => 2}, timeout: 5_000) == {:ok, 3}
    end

    test "locals are visible to that evaluation only" do
      assert Py.eval("only_here", %{only_here: 1}) == {:ok, 1}
      assert {:error, %Py.Error{type: "NameError"}} = Py.eval("only_here")
    end

    test "accepts chardata code (as Erlang callers pass it)" do
      assert Py.eval(~c"1 + 1") == {:ok, 2}
      assert Py.eval(["1", " + ", ~c"2"]) == {:ok, 3}
    end

    test "same source evaluated repeatedly keeps giving the right answer" do
      for i <- 1..50, do: assert(Py.eval("n + 1", %{n: i}) == {:ok, i + 1})
    end
  end

  describe "exec" do
    test "state persists across the calls of one process" do
      assert Py.exec("x = 1") == :ok
      assert Py.exec("x += 41") == :ok
      assert Py.eval("x") == {:ok, 42}
    end

    test "defines functions callable through module __main__" do
      :ok = Py.exec("def add(a, b=10):\n    return a + b\n")
      assert Py.call(:__main__, :add, [1, 2]) == {:ok, 3}
      assert Py.call("__main__", "add", [1], kwargs: [b: 5]) == {:ok, 6}
      assert Py.call(:__main__, :add, [1]) == {:ok, 11}
    end

    test "imports stay imported" do
      :ok = Py.exec("import json")
      assert Py.eval("json.dumps([1, 2])") == {:ok, "[1, 2]"}
    end
  end

  describe "call" do
    test "calls module functions with atoms or strings" do
      assert Py.call(:math, :sqrt, [16]) == {:ok, 4.0}
      assert Py.call("math", "sqrt", [2.25]) == {:ok, 1.5}
      assert Py.call(:builtins, :len, [[1, 2, 3]]) == {:ok, 3}
    end

    test "dotted modules work" do
      assert Py.call("os.path", :join, ["a", "b"]) == {:ok, "a/b"}
      assert Py.call(:"os.path", :basename, ["/x/y.txt"]) == {:ok, "y.txt"}
    end

    test "with no arguments" do
      assert {:ok, cwd} = Py.call(:os, :getcwd)
      assert cwd == File.cwd!()
    end

    test "kwargs as a keyword list or a map" do
      assert Py.call(:builtins, :sorted, [[3, 1, 2]], kwargs: [reverse: true]) == {:ok, [3, 2, 1]}
      assert Py.call(:builtins, :int, ["ff"], kwargs: %{base: 16}) == {:ok, 255}
      assert Py.call(:builtins, :int, ["ff"], kwargs: %{"base" => 16}) == {:ok, 255}
    end

    test "C extension modules import" do
      assert {:ok, %Py.Object{} = hash} = Py.call(:hashlib, :sha256, [Py.bytes("abc")])

      assert Py.call_method(hash, :hexdigest) ==
               {:ok, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}

      assert Py.eval("str(__import__('decimal').Decimal('1.10') + 1)") == {:ok, "2.10"}
      assert Py.eval("__import__('zlib').crc32(b'abc')") == {:ok, 891_568_578}
    end
  end

  describe "bang variants" do
    test "return the value" do
      assert Py.eval!("2 ** 10") == 1024
      assert Py.eval!("x", %{x: 1}) == 1
      assert Py.exec!("bang_x = 3") == :ok
      assert Py.eval!("bang_x") == 3
      assert Py.call!(:math, :floor, [2.5]) == 2
      assert Py.call!(:builtins, :int, ["11"], kwargs: [base: 2]) == 3
      ctx = Py.context()
      assert Py.eval!(ctx, "1") == 1
      assert Py.exec!(ctx, "y = 1", []) == :ok
      assert Py.call!(ctx, :math, :floor, [1.5], []) == 1
    end

    test "raise Py.Error" do
      assert_raise Py.Error, "ZeroDivisionError: division by zero", fn -> Py.eval!("1 / 0") end
      assert_raise Py.Error, ~r/^SyntaxError/, fn -> Py.exec!("def (") end
      assert_raise Py.Error, ~r/^ModuleNotFoundError/, fn -> Py.call!(:no_such_module_xyz, :f) end
    end
  end

  describe "BEAM -> Python conversion" do
    defp py_type(value), do: Py.eval("type(v).__name__", %{v: value})

    defp py_qualified_type(value),
      do: Py.eval("type(v).__module__ + '.' + type(v).__name__", %{v: value})

    test "integers of any size become int" do
      assert py_type(1) == {:ok, "int"}
      assert py_type(-1) == {:ok, "int"}
      assert py_type(2 ** 200) == {:ok, "int"}
      assert Py.eval("v == 2 ** 200", %{v: 2 ** 200}) == {:ok, true}
      assert Py.eval("v == -(2 ** 70)", %{v: -(2 ** 70)}) == {:ok, true}
      assert Py.eval("v == 2 ** 63", %{v: 2 ** 63}) == {:ok, true}
    end

    test "floats become float" do
      assert py_type(1.5) == {:ok, "float"}
      assert Py.eval("v * 2", %{v: 1.25}) == {:ok, 2.5}
    end

    test "UTF-8 binaries become str, other binaries bytes" do
      assert py_type("héllo") == {:ok, "str"}
      assert Py.eval("len(v)", %{v: "héllo"}) == {:ok, 5}
      assert py_type(<<0xFF, 0x00>>) == {:ok, "bytes"}
      assert Py.eval("list(v)", %{v: <<0xFF, 0x00>>}) == {:ok, [255, 0]}
      assert py_type(Py.bytes("abc")) == {:ok, "bytes"}
      assert Py.eval("v == b'abc'", %{v: Py.bytes("abc")}) == {:ok, true}
    end

    test "atoms become str, except true, false and nil" do
      assert Py.eval("v", %{v: :hello}) == {:ok, "hello"}
      assert py_type(:hello) == {:ok, "str"}
      assert py_type(true) == {:ok, "bool"}
      assert Py.eval("v is False", %{v: false}) == {:ok, true}
      assert Py.eval("v is None", %{v: nil}) == {:ok, true}
    end

    test "lists, tuples, maps and MapSets" do
      assert py_type([1, 2]) == {:ok, "list"}
      assert py_type({1, 2}) == {:ok, "tuple"}
      assert py_type(%{"a" => 1}) == {:ok, "dict"}
      assert py_type(MapSet.new([1, 2])) == {:ok, "set"}
      assert Py.eval("sorted(v)", %{v: MapSet.new([3, 1, 2])}) == {:ok, [1, 2, 3]}
      assert Py.eval("v['a'] + v[2]", %{v: %{"a" => 1, 2 => 3}}) == {:ok, 4}
    end

    test "pids and references" do
      assert py_qualified_type(self()) == {:ok, "erlang.Pid"}
      assert py_qualified_type(make_ref()) == {:ok, "erlang.Ref"}
      pid = self()
      ref = make_ref()
      assert Py.eval("v", %{v: pid}) == {:ok, pid}
      assert Py.eval("v", %{v: ref}) == {:ok, ref}
      assert Py.eval("a == b", %{a: pid, b: pid}) == {:ok, true}
    end

    test "a Py.Object is the object itself" do
      {:ok, date} = Py.call(:datetime, :date, [2024, 1, 2])
      assert py_type(date) == {:ok, "date"}
      assert Py.eval("d.year + 1", %{d: date}) == {:ok, 2025}
    end
  end

  describe "Python -> BEAM conversion" do
    test "ints of any size" do
      assert Py.eval("2 ** 100") == {:ok, 1_267_650_600_228_229_401_496_703_205_376}
      assert Py.eval("-(2 ** 70)") == {:ok, -(2 ** 70)}
      assert Py.eval("-5") == {:ok, -5}
    end

    test "floats, including nan and the infinities" do
      assert Py.eval("0.5") == {:ok, 0.5}
      assert Py.eval("float('nan')") == {:ok, :nan}
      assert Py.eval("float('inf')") == {:ok, :infinity}
      assert Py.eval("-float('inf')") == {:ok, :neg_infinity}
    end

    test "str, bytes and bytearray" do
      assert Py.eval("'héllo'") == {:ok, "héllo"}
      assert Py.eval("b'\\x00\\xff'") == {:ok, <<0, 255>>}
      assert Py.eval("bytearray(b'ab')") == {:ok, "ab"}
    end

    test "bool and None" do
      assert Py.eval("True") == {:ok, true}
      assert Py.eval("False") == {:ok, false}
      assert Py.eval("None") == {:ok, nil}
    end

    test "containers" do
      assert Py.eval("[1, [2, 'x']]") == {:ok, [1, [2, "x"]]}
      assert Py.eval("(1, 'a', ())") == {:ok, {1, "a", {}}}
      assert Py.eval("{'a': 1, 2: [3]}") == {:ok, %{"a" => 1, 2 => [3]}}
      assert Py.eval("{1, 2}") == {:ok, MapSet.new([1, 2])}
      assert Py.eval("frozenset([1])") == {:ok, MapSet.new([1])}
      assert Py.eval("[]") == {:ok, []}
      assert Py.eval("{}") == {:ok, %{}}
    end

    test "anything else becomes a Py.Object, never a string or nil" do
      assert {:ok, %Py.Object{type: "builtins.object"}} = Py.eval("object()")
      assert {:ok, %Py.Object{}} = Py.eval("len")
    end

    test "round trip of plain data is the identity" do
      term = %{
        "list" => [1, -2, 2 ** 80, 2.5, "s", <<255>>, nil, true, false],
        "tuple" => {1, {2, {}}},
        "set" => MapSet.new([1, "a"]),
        "map" => %{1 => %{"nested" => [%{}]}},
        "pid" => self()
      }

      assert Py.eval("v", %{v: term}) == {:ok, term}
      plain = Map.delete(term, "pid")
      assert Py.call(:copy, :deepcopy, [plain]) == {:ok, plain}
    end

    test "values nested past 10,000 levels are a :conversion error both ways" do
      nested = fn depth -> Enum.reduce(1..depth, [], fn _, acc -> [acc] end) end
      too_deep = "value nests deeper than 10000 levels"

      # Deep, but within the limit: converts both ways.
      within = nested.(5_000)
      assert Py.eval("v", %{v: within}) == {:ok, within}

      # Past it: a clear error, the call does not run, the context keeps going.
      assert Py.eval("v", %{v: nested.(20_000)}) ==
               {:error, %Py.Error{type: :conversion, message: too_deep}}

      :ok = Py.exec("deep = []\nfor _ in range(20000):\n    deep = [deep]\n")

      assert Py.eval("deep") == {:error, %Py.Error{type: :conversion, message: too_deep}}
      assert Py.eval("len(deep)") == {:ok, 1}
    end
  end

  describe "errors" do
    test "syntax errors" do
      assert {:error, %Py.Error{type: "SyntaxError", message: message}} = Py.eval("1 +")
      assert is_binary(message)
      assert {:error, %Py.Error{type: "SyntaxError"}} = Py.exec("def f(:\n  pass")
    end

    test "Python exceptions carry message and traceback" do
      :ok = Py.exec("def fail():\n    raise ValueError('boom')\n")
      assert {:error, %Py.Error{} = error} = Py.call(:__main__, :fail)
      assert error.type == "ValueError"
      assert error.message == "boom"
      assert error.traceback =~ "fail"
      assert Exception.message(error) == "ValueError: boom"
    end

    test "unknown module or function" do
      assert {:error, %Py.Error{type: "ModuleNotFoundError", message: message}} =
               Py.call(:no_such_module_xyz, :f)

      assert message =~ "no_such_module_xyz"

      assert {:error, %Py.Error{type: "AttributeError", message: message}} =
               Py.call(:math, :no_such_function)

      assert message =~ "no_such_function"
    end

    test "wrong arity is a TypeError" do
      assert {:error, %Py.Error{type: "TypeError"}} = Py.call(:math, :sqrt, [1, 2])
      assert {:error, %Py.Error{type: "TypeError"}} = Py.call(:math, :sqrt, [])
    end

    test "unconvertible terms: funs and ports" do
      assert {:error, %Py.Error{type: :conversion, message: message}} =
               Py.eval("f", %{f: fn -> :ok end})

      assert message =~ ~r/fun/i

      port = Port.open({:spawn, "cat"}, [])

      try do
        assert {:error, %Py.Error{type: :conversion}} = Py.call(:builtins, :repr, [port])
      after
        Port.close(port)
      end

      assert {:error, %Py.Error{type: :conversion}} = Py.call(:builtins, :len, [[1 | 2]])
    end

    test "NUL bytes and invalid UTF-8 in code are reported, not crashing" do
      assert bad_input(fn -> Py.eval("1\0 + 1") end) =~ ~r/nul/i
      assert bad_input(fn -> Py.exec("x = 1\0") end) =~ ~r/nul/i
      assert is_binary(bad_input(fn -> Py.eval(<<"1 + ", 0xFF>>) end))
      assert Py.eval("1 + 1") == {:ok, 2}
    end

    test "sys.exit() raises SystemExit instead of stopping the BEAM" do
      assert {:error, %Py.Error{type: "SystemExit"}} = Py.exec("import sys\nsys.exit(3)")
      assert {:error, %Py.Error{type: "SystemExit"}} = Py.call(:sys, :exit, [0])
      assert Py.eval("1 + 1") == {:ok, 2}
    end

    test "RecursionError stays an error" do
      :ok = Py.exec("def forever(n):\n    return forever(n + 1)\n")
      assert {:error, %Py.Error{type: "RecursionError"}} = Py.call(:__main__, :forever, [0])
      assert Py.call(:math, :sqrt, [4]) == {:ok, 2.0}
    end

    test "Py.Error.message/1 for bridge errors" do
      error = %Py.Error{type: :timeout, message: "Python call exceeded 5000 ms"}
      assert Exception.message(error) == "timeout: Python call exceeded 5000 ms"
    end
  end

  describe "misuse on the BEAM side raises ArgumentError" do
    test "Elixir modules are not Python modules" do
      assert_raise ArgumentError, ~r/Elixir module/, fn -> Py.call(Foo.Bar, :f) end
      assert_raise ArgumentError, ~r/Elixir alias/, fn -> Py.call(:math, Foo) end
      assert_raise ArgumentError, ~r/Elixir module/, fn -> Py.reload(Foo) end
    end

    test "bad names, args, code and locals" do
      assert_raise ArgumentError,
                   ~s(invalid module for Py.call: expected a Python module name such as :math or "os.path", got: 1),
                   fn -> Py.call(1, :f) end

      assert_raise ArgumentError,
                   ~r/^invalid module for Py.call: .*\(it is empty\), got: ""$/,
                   fn ->
                     Py.call("", :f)
                   end

      assert_raise ArgumentError,
                   "invalid function name for Py.call: expected a Python function name " <>
                     "as a non-empty atom or string, got: nil",
                   fn -> Py.call(:math, nil) end

      assert_raise ArgumentError,
                   "invalid arguments for Py.call: expected a list of positional arguments, got: 4",
                   fn -> Py.call(:math, :sqrt, 4) end

      assert_raise ArgumentError,
                   "invalid code: expected Python code as a string, got: 123",
                   fn ->
                     Py.eval(123)
                   end

      assert_raise ArgumentError,
                   "invalid locals for Py.eval: expected a map with atom or string keys, got: [x: 1]",
                   fn -> Py.eval("1", x: 1) end

      assert_raise ArgumentError,
                   ~r/^invalid locals .*\(the key 1 is neither an atom nor a string\)/,
                   fn ->
                     Py.eval("1", %{1 => 2})
                   end

      assert_raise ArgumentError,
                   ~r/^invalid locals .*\(a name is given both as an atom and as a string\)/,
                   fn ->
                     Py.eval("x", %{:x => 1, "x" => 2})
                   end

      assert_raise ArgumentError,
                   "invalid data for Py.bytes/1: expected a binary, got: :nope",
                   fn ->
                     Py.bytes(:nope)
                   end
    end

    test "options are validated, with one message format" do
      assert_raise ArgumentError,
                   "unknown option :bogus for Py.eval/3: expected one of [:timeout, :node, :coalesce, :group], got: {:bogus, 1}",
                   fn -> Py.eval("1", %{}, bogus: 1) end

      assert_raise ArgumentError, ~r/^unknown option :kwargs for Py.exec\/2: /, fn ->
        Py.exec("1", kwargs: [])
      end

      timeout = "expected a non-negative integer (milliseconds, at most 4294967295) or :infinity"

      for bad <- [-1, "5", 4_294_967_296, 1.5] do
        assert_raise ArgumentError,
                     "invalid :timeout option for Py.eval/3: #{timeout}, got: #{inspect(bad)}",
                     fn -> Py.eval("1", %{}, timeout: bad) end
      end

      assert_raise ArgumentError,
                   "invalid :kwargs option for Py.call/4: expected a keyword list or a map " <>
                     "with atom or string keys, got: 5",
                   fn -> Py.call(:math, :sqrt, [4], kwargs: 5) end

      assert_raise ArgumentError,
                   ~s{invalid :node option for Py.call/4: expected a node name (an atom), got: "n"},
                   fn -> Py.call(:math, :sqrt, [4], node: "n") end

      assert_raise ArgumentError,
                   "invalid options for Py.call/4: expected a keyword list, got: %{timeout: 1}",
                   fn -> Py.call(:math, :sqrt, [4], %{timeout: 1}) end

      # Every occurrence is checked, not only the first.
      assert_raise ArgumentError, ~r/^invalid :timeout option/, fn ->
        Py.eval("1", %{}, timeout: 1_000, timeout: :soon)
      end

      for call <- [
            fn -> Py.eval(Py.context(), "1", %{}, node: node()) end,
            fn -> Py.exec(Py.context(), "1", node: node()) end,
            fn -> Py.call(Py.context(), :math, :sqrt, [4], node: node()) end
          ] do
        assert_raise ArgumentError,
                     ~r/^invalid :node option for Py\.\w+\/\d: expected no :node together with an explicit context/,
                     call
      end
    end

    test ":infinity and explicit timeouts are accepted" do
      assert Py.eval("1", %{}, timeout: :infinity) == {:ok, 1}
      assert Py.call(:math, :sqrt, [4], timeout: 10_000, kwargs: []) == {:ok, 2.0}
    end
  end

  describe "opaque objects" do
    test "getattr, call_method, inspect and passing back" do
      {:ok, date} = Py.call(:datetime, :date, [2024, 1, 2])
      assert %Py.Object{type: "datetime.date", repr: "datetime.date(2024, 1, 2)"} = date
      assert inspect(date) == "#Py.Object<datetime.date(2024, 1, 2)>"
      assert Py.getattr(date, :year) == {:ok, 2024}
      assert Py.getattr(date, "month", timeout: 5_000) == {:ok, 1}
      assert Py.call_method(date, :isoformat) == {:ok, "2024-01-02"}

      assert {:ok, %Py.Object{} = other} =
               Py.call_method(date, :replace, [], kwargs: [year: 2000])

      assert Py.call_method(other, "isoformat", []) == {:ok, "2000-01-02"}
      assert Py.call(:builtins, :repr, [date]) == {:ok, "datetime.date(2024, 1, 2)"}
      assert Py.eval("a < b", %{a: other, b: date}) == {:ok, true}
      assert {:error, %Py.Error{type: "AttributeError"}} = Py.getattr(date, :nope)
    end

    test "instances of classes defined with exec keep their state" do
      :ok =
        Py.exec("""
        class Counter:
            def __init__(self):
                self.n = 0
            def inc(self, by=1):
                self.n += by
                return self.n
            def __repr__(self):
                return f"Counter({self.n})"
        """)

      {:ok, counter} = Py.eval("Counter()")
      assert inspect(counter) == "#Py.Object<Counter(0)>"
      assert Py.call_method(counter, :inc) == {:ok, 1}
      assert Py.call_method(counter, :inc, [], kwargs: %{by: 5}) == {:ok, 6}
      assert Py.getattr(counter, :n) == {:ok, 6}
    end

    test "misuse raises ArgumentError" do
      assert_raise ArgumentError, ~r/Py.Object/, fn -> Py.getattr(%{}, :x) end
      assert_raise ArgumentError, ~r/Py.Object/, fn -> Py.call_method("str", :upper) end
    end

    test "the Python object is released when the BEAM drops the handle" do
      ctx = Py.context()

      weak =
        in_process(fn ->
          :ok = Py.exec(ctx, "class Droppable:\n    pass\n")
          {:ok, obj} = Py.eval(ctx, "Droppable()")
          {:ok, weak} = Py.eval(ctx, "__import__('weakref').ref(o)", %{o: obj})
          assert {:ok, %Py.Object{} = alive} = Py.call_method(weak, :__call__)
          # `obj` is used below, so the BEAM keeps the handle until then.
          assert alive.repr == obj.repr
          weak
        end)

      assert eventually(fn ->
               :erlang.garbage_collect()
               Py.call(ctx, :gc, :collect)
               Py.call_method(weak, :__call__) == {:ok, nil}
             end)
    end
  end

  describe "process namespaces" do
    test "two processes on the same context never see each other's variables" do
      ctx = Py.context(1)
      :ok = Py.exec(ctx, "who = 'parent'")

      child =
        in_process(fn ->
          missing = Py.eval(ctx, "who")
          :ok = Py.exec(ctx, "who = 'child'")
          {missing, Py.eval(ctx, "who")}
        end)

      assert {{:error, %Py.Error{type: "NameError"}}, {:ok, "child"}} = child
      assert Py.eval(ctx, "who") == {:ok, "parent"}
    end

    test "the seed's incremental processing example" do
      ctx = Py.context(1)
      :ok = Py.exec(ctx, "results = []")

      for item <- [1, 2, 3, 4, 5] do
        assert {:ok, nil} = Py.eval(ctx, "results.append(item * 2)", %{item: item})
      end

      assert Py.eval(ctx, "results") == {:ok, [2, 4, 6, 8, 10]}
      assert {:error, %Py.Error{type: "NameError"}} = Py.eval(ctx, "item")
    end

    test "context-first forms of eval, exec and call" do
      ctx = Py.context(1)
      assert Py.exec(ctx, "def mul(a, b):\n    return a * b\n", timeout: 5_000) == :ok
      assert Py.call(ctx, :__main__, :mul, [6, 7]) == {:ok, 42}
      assert Py.call(ctx, :__main__, :mul, [2], kwargs: [b: 4]) == {:ok, 8}
      assert Py.call(ctx, :math, :sqrt, [4]) == {:ok, 2.0}
      assert {:ok, _} = Py.call(ctx, :os, :getpid)
      assert Py.eval(ctx, "mul(2, 3)") == {:ok, 6}
      assert Py.eval(ctx, "mul(x, 3)", %{x: 3}) == {:ok, 9}
      assert Py.eval(ctx, "mul(x, 3)", %{x: 4}, timeout: 5_000) == {:ok, 12}
    end

    test "namespaces are per context" do
      [first | _] = Py.Context.contexts(:default)
      other = Py.Context.new()
      :ok = Py.exec(first, "where = 'pool'")
      :ok = Py.exec(other, "where = 'dedicated'")
      assert Py.eval(first, "where") == {:ok, "pool"}
      assert Py.eval(other, "where") == {:ok, "dedicated"}
    end

    test "names that are not valid UTF-8 are a conversion error" do
      assert {:error, %Py.Error{type: :conversion, message: message}} =
               Py.call(:math, <<0xFF, 0xFE>>, [])

      assert message =~ "valid UTF-8"
    end

    test "namespaces are freed when their process exits" do
      ctx = Py.Context.new()
      # The test process's own namespace first, so polling below adds none.
      assert Py.eval(ctx, "1") == {:ok, 1}
      base = Py.Context.info(ctx).namespaces
      parent = self()

      pids =
        for i <- 1..5 do
          spawn(fn ->
            :ok = Py.exec(ctx, "mine = #{i}")
            send(parent, {:ready, self()})

            receive do
              :exit -> :ok
              :crash -> exit(:crashed)
            end
          end)
        end

      for pid <- pids, do: assert_receive({:ready, ^pid}, 5_000)
      assert Py.Context.info(ctx).namespaces == base + 5
      # Normal exits, one error exit and one killed.
      [killed, crashed | others] = pids
      Process.exit(killed, :kill)
      send(crashed, :crash)
      for pid <- others, do: send(pid, :exit)

      assert eventually(fn ->
               :erlang.garbage_collect()
               Py.eval(ctx, "1")
               Py.Context.info(ctx).namespaces == base
             end)
    end
  end

  # Bad input must come back as {:error, %Py.Error{}} or, for BEAM-side
  # misuse, as an ArgumentError; returns the message either way.
  defp bad_input(fun) do
    case fun.() do
      {:error, %Py.Error{message: message}} -> message
      other -> flunk("expected an error, got: #{inspect(other)}")
    end
  rescue
    error in ArgumentError -> Exception.message(error)
  end
end
