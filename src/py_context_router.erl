%% @doc Erlang interface to pybridge's context routing, compatible with
%% erlang_python's `py_context_router' for the functions below.
%%
%% Delegates to the Elixir module `Py.Context' (one implementation).
%% Contexts are pids, as in {@link py}. A process's calls run on the context
%% bound to it with {@link bind_context/1}, else on a context of the default
%% pool picked from its pid: the same for every call of that process, spread
%% over processes.
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
    start/0, start/1,
    stop/0,
    is_started/0,
    get_context/0, get_context/1,
    bind_context/1, unbind_context/0,
    num_contexts/0, num_contexts/1,
    pool_started/1,
    contexts/0, contexts/1,
    register_pool/2, register_pool/3,
    unregister_pool/1, unregister_pool/2,
    lookup_pool/2
]).

-export_type([pool_name/0]).

-type pool_name() :: default | atom().

-define(PY, 'Elixir.Py').
-define(CTX, 'Elixir.Py.Context').

%% @doc Same as {@link py:start_contexts/0}.
-spec start() -> {ok, [pid()]} | {error, term()}.
start() ->
    py:start_contexts().

%% @doc Same as {@link py:start_contexts/1}.
-spec start(map()) -> {ok, [pid()]} | {error, term()}.
start(Opts) ->
    py:start_contexts(Opts).

%% @doc Same as {@link py:stop_contexts/0}.
-spec stop() -> ok.
stop() ->
    py:stop_contexts().

%% @doc Whether the default pool is running.
-spec is_started() -> boolean().
is_started() ->
    ?CTX:'pool_started?'(default).

%% @doc The caller's context in the default pool (its bound one, if any).
%%
%% ```
%% Ctx = py_context_router:get_context().
%% '''
-spec get_context() -> pid().
get_context() ->
    py:context().

%% @doc `get_context(Pool)': the caller's context in the pool `Pool';
%% `get_context(N)': context number `N' (1-based) of the default pool.
%%
%% ```
%% Ctx = py_context_router:get_context(default).
%% '''
-spec get_context(pool_name() | pos_integer()) -> pid().
get_context(PoolOrIndex) ->
    py:context(PoolOrIndex).

%% @doc Binds the context `Ctx' to the calling process. Returns `ok'.
%%
%% ```
%% ok = py_context_router:bind_context(py:context(1)).
%% '''
-spec bind_context(pid()) -> ok.
bind_context(Ctx) ->
    ?CTX:bind(py_dialect:ctx(Ctx)).

%% @doc Removes the calling process's binding. Returns `ok'.
-spec unbind_context() -> ok.
unbind_context() ->
    ?CTX:unbind().

%% @doc The number of contexts in the default pool.
-spec num_contexts() -> non_neg_integer().
num_contexts() ->
    num_contexts(default).

%% @doc The number of contexts in `Pool' (0 when it is not started).
-spec num_contexts(pool_name()) -> non_neg_integer().
num_contexts(Pool) ->
    case ?CTX:'pool_started?'(Pool) of
        true -> ?CTX:num_contexts(Pool);
        false -> 0
    end.

%% @doc Whether the pool `Pool' is started.
-spec pool_started(pool_name()) -> boolean().
pool_started(Pool) ->
    ?CTX:'pool_started?'(Pool).

%% @doc The contexts of the default pool, in index order.
-spec contexts() -> [pid()].
contexts() ->
    contexts(default).

%% @doc The contexts of `Pool', in index order (`[]' when it is not started).
%%
%% ```
%% [Ctx1 | _] = py_context_router:contexts(default).
%% '''
-spec contexts(pool_name()) -> [pid()].
contexts(Pool) ->
    case ?CTX:'pool_started?'(Pool) of
        true -> [Pid || #{pid := Pid} <- ?CTX:contexts(Pool)];
        false -> []
    end.

%% @doc Same as {@link py:register_pool/2} for `Module'.
-spec register_pool(pool_name(), atom()) -> ok.
register_pool(Pool, Module) ->
    py:register_pool(Pool, Module).

%% @doc Same as {@link py:register_pool/2} for `{Module, Func}'.
-spec register_pool(pool_name(), atom(), atom()) -> ok.
register_pool(Pool, Module, Func) ->
    py:register_pool(Pool, {Module, Func}).

%% @doc Same as {@link py:unregister_pool/1} for `Module'.
-spec unregister_pool(atom()) -> ok.
unregister_pool(Module) ->
    py:unregister_pool(Module).

%% @doc Same as {@link py:unregister_pool/1} for `{Module, Func}'.
-spec unregister_pool(atom(), atom()) -> ok.
unregister_pool(Module, Func) ->
    py:unregister_pool({Module, Func}).

%% @doc The pool calls of `Module:Func' are routed to (`default' unless
%% registered).
-spec lookup_pool(atom() | binary(), atom() | binary()) -> pool_name().
lookup_pool(Module, Func) ->
    ?CTX:pool_for(Module, Func).
