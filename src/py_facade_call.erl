%% @private
%% @doc Calls, eval and exec for {@link py}: the module-first, context-first
%% and pool-routed forms of `call/3,4,5', `eval/1,2,3', `exec/1,2' and
%% pybridge's `ctx_*' forms, translated onto `Py.call', `Py.eval' and `Py.exec'.
-module(py_facade_call).

-export([call/3, call/4, call/5, eval/1, eval/2, eval/3, exec/1, exec/2, ctx_call/4,
         ctx_call/5, ctx_call/6, ctx_eval/2, ctx_eval/3, ctx_eval/4, ctx_exec/2]).

-import(py_dialect, [ctx_run/2, name/1, in/1, in_locals/1, in_kwargs/1, result/1]).

-define(PY, 'Elixir.Py').

call(Module, Func, Args) ->
    result(?PY:call(name(Module), name(Func), in(Args))).

call(Ctx, Module, Func, Args) when is_pid(Ctx); is_map(Ctx) ->
    ctx_run(Ctx, fun(C) ->
        ?PY:call(C, name(Module), name(Func), in(Args), [{timeout, infinity}])
    end);
call(Pool, Module, Func, Args) when is_atom(Pool), (is_atom(Func) orelse is_binary(Func)),
                                    is_list(Args) ->
    pool_call(Pool, Module, Func, Args, #{}, default);
call(Module, Func, Args, Kwargs) ->
    result(?PY:call(name(Module), name(Func), in(Args), [{kwargs, in_kwargs(Kwargs)}])).

call(Ctx, Module, Func, Args, Opts) when (is_pid(Ctx) orelse is_map(Ctx)), is_map(Opts) ->
    ctx_run(Ctx, fun(C) ->
        ?PY:call(C, name(Module), name(Func), in(Args), ctx_opts(Opts))
    end);
call(Pool, Module, Func, Args, Kwargs) when is_atom(Pool), (is_atom(Func) orelse is_binary(Func)),
                                            is_list(Args), is_map(Kwargs) ->
    pool_call(Pool, Module, Func, Args, Kwargs, default);
call(Module, Func, Args, Kwargs, Timeout) ->
    result(?PY:call(name(Module), name(Func), in(Args),
                    [{kwargs, in_kwargs(Kwargs)}, {timeout, Timeout}])).

pool_call(Pool, Module, Func, Args, Kwargs, Timeout) ->
    Opts = [{kwargs, in_kwargs(Kwargs)} | timeout_opt(Timeout)],
    result(?PY:call(?PY:context(Pool), name(Module), name(Func), in(Args), Opts)).

%% Options of the context-first forms: erlang_python waits forever unless
%% told otherwise.
ctx_opts(Opts) ->
    case maps:get(return, Opts, value) of
        value -> ok;
        Other -> error({unsupported_option, {return, Other}})
    end,
    %% erlang_python ignores other keys; a kwargs map given in place of the
    %% options would be dropped silently, so they are refused.
    case maps:keys(maps:without([kwargs, timeout, return, coalesce, group], Opts)) of
        [] -> ok;
        Unknown -> error({badarg, {unknown_options, Unknown,
                                   "expected #{kwargs => Map, timeout => Ms, "
                                   "coalesce => true | Key, group => Group}"}})
    end,
    [{kwargs, in_kwargs(maps:get(kwargs, Opts, #{}))},
     {timeout, maps:get(timeout, Opts, infinity)}
     | [{K, V} || K <- [coalesce, group], {ok, V} <- [maps:find(K, Opts)]]].

timeout_opt(default) -> [];
timeout_opt(Timeout) -> [{timeout, Timeout}].

eval(Code) ->
    result(?PY:eval(Code)).

eval(Ctx, Code) when is_pid(Ctx); is_map(Ctx) ->
    ctx_run(Ctx, fun(C) -> ?PY:eval(C, Code, #{}, [{timeout, infinity}]) end);
eval(Code, Locals) ->
    result(?PY:eval(Code, in_locals(Locals))).

eval(Ctx, Code, Locals) when is_pid(Ctx); is_map(Ctx) ->
    ctx_run(Ctx, fun(C) -> ?PY:eval(C, Code, in_locals(Locals), [{timeout, infinity}]) end);
eval(Code, Locals, Timeout) ->
    result(?PY:eval(Code, in_locals(Locals), [{timeout, Timeout}])).

exec(Code) ->
    result(?PY:exec(Code)).

exec(Ctx, Code) ->
    ctx_run(Ctx, fun(C) -> ?PY:exec(C, Code, [{timeout, infinity}]) end).

ctx_call(Ctx, Module, Func, Args) ->
    ctx_call(Ctx, Module, Func, Args, #{}).

ctx_call(Ctx, Module, Func, Args, Kwargs) ->
    ctx_run(Ctx, fun(C) ->
        ?PY:call(C, name(Module), name(Func), in(Args), [{kwargs, in_kwargs(Kwargs)}])
    end).

ctx_call(Ctx, Module, Func, Args, Kwargs, Timeout) ->
    ctx_run(Ctx, fun(C) ->
        ?PY:call(C, name(Module), name(Func), in(Args),
                 [{kwargs, in_kwargs(Kwargs)}, {timeout, Timeout}])
    end).

ctx_eval(Ctx, Code) ->
    ctx_eval(Ctx, Code, #{}).

ctx_eval(Ctx, Code, Locals) ->
    ctx_run(Ctx, fun(C) -> ?PY:eval(C, Code, in_locals(Locals), []) end).

ctx_eval(Ctx, Code, Locals, Timeout) ->
    ctx_run(Ctx, fun(C) -> ?PY:eval(C, Code, in_locals(Locals), [{timeout, Timeout}]) end).

ctx_exec(Ctx, Code) ->
    ctx_run(Ctx, fun(C) -> ?PY:exec(C, Code, []) end).
