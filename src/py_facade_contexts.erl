%% @private
%% @doc Contexts for {@link py}: the caller's context as a pid, starting and
%% stopping the pools, pool routing, binding (`Py.Context').
-module(py_facade_contexts).

-export([context/0, context/1, start_contexts/0, start_contexts/1, stop_contexts/0,
         contexts_started/0, register_pool/2, unregister_pool/1, num_executors/0,
         bind/0, bind/1, unbind/0, unbind/1, with_context/1]).

-import(py_dialect, [ctx/1, ctx_or_none/1, pid_of/1, name/1]).

-define(PY, 'Elixir.Py').
-define(CTX, 'Elixir.Py.Context').
-define(SUP, 'Elixir.Py.Context.Supervisor').

context() ->
    pid_of(?PY:context()).

context(IndexOrPool) ->
    pid_of(?PY:context(IndexOrPool)).

start_contexts() ->
    start_contexts(#{}).

start_contexts(Opts) when is_map(Opts) ->
    Settings = [{num_contexts, N} || #{contexts := N} <- [Opts]] ++
               [{context_mode, mode(M)} || #{mode := M} <- [Opts]],
    case ?SUP:start_pools(Settings) of
        {ok, Contexts} -> {ok, [pid_of(C) || C <- Contexts]};
        {error, _} = Error -> Error
    end.

mode(worker) -> main;
mode(owngil) -> subinterpreter;
mode(Other) -> error({badarg, {mode, Other}}).

stop_contexts() ->
    ?SUP:stop_pools().

contexts_started() ->
    ?CTX:'pool_started?'(default).

register_pool(Pool, {Module, Func}) ->
    ?CTX:register_pool(Pool, name(Module), name(Func));
register_pool(Pool, Module) ->
    ?CTX:register_pool(Pool, name(Module)).

unregister_pool({Module, Func}) ->
    ?CTX:unregister_pool(name(Module), name(Func));
unregister_pool(Module) ->
    ?CTX:unregister_pool(name(Module)).

num_executors() ->
    ?CTX:num_contexts(default).

bind() ->
    ?CTX:bind(?PY:context()).

bind(new) ->
    {ok, pid_of(?CTX:new([]))};
bind(Ctx) ->
    ?CTX:bind(ctx(Ctx)).

unbind() ->
    ?CTX:unbind().

unbind(Ctx0) ->
    case ctx_or_none(Ctx0) of
        none ->
            ok;
        #{pool := Pool} = Ctx ->
            case ?CTX:bound() of
                Ctx -> ok = ?CTX:unbind();
                _ -> ok
            end,
            case Pool of
                dedicated -> ?CTX:close(Ctx);
                _ -> ok
            end
    end.

with_context(Fun) ->
    ?PY:with_context(Fun).
