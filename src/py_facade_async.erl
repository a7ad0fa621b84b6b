%% @private
%% @doc Calls that return before their result for {@link py}: `cast', `spawn_call'
%% and its `await', `async_call'/`async_await'/`async_gather' on the
%% interpreter's event loop (`Py.async_call'), and `parallel/1'.
-module(py_facade_async).

-export([cast/3, cast/4, cast/5, spawn_call/3, spawn_call/4, spawn_call/5,
         spawn_await/1, spawn_await/2, call/3, call/4, await/1, await/2, gather/1,
         parallel/1]).

-import(py_dialect, [name/1, in/1, in_kwargs/1, result/1]).

-define(PY, 'Elixir.Py').
-define(CTX, 'Elixir.Py.Context').
-define(AWAIT_TIMEOUT, 'Elixir.Py.Limits':default_timeout_ms()).

cast(Module, Func, Args) ->
    cast(Module, Func, Args, #{}).

cast(Ctx, Module, Func, Args) when is_pid(Ctx); is_map(Ctx) ->
    cast(Ctx, Module, Func, Args, #{});
cast(Module, Func, Args, Kwargs) ->
    _ = spawn(fun() -> py_facade_call:call(Module, Func, Args, Kwargs) end),
    ok.

cast(Ctx, Module, Func, Args, Kwargs) when is_pid(Ctx); is_map(Ctx) ->
    _ = spawn(fun() -> py_facade_call:call(Ctx, Module, Func, Args, #{kwargs => Kwargs}) end),
    ok.

spawn_call(Module, Func, Args) ->
    spawn_call(Module, Func, Args, #{}).

spawn_call(Ctx, Module, Func, Args) when is_pid(Ctx); is_map(Ctx) ->
    spawn_call(Ctx, Module, Func, Args, #{});
spawn_call(Module, Func, Args, Kwargs) ->
    spawn_reply(fun() -> py_facade_call:call(Module, Func, Args, Kwargs) end).

spawn_call(Ctx, Module, Func, Args, Kwargs) when is_pid(Ctx); is_map(Ctx) ->
    spawn_reply(fun() -> py_facade_call:call(Ctx, Module, Func, Args, #{kwargs => Kwargs}) end).

%% The result reaches the caller as {py_response, Ref, Result}; a call that
%% raises (bad arguments) is reported as {error, {Class, Reason}}.
spawn_reply(Fun) ->
    Ref = make_ref(),
    Parent = self(),
    _ = spawn(fun() ->
        Result = try Fun() catch Class:Reason -> {error, {Class, Reason}} end,
        Parent ! {py_response, Ref, Result}
    end),
    Ref.

spawn_await(Ref) ->
    spawn_await(Ref, ?AWAIT_TIMEOUT).

spawn_await(Ref, Timeout) ->
    receive
        {py_response, Ref, Result} -> Result
    after Timeout ->
        {error, timeout}
    end.

call(Module, Func, Args) ->
    call(Module, Func, Args, #{}).

call(Module, Func, Args, Kwargs) ->
    Task = ?PY:async_call(name(Module), name(Func), in(Args), [{kwargs, in_kwargs(Kwargs)}]),
    Ref = maps:get(ref, Task),
    put({?MODULE, async, Ref}, Task),
    Ref.

await(Ref) ->
    await(Ref, ?AWAIT_TIMEOUT).

await(Ref, Timeout) ->
    case erase({?MODULE, async, Ref}) of
        undefined -> spawn_await(Ref, Timeout);
        Task -> result(?PY:await(Task, Timeout))
    end.

gather(Calls) when is_list(Calls) ->
    Tasks = [?PY:async_call(name(M), name(F), in(A), []) || {M, F, A} <- Calls],
    gathered(?PY:await_many(Tasks, ?AWAIT_TIMEOUT), []).

gathered([{ok, Value} | Rest], Acc) -> gathered(Rest, [Value | Acc]);
gathered([Error | _], _Acc) -> result(Error);
gathered([], Acc) -> result({ok, lists:reverse(Acc)}).

parallel(Calls) when is_list(Calls) ->
    Contexts = list_to_tuple(?CTX:contexts(default)),
    N = tuple_size(Contexts),
    Indexed = lists:zip(lists:seq(0, length(Calls) - 1), Calls),
    Refs = [spawn_reply(fun() ->
                Ctx = element(I rem N + 1, Contexts),
                py_facade_call:call(Ctx, M, F, A, #{timeout => ?AWAIT_TIMEOUT})
            end) || {I, {M, F, A}} <- Indexed],
    Results = [spawn_await(Ref, ?AWAIT_TIMEOUT) || Ref <- Refs],
    case [E || {error, _} = E <- Results] of
        [] -> {ok, [V || {ok, V} <- Results]};
        [First | _] -> First
    end.
