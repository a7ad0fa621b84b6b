%% EUnit tests of the Erlang facade, written as an erlang_python 4.1 program
%% would be: pattern matches on the exact result shapes, every call form,
%% every error kind. test/py/erlang_facade_test.exs compiles and runs them
%% inside `mix test' (and so `make test'); a failing test fails that run.
-module(py_facade_tests).

-include_lib("eunit/include/eunit.hrl").

%%--------------------------------------------------------------------
%% Values
%%--------------------------------------------------------------------

none_both_ways_test() ->
    {ok, none} = py:eval(<<"None">>),
    {ok, [true, true, true]} =
        py:eval(<<"[a is None, b is None, c is None]">>, #{a => none, b => undefined, c => nil}),
    {ok, [1, none, {none, #{<<"k">> := none}}]} = py:eval(<<"[1, None, (None, {'k': None})]">>),
    {ok, true} = py:call(operator, is_, [none, none]),
    {ok, <<"[None, (None,), {'a': None}]">>} =
        py:call(builtins, repr, [[none, {undefined}, #{a => none}]]),
    {ok, <<"None">>} = py:call(builtins, repr, [none]),
    %% Atoms other than the None spellings stay strings.
    {ok, <<"'ok'">>} = py:call(builtins, repr, [ok]).

bytes_test() ->
    {ok, <<"bytes">>} = py:eval(<<"type(b).__name__">>, #{b => {bytes, <<"abc">>}}),
    {ok, <<"str">>} = py:eval(<<"type(b).__name__">>, #{b => <<"abc">>}),
    {ok, 3} = py:call(builtins, len, [{bytes, <<"abc">>}]),
    {ok, <<"[b'x', (b'y',)]">>} = py:call(builtins, repr, [[{bytes, <<"x">>}, {{bytes, <<"y">>}}]]),
    {ok, <<255, 0>>} = py:eval(<<"b'\\xff\\x00'">>),
    %% {bytes, NotABinary} is an ordinary tuple.
    {ok, <<"('bytes', 1)">>} = py:call(builtins, repr, [{bytes, 1}]).

big_integers_test() ->
    %% erlang_python returns integers past 64 bits as strings; pybridge
    %% returns the integer.
    {ok, 123456789012345678901234567890} = py:eval(<<"123456789012345678901234567890">>),
    {ok, 1267650600228229401496703205376} = py:call(builtins, pow, [2, 100]).

%%--------------------------------------------------------------------
%% eval / exec
%%--------------------------------------------------------------------

eval_forms_test() ->
    {ok, 3} = py:eval(<<"1 + 2">>),
    {ok, 3} = py:eval("1 + 2"),
    {ok, 6} = py:eval(<<"x * y">>, #{x => 2, y => 3}),
    {ok, 6} = py:eval(<<"x * y">>, #{<<"x">> => 2, <<"y">> => 3}),
    {ok, 2} = py:eval(<<"x + 1">>, #{x => 1}, 5000),
    {ok, 2} = py:eval(<<"x + 1">>, #{x => 1}, infinity),
    Ctx = py:context(1),
    {ok, 2} = py:eval(Ctx, <<"1 + 1">>),
    {ok, 2} = py:eval(Ctx, "1 + 1"),
    {ok, 3} = py:eval(Ctx, <<"x + 1">>, #{x => 2}).

exec_forms_test() ->
    ok = py:exec(<<"facade_x = 41">>),
    ok = py:exec("facade_x += 1"),
    {ok, 42} = py:eval(<<"facade_x">>),
    Ctx = py:context(1),
    ok = py:exec(Ctx, <<"counter = 0">>),
    ok = py:exec(Ctx, "counter += 1"),
    {ok, 1} = py:eval(Ctx, <<"counter">>).

%%--------------------------------------------------------------------
%% call: every form, names as atoms, binaries and strings
%%--------------------------------------------------------------------

call3_names_test() ->
    {ok, 4.0} = py:call(math, sqrt, [16]),
    {ok, 4.0} = py:call(<<"math">>, <<"sqrt">>, [16]),
    {ok, 4.0} = py:call("math", "sqrt", [16]),
    {ok, <<"a/b">>} = py:call('os.path', join, [<<"a">>, <<"b">>]),
    {ok, <<"a/b">>} = py:call("os.path", "join", [<<"a">>, <<"b">>]).

call4_test() ->
    %% Module, Func, Args, Kwargs (map or proplist)
    {ok, 255} = py:call(builtins, int, [<<"ff">>], #{base => 16}),
    {ok, 255} = py:call("builtins", "int", [<<"ff">>], #{<<"base">> => 16}),
    {ok, 3} = py:call(builtins, int, [<<"11">>], [{base, 2}]),
    %% Ctx, Module, Func, Args
    Ctx = py:context(1),
    {ok, 3.0} = py:call(Ctx, math, sqrt, [9]),
    {ok, 3.0} = py:call(Ctx, "math", <<"sqrt">>, [9]),
    %% Pool, Module, Func, Args
    {ok, 2.0} = py:call(default, math, sqrt, [4]),
    {ok, 2.0} = py:call(io, math, sqrt, [4]),
    {ok, 2.0} = py:call(io, <<"math">>, <<"sqrt">>, [4]).

call5_test() ->
    %% Module, Func, Args, Kwargs, Timeout
    {ok, 255} = py:call(builtins, int, [<<"ff">>], #{base => 16}, 5000),
    {ok, 255} = py:call(builtins, int, [<<"ff">>], #{base => 16}, infinity),
    {error, timeout} = py:call(time, sleep, [1], #{}, 50),
    %% Ctx, Module, Func, Args, Opts
    Ctx = py:context(1),
    {ok, 3} = py:call(Ctx, builtins, int, [<<"11">>], #{kwargs => #{base => 2}}),
    {ok, 3} = py:call(Ctx, builtins, int, [<<"11">>], #{kwargs => #{base => 2}, timeout => 5000}),
    {ok, 11} = py:call(Ctx, builtins, int, [<<"11">>], #{}),
    {error, timeout} = py:call(Ctx, time, sleep, [1], #{timeout => 50}),
    ?assertError({unsupported_option, {return, ref}},
                 py:call(Ctx, builtins, list, [[1]], #{return => ref})),
    ?assertError({badarg, {unknown_options, [base], _}},
                 py:call(Ctx, builtins, int, [<<"11">>], #{base => 2})),
    %% Pool, Module, Func, Args, Kwargs
    {ok, 255} = py:call(io, builtins, int, [<<"ff">>], #{base => 16}),
    {ok, 255} = py:call(default, <<"builtins">>, <<"int">>, [<<"ff">>], #{base => 16}).

coalesce_option_test() ->
    %% Concurrent identical calls share one execution: the first caller's
    %% call is held on an event until every caller has joined it.
    Ctx = py:context(1),
    ok = py:exec(Ctx, <<"import sys, threading, types\n"
                        "m = types.ModuleType('facade_fixture')\n"
                        "m.gate = threading.Event()\n"
                        "m.runs = []\n"
                        "def work(x):\n"
                        "    m.runs.append(x)\n"
                        "    m.gate.wait()\n"
                        "    return x * 2\n"
                        "m.work = work\n"
                        "sys.modules['facade_fixture'] = m\n">>),
    Group = {facade_coalesce, make_ref()},
    Self = self(),
    Call = fun() ->
        Self ! {done, py:call(Ctx, facade_fixture, work, [21],
                              #{coalesce => true, group => Group, timeout => 30000})}
    end,
    [spawn(Call) || _ <- lists:seq(1, 4)],
    wait_until(fun() -> joined(Group) =:= 4 end),
    ok = py:exec(<<"__import__('facade_fixture').gate.set()">>),
    [{ok, 42}, {ok, 42}, {ok, 42}, {ok, 42}] =
        [receive {done, R} -> R after 30000 -> timeout end || _ <- lists:seq(1, 4)],
    #{misses := 1, hits := 3} = 'Elixir.Py.Coalesce':stats(Group),
    {ok, [21]} = py:eval(<<"__import__('facade_fixture').runs">>),
    ok = py:exec(<<"__import__('sys').modules.pop('facade_fixture')">>),
    ?assertError(#{'__struct__' := 'Elixir.ArgumentError'},
                 py:call(Ctx, builtins, abs, [-1], #{coalesce => nil})).

%% Callers of the coalesced call in flight for Group (its key derived from
%% module, function and arguments): its leader and the waiters it is sure
%% to answer.
joined(Group) ->
    Key = {<<"facade_fixture">>, <<"work">>, [21]},
    case 'Elixir.Py.Coalesce.Leader':callers({Group, Key}) of
        nil -> 0;
        N -> N
    end.

wait_until(Cond) -> wait_until(Cond, 3000).
wait_until(Cond, 0) -> ?assert(Cond());
wait_until(Cond, N) ->
    case Cond() of
        true -> ok;
        false -> timer:sleep(10), wait_until(Cond, N - 1)
    end.

call_main_namespace_test() ->
    Ctx = py:context(1),
    ok = py:exec(Ctx, <<"def add(a, b=0):\n    return a + b\n">>),
    {ok, 3} = py:call(Ctx, '__main__', add, [1, 2]),
    {ok, 4} = py:call(Ctx, '__main__', add, [1], #{kwargs => #{b => 3}}).

%%--------------------------------------------------------------------
%% Errors: every kind
%%--------------------------------------------------------------------

python_errors_test() ->
    {error, {'NameError', "name 'undefined_variable' is not defined"}} =
        py:eval(<<"undefined_variable">>),
    {error, {'ZeroDivisionError', "division by zero"}} = py:eval(<<"1/0">>),
    {error, {'SyntaxError', Msg}} = py:eval(<<"if True">>),
    true = io_lib:printable_unicode_list(Msg),
    {error, {'SyntaxError', _}} = py:exec(<<"def (">>),
    {error, {'ModuleNotFoundError', "No module named 'nonexistent_module'"}} =
        py:call(nonexistent_module, func, []),
    {error, {'ValueError', "invalid literal for int() with base 10: 'x'"}} =
        py:call(builtins, int, [<<"x">>]),
    %% Non-ASCII messages are strings of code points.
    {error, {'ValueError', "café"}} =
        py:eval(<<"(_ for _ in ()).throw(ValueError('caf\\u00e9'))">>),
    %% The class's __name__, also for nested classes and exceptions of modules.
    {error, {'JSONDecodeError', _}} = py:call(json, loads, [<<"{">>]),
    ok = py:exec(<<"class Outer:\n    class Inner(Exception): pass\n">>),
    {error, {'Inner', "deep"}} = py:eval(<<"(_ for _ in ()).throw(Outer.Inner('deep'))">>),
    {error, {'StopIteration', none}} = py:call(builtins, next, [py_iter([])]).

py_iter(List) ->
    {ok, It} = py:call(builtins, iter, [List]),
    It.

last_error_test() ->
    {error, {'ZeroDivisionError', _}} = py:eval(<<"1 / 0">>),
    #{reason := {'ZeroDivisionError', "division by zero"},
      type := 'ZeroDivisionError',
      message := <<"division by zero">>,
      traceback := <<"Traceback (most recent call last):", _/binary>> = Tb} = py:last_error(),
    {match, _} = re:run(Tb, <<"ZeroDivisionError: division by zero">>),
    {error, timeout} = py:eval(<<"__import__('time').sleep(1)">>, #{}, 50),
    #{reason := timeout, type := timeout, traceback := none} = py:last_error(),
    %% Per process.
    none = run_in_process(fun py:last_error/0).

timeout_test() ->
    {error, timeout} = py:eval(<<"__import__('time').sleep(1)">>, #{}, 50),
    {error, timeout} = py:call(time, sleep, [1], #{}, 50),
    {error, timeout} = py:ctx_eval(py:context(1), <<"__import__('time').sleep(1)">>, #{}, 50),
    %% The context still answers.
    {ok, 2} = py:eval(<<"1 + 1">>).

conversion_error_test() ->
    {error, {conversion, Msg}} = py:call(builtins, repr, [fun() -> ok end]),
    true = io_lib:printable_unicode_list(Msg),
    {error, {conversion, _}} = py:eval(<<"x">>, #{x => [1 | 2]}),
    {error, {conversion, _}} = py:eval(<<"'\\ud800'">>).

closed_error_test() ->
    {ok, Ctx} = py:bind(new),
    {ok, 1} = py:eval(Ctx, <<"1">>),
    ok = py:unbind(Ctx),
    {error, {closed, Msg}} = py:eval(Ctx, <<"1">>),
    true = io_lib:printable_unicode_list(Msg),
    {error, {closed, _}} = py:call(Ctx, math, sqrt, [4]),
    {error, {closed, _}} = py:exec(Ctx, <<"x = 1">>),
    %% A pid that is no context gives the same answer.
    {error, {closed, _}} = py:eval(self(), <<"1">>),
    ?assertError({badarg, {not_a_context, _}}, py_context_router:bind_context(self())).

%% Kinds that a test cannot provoke (Python not running, a bug caught, a
%% failed remote call...) go through the same one translation function.
every_kind_translated_test() ->
    Kinds = 'Elixir.Py.Error':kinds(),
    true = length(Kinds) > 5,
    lists:foreach(
      fun(timeout) ->
              {error, timeout} = py_dialect:result({error, py_error(timeout, <<"late">>)});
         (Kind) ->
              {error, {Kind, "went wrong"}} = py_dialect:result({error, py_error(Kind, <<"went wrong">>)}),
              %% Without a message, the kind's description.
              {error, {Kind, Described}} = py_dialect:result({error, py_error(Kind, nil)}),
              true = length(Described) > 10,
              #{type := Kind, traceback := none} = py:last_error()
      end, Kinds),
    {error, {'KeyError', "'k'"}} = py_dialect:result({error, py_error(<<"KeyError">>, <<"'k'">>)}),
    {error, {'Inner', "x"}} = py_dialect:result({error, py_error(<<"a.Outer.Inner">>, <<"x">>)}),
    {ok, [none]} = py_dialect:result({ok, [nil]}),
    ok = py_dialect:result(ok).

py_error(Type, Message) ->
    'Elixir.Py.Error':exception([{type, Type}, {message, Message}]).

bad_arguments_raise_test() ->
    ?assertError({badarg, {name, 42}}, py:call(42, sqrt, [1])),
    ?assertError(_, py:call(math, sqrt, not_a_list)).

%%--------------------------------------------------------------------
%% Asynchronous calls
%%--------------------------------------------------------------------

cast_test() ->
    {ok, Ns} = py:eval(<<"__import__('types').SimpleNamespace()">>),
    true = py:is_ref(Ns),
    ok = py:cast(builtins, setattr, [Ns, <<"a">>, 1]),
    ok = py:cast(builtins, setattr, [Ns, <<"b">>, 2], #{}),
    ok = py:cast(py:context(1), builtins, setattr, [Ns, <<"c">>, 3]),
    ok = py:cast(py:context(1), builtins, setattr, [Ns, <<"d">>, 4], #{}),
    ok = wait_for(fun() ->
        py:eval(<<"sorted(vars(ns).items())">>, #{ns => Ns}) =:=
            {ok, [{<<"a">>, 1}, {<<"b">>, 2}, {<<"c">>, 3}, {<<"d">>, 4}]}
    end).

spawn_call_await_test() ->
    R1 = py:spawn_call(math, sqrt, [16]),
    true = is_reference(R1),
    {ok, 4.0} = py:await(R1),
    R2 = py:spawn_call(builtins, int, [<<"ff">>], #{base => 16}),
    {ok, 255} = py:await(R2, 5000),
    R3 = py:spawn_call(py:context(1), math, sqrt, [9]),
    {ok, 3.0} = py:await(R3),
    R4 = py:spawn_call(py:context(1), builtins, int, [<<"11">>], #{base => 2}),
    {ok, 3} = py:await(R4),
    R5 = py:spawn_call(builtins, int, [<<"x">>]),
    {error, {'ValueError', _}} = py:await(R5),
    R6 = py:spawn_call(time, sleep, [0.3]),
    {error, timeout} = py:await(R6, 10),
    {ok, none} = py:await(R6, 5000).

%%--------------------------------------------------------------------
%% Streams, parallel, reload
%%--------------------------------------------------------------------

stream_test() ->
    {ok, [0, 1, 2]} = py:stream(builtins, range, [3]),
    {ok, [0, 2, 4]} = py:stream(builtins, range, [0, 6, 2], #{}),
    ok = py:exec(<<"import sys\n",
                   "def gen(n, step=1):\n",
                   "    yield from range(0, n, step)\n",
                   "sys.modules['facade_gen'] = type(sys)('facade_gen')\n",
                   "sys.modules['facade_gen'].gen = gen\n">>),
    {ok, [0, 2, 4]} = py:stream(facade_gen, gen, [6], #{step => 2}),
    {ok, [none, 1]} = py:stream(builtins, iter, [[none, 1]]),
    {ok, []} = py:stream(builtins, range, [0]),
    {error, {'TypeError', _}} = py:stream(builtins, range, [<<"x">>]),
    {ok, [0, 2, 4]} = py:stream_eval(<<"(x * 2 for x in range(3))">>),
    {ok, [1, 2]} = py:stream_eval(<<"(x + 1 for x in xs)">>, #{xs => [0, 1]}),
    {error, {'NameError', _}} = py:stream_eval(<<"(x for x in nope)">>).

stream_lazy_test() ->
    %% The facade's lists come from the same batched stream: a generator
    %% failing after some items gives the error.
    {error, {'ValueError', _}} =
        py:stream_eval(<<"(x if x < 3 else int('x') for x in __import__('itertools').count())">>),
    ok.

async_test() ->
    ok = py:exec(<<"import asyncio, sys\n",
                   "async def add(a, b=0):\n",
                   "    await asyncio.sleep(0.001)\n",
                   "    return a + b\n",
                   "async def agen(n):\n",
                   "    for i in range(n):\n",
                   "        await asyncio.sleep(0)\n",
                   "        yield i\n",
                   "async def fail():\n",
                   "    raise ValueError('no')\n",
                   "m = type(sys)('facade_async')\n",
                   "m.add, m.agen, m.fail = add, agen, fail\n",
                   "sys.modules['facade_async'] = m\n">>),
    Ref = py:async_call(facade_async, add, [1, 2]),
    true = is_reference(Ref),
    {ok, 3} = py:async_await(Ref),
    {ok, 5} = py:async_await(py:async_call(facade_async, add, [1], #{b => 4}), 5000),
    {error, {'ValueError', "no"}} = py:async_await(py:async_call(facade_async, fail, [])),
    {error, timeout} = py:async_await(py:async_call(asyncio, sleep, [10]), 20),
    {ok, [3, none, 7]} = py:async_gather([{facade_async, add, [1, 2]},
                                          {asyncio, sleep, [0]},
                                          {facade_async, add, [3, 4]}]),
    {error, {'ValueError', _}} = py:async_gather([{facade_async, add, [1, 2]},
                                                  {facade_async, fail, []}]),
    {ok, [0, 1, 2]} = py:async_stream(facade_async, agen, [3]),
    {ok, [0]} = py:async_stream(facade_async, agen, [], #{n => 1}),
    {ok, 3} = py:call(facade_async, add, [1, 2]).

parallel_test() ->
    {ok, [2.0, 3.0, 4.0]} = py:parallel([{math, sqrt, [4]}, {math, sqrt, [9]}, {math, sqrt, [16]}]),
    {ok, []} = py:parallel([]),
    {error, {'ValueError', _}} = py:parallel([{math, sqrt, [4]}, {builtins, int, [<<"x">>]}]).

reload_test() ->
    ok = py:reload(json),
    ok = py:reload(<<"json">>),
    ok = py:reload("json"),
    ok = py:reload("sys"),
    {error, [{context, {'ModuleNotFoundError', _}}]} = py:reload(no_such_module_xyz).

%%--------------------------------------------------------------------
%% Interpreter information
%%--------------------------------------------------------------------

info_test() ->
    {ok, <<"3.", _/binary>>} = py:version(),
    {ok, #{gc_stats := [#{<<"collections">> := C} | _],
           gc_count := {_, _, _},
           gc_threshold := {_, _, _}}} = py:memory_stats(),
    true = is_integer(C),
    {ok, N} = py:gc(),
    true = is_integer(N) andalso N >= 0,
    {ok, _} = py:gc(0),
    {ok, _} = py:gc(2),
    ?assertError(function_clause, py:gc(3)),
    worker = py:execution_mode(),
    {ok, {Major, Minor}} = py:eval(<<"__import__('sys').version_info[:2]">>),
    true = py:subinterp_supported() =:= ({Major, Minor} >= {3, 12}).

%%--------------------------------------------------------------------
%% Import and path registry (py_import; py's names from before 3.0)
%%--------------------------------------------------------------------

import_registry_test_() ->
    {setup, fun() -> ok end,
     fun(_) -> py_import:clear_imports(), py_import:clear_paths() end,
     fun import_registry/0}.

import_registry() ->
    ok = py_import:clear_imports(),
    ok = py_import:ensure_imported(json),
    ok = py_import:ensure_imported(<<"json">>, dumps),
    ok = py_import:ensure_imported("math", "sqrt"),
    true = py_import:is_imported(json),
    true = py_import:is_imported(json, loads),
    true = py_import:is_imported(math, sqrt),
    false = py_import:is_imported(math, floor),
    false = py_import:is_imported(os),
    [{<<"json">>, all}, {<<"json">>, <<"dumps">>}, {<<"math">>, <<"sqrt">>}] =
        py_import:all_imports(),
    {ok, #{<<"json">> := [<<"dumps">>], <<"math">> := [<<"sqrt">>]}} = py_import:import_list(),
    {error, main_not_cacheable} = py_import:ensure_imported('__main__'),
    {error, {'ModuleNotFoundError', _}} = py_import:ensure_imported(no_such_module_xyz),
    false = py_import:is_imported(no_such_module_xyz),
    %% The same through py, as erlang_python named them before 3.0.
    ok = py:ensure_imported(os),
    ok = py:ensure_imported(os, getcwd),
    true = py:is_imported(os),
    true = py:is_imported(os, getcwd),
    {ok, #{count := 5}} = py:import_stats(),
    {ok, #{<<"os">> := [<<"getcwd">>]}} = py:import_list(),
    ok = py_import:clear_imports(),
    [] = py_import:all_imports(),
    {ok, #{count := 0}} = py:import_stats(),
    %% Paths
    Dir = <<"/tmp/py_facade_tests_path">>,
    false = py_import:is_path_added(Dir),
    ok = py_import:add_path(Dir),
    ok = py_import:add_paths(["/tmp/py_facade_tests_path", "/tmp/py_facade_tests_path2"]),
    [Dir, <<"/tmp/py_facade_tests_path2">>] = py_import:all_paths(),
    true = py_import:is_path_added("/tmp/py_facade_tests_path"),
    {ok, 1} = py:eval(<<"__import__('sys').path.count(d)">>, #{d => Dir}),
    ok = py_import:clear_paths(),
    [] = py_import:all_paths(),
    N = py:num_executors(),
    N = length(py_context_router:contexts()).

%% Also run by test/py/erlang_facade_test.exs in a VM embedding Python 3.12,
%% where sub-interpreters are supported.
subinterp_test() ->
    case py:subinterp_supported() of
        false ->
            {error, {context_failed, Msg}} = py:subinterp_create(),
            true = io_lib:printable_unicode_list(Msg),
            {error, subinterpreters_not_supported} = py:subinterp_pool_start(),
            {error, subinterpreters_not_supported} = py:subinterp_pool_start(4),
            false = py:subinterp_pool_ready(),
            #{num_workers := 0, initialized := false} = py:subinterp_pool_stats();
        true ->
            ok = py:subinterp_pool_start(),
            true = py:subinterp_pool_ready(),
            {ok, Sub} = py:subinterp_create(),
            true = is_pid(Sub),
            MRef = erlang:monitor(process, Sub),
            {ok, 4.0} = py:subinterp_call(Sub, math, sqrt, [16]),
            {ok, 255} = py:subinterp_call(Sub, builtins, int, [<<"ff">>], #{base => 16}),
            ok = py:subinterp_exec(Sub, <<"import sys\nsys.facade_marker = 1">>),
            {ok, 1} = py:subinterp_eval(Sub, <<"__import__('sys').facade_marker">>),
            {ok, 3} = py:subinterp_eval(Sub, <<"x + 1">>, #{x => 2}),
            %% Its own interpreter: the main one has no marker.
            {ok, false} = py:eval(<<"hasattr(__import__('sys'), 'facade_marker')">>),
            ok = py:subinterp_cast(Sub, builtins, setattr,
                                   [element(2, py:subinterp_eval(Sub, <<"__import__('sys')">>)),
                                    <<"cast_marker">>, 2]),
            Ref = py:subinterp_async_call(Sub, math, sqrt, [9]),
            {ok, 3.0} = py:subinterp_await(Ref),
            {ok, none} = py:subinterp_await(py:subinterp_async_call(Sub, time, sleep, [0]), 5000),
            #{num_workers := N, total_requests := R, initialized := true} = py:subinterp_pool_stats(),
            true = N >= 1 andalso R >= 5,
            ok = wait_for(fun() ->
                py:subinterp_eval(Sub, <<"getattr(__import__('sys'), 'cast_marker', 0)">>) =:= {ok, 2}
            end),
            ok = py:subinterp_destroy(Sub),
            receive {'DOWN', MRef, process, Sub, shutdown} -> ok after 5000 -> error(no_down) end,
            {error, {closed, _}} = py:subinterp_call(Sub, math, sqrt, [16]),
            ok = py:subinterp_destroy(Sub),
            ok = py:subinterp_pool_stop()
    end.

%%--------------------------------------------------------------------
%% Object handles
%%--------------------------------------------------------------------

refs_test() ->
    {ok, Date} = py:call(datetime, date, [2024, 5, 17]),
    true = py:is_ref(Date),
    false = py:is_ref(<<"2024-05-17">>),
    false = py:is_ref(make_ref()),
    {ok, 2024} = py:getattr(Date, year),
    {ok, 5} = py:getattr(Date, <<"month">>),
    {ok, 17} = py:getattr(Date, "day"),
    {ok, <<"2024-05-17">>} = py:call_method(Date, isoformat, []),
    {ok, <<"2024-05-01">>} = py:eval(<<"d.isoformat()">>,
                                     #{d => element(2, py:call_method(Date, replace, [2024, 5, 1]))}),
    {ok, Deque} = py:eval(<<"__import__('collections').deque()">>),
    {ok, none} = py:call_method(Deque, append, [none]),
    {ok, [none]} = py:call(builtins, list, [Deque]),
    {error, {'AttributeError', _}} = py:getattr(Date, nope),
    {error, {'AttributeError', _}} = py:call_method(Date, nope, []),
    {ok, Date} = py:to_term(Date).

%%--------------------------------------------------------------------
%% Contexts
%%--------------------------------------------------------------------

context_pids_test() ->
    Ctx = py:context(),
    true = is_pid(Ctx),
    Ctx = py:context(),
    Ctx1 = py:context(1),
    true = is_pid(Ctx1),
    true = is_process_alive(Ctx1),
    IoCtx = py:context(io),
    true = is_pid(IoCtx),
    true = lists:member(IoCtx, py_context_router:contexts(io)),
    true = py:contexts_started(),
    ?assertError(_, py:context(0)),
    ?assertError(_, py:context(no_such_pool)).

context_state_test() ->
    Ctx1 = py:context(1),
    ok = py:exec(Ctx1, <<"x = 'one'">>),
    [_, Ctx2 | _] = py_context_router:contexts(io),
    ok = py:exec(Ctx2, <<"x = 'two'">>),
    {ok, <<"one">>} = py:eval(Ctx1, <<"x">>),
    {ok, <<"two">>} = py:eval(Ctx2, <<"x">>),
    %% Each process has its own namespace in a context.
    {ok, 100} = run_in_process(fun() ->
        ok = py:exec(Ctx1, <<"x = 100">>),
        py:eval(Ctx1, <<"x">>)
    end),
    {ok, <<"one">>} = py:eval(Ctx1, <<"x">>).

monitor_dedicated_context_test() ->
    {ok, Ctx} = py:bind(new),
    true = is_pid(Ctx),
    MRef = erlang:monitor(process, Ctx),
    ok = py:exec(Ctx, <<"y = 1">>),
    {ok, 1} = py:eval(Ctx, <<"y">>),
    ok = py:unbind(Ctx),
    receive {'DOWN', MRef, process, Ctx, shutdown} -> ok
    after 5000 -> error(no_down)
    end,
    %% A dedicated context also closes when its owner exits.
    Self = self(),
    Owner = spawn(fun() -> {ok, C} = py:bind(new), Self ! {ctx, C}, receive stop -> ok end end),
    Ctx2 = receive {ctx, C} -> C after 5000 -> error(no_ctx) end,
    MRef2 = erlang:monitor(process, Ctx2),
    Owner ! stop,
    receive {'DOWN', MRef2, process, Ctx2, shutdown} -> ok
    after 5000 -> error(no_down)
    end.

stop_start_contexts_test_() ->
    {timeout, 60, fun stop_start_contexts/0}.

stop_start_contexts() ->
    Old = py_context_router:contexts(),
    MRefs = [erlang:monitor(process, C) || C <- Old],
    {ok, Old} = py:start_contexts(),
    ok = py:stop_contexts(),
    false = py:contexts_started(),
    false = py_context_router:is_started(),
    [receive {'DOWN', M, process, _, shutdown} -> ok after 5000 -> error(no_down) end
     || M <- MRefs],
    ok = py:stop_contexts(),
    try
        {ok, [A, B]} = py:start_contexts(#{contexts => 2, mode => worker}),
        true = is_pid(A) andalso is_pid(B),
        [A, B] = py_context_router:contexts(),
        {ok, 4.0} = py:call(math, sqrt, [16]),
        {ok, 2} = py:eval(B, <<"1 + 1">>),
        ok = py:stop_contexts()
    after
        {ok, New} = py:start_contexts(),
        true = length(New) =:= length(Old)
    end,
    true = py:contexts_started(),
    {ok, 4.0} = py:call(math, sqrt, [16]).

register_pool_test() ->
    Default = py:context(),
    Io = py:context(io),
    ok = py:exec(Default, <<"def where():\n    return 'default'\n">>),
    ok = py:exec(Io, <<"def where():\n    return 'io'\n">>),
    {ok, <<"default">>} = py:call('__main__', where, []),
    try
        ok = py:register_pool(io, '__main__'),
        io = py_context_router:lookup_pool('__main__', where),
        {ok, <<"io">>} = py:call('__main__', where, []),
        {ok, <<"io">>} = py:call('__main__', where, [], #{}),
        {ok, <<"io">>} = py:call('__main__', where, [], #{}, 5000),
        %% eval and exec are not routed.
        {ok, <<"default">>} = py:eval(<<"where()">>),
        ok = py:unregister_pool('__main__'),
        {ok, <<"default">>} = py:call('__main__', where, []),
        ok = py:register_pool(io, {'__main__', where}),
        {ok, <<"io">>} = py:call("__main__", "where", []),
        ok = py:unregister_pool({'__main__', where}),
        default = py_context_router:lookup_pool('__main__', where),
        {ok, <<"default">>} = py:call('__main__', where, [])
    after
        py:unregister_pool('__main__'),
        py:unregister_pool({'__main__', where})
    end,
    ?assertError(_, py:register_pool(no_such_pool, json)).

context_router_test() ->
    Ctx = py_context_router:get_context(),
    Ctx = py:context(),
    Ctx1 = py_context_router:get_context(1),
    Ctx1 = py:context(1),
    IoCtx = py_context_router:get_context(io),
    true = lists:member(IoCtx, py_context_router:contexts(io)),
    N = py_context_router:num_contexts(),
    N = length(py_context_router:contexts()),
    2 = py_context_router:num_contexts(io),
    0 = py_context_router:num_contexts(no_such_pool),
    [] = py_context_router:contexts(no_such_pool),
    true = py_context_router:pool_started(default),
    false = py_context_router:pool_started(no_such_pool),
    true = py_context_router:is_started(),
    %% Binding
    [_, Other | _] = py_context_router:contexts(io),
    ok = py_context_router:bind_context(Other),
    Other = py:context(),
    Other = py_context_router:get_context(io),
    ok = py:exec(<<"bound_x = 42">>),
    {ok, 42} = py:eval(Other, <<"bound_x">>),
    ok = py_context_router:unbind_context(),
    Ctx = py:context().

%%--------------------------------------------------------------------
%% pybridge additions
%%--------------------------------------------------------------------

bind_with_context_test() ->
    Ctx = py:context(),
    ok = py:bind(),
    Ctx = py:context(),
    ok = py:unbind(),
    Ctx1 = py:context(1),
    ok = py:bind(Ctx1),
    Ctx1 = py:context(),
    ok = py:unbind(Ctx1),
    {ok, 45} = py:with_context(fun() ->
        ok = py:exec(<<"total = sum(range(10))">>),
        py:eval(<<"total">>)
    end).

ctx_functions_test() ->
    Ctx = py:context(1),
    ok = py:ctx_exec(Ctx, <<"def add(a, b=0):\n    return a + b\n">>),
    {ok, 1} = py:ctx_call(Ctx, '__main__', add, [1]),
    {ok, 3} = py:ctx_call(Ctx, '__main__', add, [1], #{b => 2}),
    {ok, 4} = py:ctx_call(Ctx, '__main__', add, [1], #{b => 3}, 5000),
    {ok, 2} = py:ctx_eval(Ctx, <<"add(1, 1)">>),
    {ok, 3} = py:ctx_eval(Ctx, <<"add(x, 1)">>, #{x => 2}),
    {ok, 4} = py:ctx_eval(Ctx, <<"add(x, 1)">>, #{x => 3}, 5000),
    {error, timeout} = py:ctx_call(Ctx, time, sleep, [1], #{}, 50).

%%--------------------------------------------------------------------
%% Helpers
%%--------------------------------------------------------------------

run_in_process(Fun) ->
    Self = self(),
    Ref = make_ref(),
    _ = spawn(fun() -> Self ! {Ref, Fun()} end),
    receive {Ref, Result} -> Result after 10000 -> error(timeout) end.

wait_for(Check) ->
    wait_for(Check, 500).

wait_for(_Check, 0) ->
    error(condition_never_held);
wait_for(Check, N) ->
    case Check() of
        true -> ok;
        false -> timer:sleep(10), wait_for(Check, N - 1)
    end.
