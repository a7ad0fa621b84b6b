%% @private
%% @doc Erlang functions Python calls, for {@link py}'s `register_function/2,3'
%% and `unregister_function/1' (`Py.Callback').
-module(py_facade_callback).

-export([register_function/2, register_function/3, unregister_function/1]).

register_function(Name, Fun) when is_function(Fun, 1) ->
    'Elixir.Py.Callback':register(Name, {erlang, Fun});
register_function(Name, {Module, Function}) when is_atom(Module), is_atom(Function) ->
    register_function(Name, Module, Function);
register_function(_Name, Other) ->
    erlang:error({badarg, Other}).

register_function(Name, Module, Function) when is_atom(Module), is_atom(Function) ->
    'Elixir.Py.Callback':register(Name, {erlang, Module, Function}).

unregister_function(Name) ->
    'Elixir.Py.Callback':unregister(Name).
