# A tour of pybridge, run by `make demo` (or `mix run examples/demo.exs`).
#
# Every section prints what it calls and what comes back. The script exits
# with a non-zero status if any result is not what the section expects.

defmodule Demo do
  def heading(title) do
    IO.puts(["\n", IO.ANSI.format([:bright, "== ", title, " =="]), "\n"])
  end

  def show(label, value) do
    IO.puts("  " <> label)
    IO.puts(("    #=> " <> inspect(value, pretty: true, width: 72)) |> indent())
  end

  def note(text), do: IO.puts("  " <> text)

  # Like `^expected = value`, with a readable failure.
  def expect!(value, check, what) do
    unless check.(value) do
      raise "demo check failed (#{what}): got #{inspect(value)}"
    end

    value
  end

  def millis(fun) do
    t0 = System.monotonic_time(:microsecond)
    result = fun.()
    {(System.monotonic_time(:microsecond) - t0) / 1000, result}
  end

  # Polls `fun` for up to a second until it returns `target`.
  def wait_for(fun, target, tries \\ 100) do
    case fun.() do
      ^target ->
        target

      _ when tries > 0 ->
        Process.sleep(10)
        wait_for(fun, target, tries - 1)

      other ->
        other
    end
  end

  defp indent(text), do: String.replace(text, "\n", "\n       ")
end

