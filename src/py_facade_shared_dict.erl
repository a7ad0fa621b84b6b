%% @private
%% @doc {@link py}'s `shared_dict_*' functions onto `Py.SharedDict': values in
%% erlang_python's shapes, options as maps or proplists.
-module(py_facade_shared_dict).

-export([new/0, new/1, get/2, get/3, set/3, set/4, del/2, keys/1, destroy/1]).

-import(py_dialect, [in/1, out/1, sd_options/1, sd_result/1]).

-define(SD, 'Elixir.Py.SharedDict').

new() ->
    new(#{}).

new(Opts) ->
    ?SD:new(sd_options(Opts)).

get(SD, Key) ->
    get(SD, Key, undefined).

get(SD, Key, Default) ->
    case ?SD:fetch(SD, Key) of
        {ok, Value} -> out(Value);
        error -> Default
    end.

set(SD, Key, Value) ->
    set(SD, Key, Value, #{}).

set(SD, Key, Value, Opts) ->
    sd_result(?SD:put(SD, Key, in(Value), sd_options(Opts))).

del(SD, Key) ->
    ?SD:delete(SD, Key).

keys(SD) ->
    ?SD:keys(SD).

destroy(SD) ->
    ?SD:destroy(SD).
