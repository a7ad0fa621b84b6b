%% EUnit tests of the Erlang facade's SharedDict and State functions, with
%% erlang_python's names and result shapes; run by
%% test/py/erlang_facade_test.exs like the other suites.
-module(py_shared_dict_tests).

-include_lib("eunit/include/eunit.hrl").

%% erlang_python's SharedDict quick start (Erlang side), as written, with
%% its comments turned into matches.
quick_start_test() ->
    %% Create a SharedDict
    {ok, SD} = py:shared_dict_new(),

    %% Set values
    ok = py:shared_dict_set(SD, <<"config">>, #{host => <<"localhost">>, port => 8080}),

    %% Get values
    Config = py:shared_dict_get(SD, <<"config">>),
    #{<<"host">> := <<"localhost">>, <<"port">> := 8080} = Config,

    %% Get with default
    Value = py:shared_dict_get(SD, <<"missing">>, default_value),
    default_value = Value,

    %% List keys
    Keys = py:shared_dict_keys(SD),
    [<<"config">>] = Keys,

    %% Delete a key
    ok = py:shared_dict_del(SD, <<"config">>),

    %% Explicit cleanup (optional - GC handles this)
    ok = py:shared_dict_destroy(SD).

missing_is_undefined_and_none_is_none_test() ->
    {ok, SD} = py:shared_dict_new(),
    undefined = py:shared_dict_get(SD, <<"missing">>),
    ok = py:shared_dict_set(SD, <<"n">>, none),
    none = py:shared_dict_get(SD, <<"n">>),
    ok = py:shared_dict_set(SD, <<"b">>, {bytes, <<"abc">>}),
    <<"abc">> = py:shared_dict_get(SD, <<"b">>),
    ok = py:shared_dict_del(SD, <<"missing">>),
    ok = py:shared_dict_destroy(SD),
    ok = py:shared_dict_destroy(SD).

options_and_errors_test() ->
    Name = <<"py_shared_dict_tests">>,
    {ok, SD} = py:shared_dict_new(#{name => Name, max_entries => 1}),
    {error, exists} = py:shared_dict_new([{name, Name}]),
    ok = py:shared_dict_set(SD, <<"a">>, 1, #{ttl => 60000}),
    {error, full} = py:shared_dict_set(SD, <<"b">>, 1),
    {error, {conversion, _}} = py:shared_dict_set(SD, <<"a">>, fun() -> ok end),
    ok = py:shared_dict_destroy(SD),
    %% A destroyed dict raises, as erlang_python's does.
    ?assertError(#{'__struct__' := 'Elixir.Py.Error', type := destroyed},
                 py:shared_dict_get(SD, <<"a">>)),
    %% Keys are binaries.
    {ok, SD2} = py:shared_dict_new(),
    ?assertError(#{'__struct__' := 'Elixir.ArgumentError'}, py:shared_dict_set(SD2, key, 1)).

owner_exit_destroys_test() ->
    Self = self(),
    Pid = spawn(fun() -> {ok, SD} = py:shared_dict_new(), Self ! {sd, SD}, receive stop -> ok end end),
    SD = receive {sd, S} -> S end,
    ok = py:shared_dict_set(SD, <<"a">>, 1),
    MRef = erlang:monitor(process, Pid),
    Pid ! stop,
    receive {'DOWN', MRef, _, _, _} -> ok end,
    wait_destroyed(SD, 2000).

wait_destroyed(SD, 0) ->
    erlang:error({not_destroyed, SD});
wait_destroyed(SD, N) ->
    try py:shared_dict_get(SD, <<"a">>) of
        _ -> timer:sleep(5), wait_destroyed(SD, N - 1)
    catch
        error:#{type := destroyed} -> ok
    end.

state_test() ->
    ok = py:state_store(<<"facade_state">>, #{a => [1, none]}),
    {ok, #{<<"a">> := [1, none]}} = py:state_fetch(<<"facade_state">>),
    true = lists:member(<<"facade_state">>, py:state_keys()),
    ok = py:state_remove(<<"facade_state">>),
    {error, not_found} = py:state_fetch(<<"facade_state">>),
    1 = py:state_incr(<<"facade_counter">>),
    11 = py:state_incr(<<"facade_counter">>, 10),
    10 = py:state_decr(<<"facade_counter">>),
    0 = py:state_decr(<<"facade_counter">>, 10),
    ok = py:state_remove(<<"facade_counter">>).