defmodule Demo.Script do
  import Demo

  def run do
    python = Py.Runtime.info()
    {major, minor, micro} = python.version_info

    IO.puts("pybridge demo: Python #{major}.#{minor}.#{micro} (#{python.executable})")
    IO.puts("libpython: #{python.libpython}")

    ## eval

    heading("1. Py.eval: evaluate an expression")

    show(~s|Py.eval("1 + 1")|, Py.eval("1 + 1") |> expect!(&(&1 == {:ok, 2}), "eval"))

    show(
      ~s|Py.eval("x * y", %{x: 6, y: 7})|,
      Py.eval("x * y", %{x: 6, y: 7}) |> expect!(&(&1 == {:ok, 42}), "eval with locals")
    )

    show(
      ~s|Py.eval("[n ** 2 for n in range(5)]")|,
      Py.eval("[n ** 2 for n in range(5)]") |> expect!(&(&1 == {:ok, [0, 1, 4, 9, 16]}), "list")
    )

    ## exec

    heading("2. Py.exec: statements, and state kept between calls")

    code = """
    import statistics

    def describe(values):
        return {"mean": statistics.mean(values), "max": max(values)}

    history = []
    """

    show(~s|Py.exec("import statistics\\ndef describe(values): ...")|, Py.exec(code))

    show(
      ~s|Py.eval("describe([3, 1, 4, 1, 5])")|,
      Py.eval("describe([3, 1, 4, 1, 5])")
      |> expect!(&(&1 == {:ok, %{"mean" => 2.8, "max" => 5}}), "state across calls")
    )

    for item <- ["a", "b"] do
      {:ok, nil} = Py.eval("history.append(item)", %{item: item})
    end

    show(
      ~s|Py.eval("history") after two appends|,
      Py.eval("history") |> expect!(&(&1 == {:ok, ["a", "b"]}), "history")
    )

    show(
      ~s|Py.call(:__main__, :describe, [[10, 20]])|,
      Py.call(:__main__, :describe, [[10, 20]])
      |> expect!(&(&1 == {:ok, %{"mean" => 15, "max" => 20}}), "call into __main__")
    )

    ## call

    heading("3. Py.call: module functions, with keyword arguments")

    show(
      "Py.call(:math, :sqrt, [2.0])",
      Py.call(:math, :sqrt, [2.0]) |> expect!(&match?({:ok, f} when is_float(f), &1), "sqrt")
    )

    show(
      ~s|Py.call("os.path", :join, ["var", "log", "app.log"])|,
      Py.call("os.path", :join, ["var", "log", "app.log"])
      |> expect!(&(&1 == {:ok, "var/log/app.log"}), "dotted module")
    )

    len = Py.eval!("len")

    show(
      ~s|len = Py.eval!("len")\n  Py.call(:builtins, :sorted, [["pear", "fig", "apple"]], kwargs: [key: len, reverse: true])|,
      Py.call(:builtins, :sorted, [["pear", "fig", "apple"]], kwargs: [key: len, reverse: true])
      |> expect!(&(&1 == {:ok, ["apple", "pear", "fig"]}), "kwargs")
    )

    show(
      ~s|Py.call(:json, :dumps, [%{"b" => 1, "a" => [true, nil]}], kwargs: %{sort_keys: true})|,
      Py.call(:json, :dumps, [%{"b" => 1, "a" => [true, nil]}], kwargs: %{sort_keys: true})
      |> expect!(&(&1 == {:ok, ~s|{"a": [true, null], "b": 1}|}), "json")
    )

    ## conversion

    heading("4. Conversion, both ways")

    term = %{
      "name" => "sensor-7",
      :tags => MapSet.new([:indoor, :eu]),
      "reading" => {21.5, :celsius},
      "samples" => [1, 2, 3],
      "raw" => Py.bytes("OK"),
      "big" => 2 ** 70,
      "owner" => self(),
      "missing" => nil
    }

    show("an Elixir term", term)

    show(
      ~s|Py.eval("{k: type(v).__name__ for k, v in t.items()}", %{t: term})|,
      Py.eval("{k: type(v).__name__ for k, v in t.items()}", %{t: term})
      |> expect!(
        &(&1 ==
            {:ok,
             %{
               "name" => "str",
               "tags" => "set",
               "reading" => "tuple",
               "samples" => "list",
               "raw" => "bytes",
               "big" => "int",
               "owner" => "Pid",
               "missing" => "NoneType"
             }}),
        "types in Python"
      )
    )

    {:ok, back} = Py.eval("t", %{t: term})
    show(~s|Py.eval("t", %{t: term})  (the same value, back again)|, back)
    note("atom keys and atoms come back as strings; the pid comes back as the same pid:")
    show("back[\"owner\"] == self()", back["owner"] == self())

    show(
      ~s|Py.eval("(float('nan'), float('inf'), bytearray(b'\\\\x00\\\\x01'), frozenset({1}), 10 ** 30)")|,
      Py.eval("(float('nan'), float('inf'), bytearray(b'\\x00\\x01'), frozenset({1}), 10 ** 30)")
      |> expect!(
        &(&1 == {:ok, {:nan, :infinity, <<0, 1>>, MapSet.new([1]), 10 ** 30}}),
        "python to beam"
      )
    )

    ## objects

    heading("5. Opaque objects: %Py.Object{}")

    {:ok, dt} = Py.call(:datetime, :datetime, [2024, 5, 17, 14, 30])
    show("{:ok, dt} = Py.call(:datetime, :datetime, [2024, 5, 17, 14, 30]); dt", dt)

    show(
      "Py.getattr(dt, :year)",
      Py.getattr(dt, :year) |> expect!(&(&1 == {:ok, 2024}), "getattr")
    )

    show(
      ~s|Py.call_method(dt, :strftime, ["%d %b %Y, %H:%M"])|,
      Py.call_method(dt, :strftime, ["%d %b %Y, %H:%M"])
      |> expect!(&(&1 == {:ok, "17 May 2024, 14:30"}), "call_method")
    )

    {:ok, later} = Py.call_method(dt, :replace, [], kwargs: [hour: 18])

    show(
      ~s|{:ok, later} = Py.call_method(dt, :replace, [], kwargs: [hour: 18]); later|,
      later
    )

    show(
      ~s|Py.eval("(later - dt).total_seconds()", %{later: later, dt: dt})|,
      Py.eval("(later - dt).total_seconds()", %{later: later, dt: dt})
      |> expect!(&(&1 == {:ok, 14_400.0}), "objects as arguments")
    )

    show("dt.type", dt.type)

    ## errors

    heading("6. Errors: {:error, %Py.Error{}} with the Python traceback")

    code = """
    def parse_port(text):
        return int(text)

    port = parse_port("eighty")
    """

    {:error, error} = Py.exec(code) |> expect!(&match?({:error, %Py.Error{}}, &1), "error")
    show("Py.exec(code) where code calls int(\"eighty\")", {:error, %{error | traceback: "..."}})
    note("error.traceback:")
    IO.puts(error.traceback |> String.trim_trailing() |> String.replace(~r/^/m, "    | "))

    show(
      ~s|Py.call(:no_such_module, :f)|,
      Py.call(:no_such_module, :f)
      |> then(fn {:error, e} -> {:error, %{e | traceback: "..."}} end)
      |> expect!(&match?({:error, %Py.Error{type: "ModuleNotFoundError"}}, &1), "no module")
    )

    show(
      ~s|Py.call(:builtins, :len, [fn -> :ok end])  (a fun has no Python counterpart)|,
      Py.call(:builtins, :len, [fn -> :ok end])
      |> expect!(&match?({:error, %Py.Error{type: :conversion}}, &1), "conversion")
    )

    show(
      ~s|Py.eval!("1 / 0")  (bang variant)|,
      try do
        Py.eval!("1 / 0")
      rescue
        e in Py.Error -> "raised Py.Error: " <> Exception.message(e)
      end
    )

    ## timeouts

    heading("7. Timeouts interrupt the running Python")

    # A dedicated context with a single worker thread: it can only answer the
    # next call if the endless loop really stopped.
    ctx = Py.Context.new(max_workers: 1)

    {ms, result} = millis(fn -> Py.exec(ctx, "while True:\n    pass\n", timeout: 200) end)
    expect!(result, &match?({:error, %Py.Error{type: :timeout}}, &1), "timeout")
    show(~s|Py.exec(ctx, "while True: pass", timeout: 200)|, result)
    note("returned after #{Float.round(ms, 1)} ms")

    {ms, result} = millis(fn -> Py.eval(ctx, "'still serving'", %{}, timeout: 5_000) end)
    expect!(result, &(&1 == {:ok, "still serving"}), "context free again")
    show(~s|Py.eval(ctx, "'still serving'")  (same single-thread context)|, result)
    note("answered after #{Float.round(ms, 1)} ms: the loop was interrupted")

    info = Py.Context.info(ctx)

    show(
      "Py.Context.info(ctx) |> Map.take([:calls_total, :cancelled_total, :in_flight])",
      Map.take(info, [:calls_total, :cancelled_total, :in_flight])
    )

    :ok = Py.Context.close(ctx)

    ## contexts

    heading("8. Contexts: every process has its own namespace")

    ctx = Py.context(1)
    parent = self()
    namespaces_before = Py.Context.info(ctx).namespaces

    workers =
      for name <- ["alice", "bob"] do
        spawn_link(fn ->
          :ok = Py.exec(ctx, "user = #{inspect(name)}\nvisits = 0")
          :ok = Py.exec(ctx, "visits += 1")
          :ok = Py.exec(ctx, "visits += 1")
          send(parent, {self(), name, Py.eval(ctx, "(user, visits)")})

          receive do
            :stop -> :ok
          end
        end)
      end

    for pid <- workers do
      receive do
        {^pid, name, result} ->
          expect!(result, &(&1 == {:ok, {name, 2}}), "isolation")
          show("process #{name}: Py.eval(ctx, \"(user, visits)\")", result)
      end
    end

    show(
      ~s|this process: Py.eval(ctx, "user")|,
      Py.eval(ctx, "user")
      |> then(fn {:error, e} -> {:error, %{e | traceback: "..."}} end)
      |> expect!(&match?({:error, %Py.Error{type: "NameError"}}, &1), "not visible")
    )

    note("both processes used #{inspect(ctx.pool)} context #{ctx.index}.")

    show(
      "live namespaces in it (Py.Context.info(ctx).namespaces)",
      Py.Context.info(ctx).namespaces
    )

    Enum.each(workers, &send(&1, :stop))
    namespaces_after = wait_for(fn -> Py.Context.info(ctx).namespaces end, namespaces_before)
    show("the same, once both processes have exited", namespaces_after)

    show(
      "Py.with_context(Py.context(2), fn -> Py.exec(\"n = 1\"); Py.eval(\"n + 1\") end)",
      Py.with_context(Py.context(2), fn ->
        :ok = Py.exec("n = 1")
        Py.eval("n + 1")
      end)
      |> expect!(&(&1 == {:ok, 2}), "with_context")
    )

    show(
      "Py.Context.info(Py.context(1)) |> Map.take([:pool, :index, :calls_total, :namespaces])",
      Py.Context.info(Py.context(1)) |> Map.take([:pool, :index, :calls_total, :namespaces])
    )

    IO.puts("\nDone.")
  end
end

Demo.Script.run()
