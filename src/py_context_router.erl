%% @doc Erlang interface to pybridge's context routing.
%%
%% Delegates to the Elixir modules `Py' and `Py.Context' (one
%% implementation). A process's calls run on the context bound to it with
%% {@link bind_context/1}, else on a context of the default pool picked from
%% its pid: the same for every call of that process, spread over processes.
%%
%% ```
%% Ctx = py_context_router:get_context(),
%% ok = py_context_router:bind_context(Ctx),
%% ok = py:exec(<<"x = 42">>),
%% {ok, 42} = py:eval(<<"x">>),
%% ok = py_context_router:unbind_context().
%% '''
-module(py_context_router).

-export([
    get_context/0, get_context/1,
    bind_context/1, unbind_context/0,
    num_contexts/0, num_contexts/1,
    pool_started/1,
    contexts/1
]).

-define(PY, 'Elixir.Py').
-define(CTX, 'Elixir.Py.Context').

%% @doc The caller's context in the default pool (its bound one, if any).
%%
%% ```
%% Ctx = py_context_router:get_context().
%% '''
-spec get_context() -> py:context().
get_context() ->
    ?PY:context().

%% @doc `get_context(Pool)': the caller's context in the pool `Pool';
%% `get_context(N)': context number `N' (1-based) of the default pool.
%%
%% ```
%% Ctx = py_context_router:get_context(io).
%% '''
-spec get_context(atom() | pos_integer()) -> py:context().
get_context(PoolOrIndex) ->
    ?PY:context(PoolOrIndex).

%% @doc Binds `Ctx' to the calling process.
%%
%% ```
%% ok = py_context_router:bind_context(py:context(1)).
%% '''
-spec bind_context(py:context()) -> ok.
bind_context(Ctx) ->
    ?CTX:bind(Ctx).

%% @doc Removes the calling process's binding.
%%
%% ```
%% ok = py_context_router:unbind_context().
%% '''
-spec unbind_context() -> ok.
unbind_context() ->
    ?CTX:unbind().

%% @doc The number of contexts in the default pool.
%%
%% ```
%% N = py_context_router:num_contexts().
%% '''
-spec num_contexts() -> non_neg_integer().
num_contexts() ->
    ?CTX:num_contexts(default).

%% @doc The number of contexts in `Pool'.
%%
%% ```
%% N = py_context_router:num_contexts(io).
%% '''
-spec num_contexts(atom()) -> non_neg_integer().
num_contexts(Pool) ->
    ?CTX:num_contexts(Pool).

%% @doc Whether the pool `Pool' is started.
%%
%% ```
%% true = py_context_router:pool_started(default).
%% '''
-spec pool_started(atom()) -> boolean().
pool_started(Pool) ->
    ?CTX:'pool_started?'(Pool).

%% @doc The contexts of `Pool', in index order.
%%
%% ```
%% [Ctx1 | _] = py_context_router:contexts(default).
%% '''
-spec contexts(atom()) -> [py:context()].
contexts(Pool) ->
    ?CTX:contexts(Pool).
