%% @private
%% @doc erlang_python's pre-3.0 `subinterp_*' functions for {@link py}, mapped onto
%% dedicated sub-interpreter contexts: the handle is a context pid.
-module(py_facade_subinterp).

-export([create/0, destroy/1, call/4, call/5, eval/2, eval/3, exec/2, cast/4,
         async_call/4, await/1, await/2, pool_start/0, pool_start/1, pool_stop/0,
         pool_ready/0, pool_stats/0]).

-import(py_dialect, [pid_of/1, result/1]).

-define(CTX, 'Elixir.Py.Context').

create() ->
    try ?CTX:new([{mode, subinterpreter}]) of
        Ctx -> {ok, pid_of(Ctx)}
    catch
        error:#{'__struct__' := 'Elixir.Py.Error'} = E -> result({error, E})
    end.

destroy(Handle) ->
    py_facade_contexts:unbind(Handle).

call(Handle, Module, Func, Args) ->
    py_facade_call:call(Handle, Module, Func, Args).

call(Handle, Module, Func, Args, Kwargs) ->
    py_facade_call:call(Handle, Module, Func, Args, #{kwargs => Kwargs}).

eval(Handle, Code) ->
    py_facade_call:eval(Handle, Code).

eval(Handle, Code, Locals) ->
    py_facade_call:eval(Handle, Code, Locals).

exec(Handle, Code) ->
    py_facade_call:exec(Handle, Code).

cast(Handle, Module, Func, Args) ->
    py_facade_async:cast(Handle, Module, Func, Args).

async_call(Handle, Module, Func, Args) ->
    py_facade_async:spawn_call(Handle, Module, Func, Args).

await(Ref) ->
    py_facade_async:spawn_await(Ref).

await(Ref, Timeout) ->
    py_facade_async:spawn_await(Ref, Timeout).

pool_start() ->
    case py_facade_runtime:subinterp_supported() of
        true -> ok;
        false -> {error, subinterpreters_not_supported}
    end.

pool_start(_NumWorkers) ->
    pool_start().

pool_stop() ->
    ok.

pool_ready() ->
    py_facade_runtime:subinterp_supported().

pool_stats() ->
    Infos = [I || Ctx <- 'Elixir.Py.Context.Registry':dedicated(),
                  #{mode := subinterpreter} = I <- [?CTX:info(Ctx)]],
    #{num_workers => length(Infos),
      total_requests => lists:sum([C || #{calls_total := C} <- Infos]),
      total_errors => lists:sum([E || #{errors_total := E} <- Infos]),
      initialized => py_facade_runtime:subinterp_supported()}.
