%% @private
%% @doc {@link py}'s `state_*' functions onto the global State (`Py.State').
-module(py_facade_state).

-export([store/2, fetch/1, remove/1, keys/0, clear/0, incr/1, incr/2, decr/1, decr/2]).

-import(py_dialect, [in/1, out/1]).

-define(STATE, 'Elixir.Py.State').

store(Key, Value) ->
    ?STATE:put(Key, in(Value)).

fetch(Key) ->
    case ?STATE:fetch(Key) of
        {ok, Value} -> {ok, out(Value)};
        error -> {error, not_found}
    end.

remove(Key) ->
    ?STATE:delete(Key).

keys() ->
    ?STATE:keys().

clear() ->
    ?STATE:clear().

incr(Key) ->
    ?STATE:incr(Key, 1).

incr(Key, By) ->
    ?STATE:incr(Key, By).

decr(Key) ->
    ?STATE:decr(Key, 1).

decr(Key, By) ->
    ?STATE:decr(Key, By).
