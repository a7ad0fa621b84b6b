%% @doc Erlang interface to pybridge: call Python from Erlang.
%%
%% This module only delegates to the Elixir modules `Py' and `Py.Context'
%% (there is one implementation); see their documentation for the details of
%% conversion, process-bound environments, contexts and options.
%%
%% Results are `{ok, Value}', `ok' (for exec) or `{error, Reason}', where
%% `Reason' is a `#{'__struct__' := 'Elixir.Py.Error', type := Type,
%% message := Msg, traceback := Tb}' map: `Type' is the Python exception class
%% name as a binary (`<<"ValueError">>') or an atom (`timeout', `conversion',
%% `closed', `noconnection', `erpc', `remote_exit', `internal').
%%
%% ```
%% {ok, 2} = py:eval(<<"1 + 1">>),
%% {ok, 4.0} = py:call(math, sqrt, [16]),
%% Ctx = py:context(1),
%% ok = py:exec(Ctx, <<"counter = 0">>),
%% ok = py:exec(Ctx, <<"counter += 1">>),
%% {ok, 1} = py:eval(Ctx, <<"counter">>).
%% '''
-module(py).

-export([
    eval/1, eval/2, eval/3,
    exec/1, exec/2,
    call/3, call/4, call/5,
    context/0, context/1,
    contexts_started/0,
    bind/0, bind/1,
    unbind/0, unbind/1,
    with_context/1,
    ctx_call/4, ctx_call/5, ctx_call/6,
    ctx_eval/2, ctx_eval/3, ctx_eval/4,
    ctx_exec/2,
    reload/1
]).

-export_type([context/0, error/0, code/0, timeout_ms/0]).

-define(PY, 'Elixir.Py').
-define(CTX, 'Elixir.Py.Context').

-type context() :: #{'__struct__' := 'Elixir.Py.Context', pool := atom(),
                     index := pos_integer(), ref := reference()}.
%% A context handle, as returned by {@link context/1}.

-type error() :: #{'__struct__' := 'Elixir.Py.Error', type := binary() | atom(),
                   message := binary(), traceback := binary() | nil,
                   '__exception__' := true}.
%% The `Py.Error' exception map.

-type code() :: unicode:chardata().
%% Python source: a binary or an iolist/string.

-type timeout_ms() :: non_neg_integer() | infinity.

-type name() :: atom() | binary().

-type locals() :: #{atom() | binary() => term()}.

-type kwargs() :: #{atom() | binary() => term()} | [{atom(), term()}].

%%====================================================================
%% eval / exec / call
%%====================================================================

%% @doc Evaluates a Python expression on the caller's context.
%%
%% ```
%% {ok, 3} = py:eval(<<"1 + 2">>).
%% '''
-spec eval(code()) -> {ok, term()} | {error, error()}.
eval(Code) ->
    ?PY:eval(Code).

%% @doc `eval(Code, Locals)' evaluates `Code' with the variables `Locals'
%% (visible to this evaluation only); `eval(Ctx, Code)' evaluates `Code' on
%% the context `Ctx'.
%%
%% ```
%% {ok, 6} = py:eval(<<"x * y">>, #{x => 2, y => 3}),
%% {ok, 2} = py:eval(py:context(1), <<"1 + 1">>).
%% '''
-spec eval(code(), locals()) -> {ok, term()} | {error, error()};
          (context(), code()) -> {ok, term()} | {error, error()}.
eval(CtxOrCode, CodeOrLocals) ->
    ?PY:eval(CtxOrCode, CodeOrLocals).

%% @doc `eval(Code, Locals, Timeout)' evaluates with a timeout in
%% milliseconds; `eval(Ctx, Code, Locals)' evaluates on `Ctx'.
%%
%% ```
%% {ok, 2} = py:eval(<<"x + 1">>, #{x => 1}, 5000),
%% {ok, 2} = py:eval(py:context(1), <<"x + 1">>, #{x => 1}).
%% '''
-spec eval(code(), locals(), timeout_ms()) -> {ok, term()} | {error, error()};
          (context(), code(), locals()) -> {ok, term()} | {error, error()}.
eval(#{'__struct__' := 'Elixir.Py.Context'} = Ctx, Code, Locals) ->
    ?PY:eval(Ctx, Code, Locals);
eval(Code, Locals, Opts) when is_list(Opts) ->
    ?PY:eval(Code, Locals, Opts);
eval(Code, Locals, Timeout) ->
    ?PY:eval(Code, Locals, [{timeout, Timeout}]).

%% @doc Runs Python statements in the caller's namespace of its context.
%%
%% ```
%% ok = py:exec(<<"x = 42">>),
%% {ok, 42} = py:eval(<<"x">>).
%% '''
-spec exec(code()) -> ok | {error, error()}.
exec(Code) ->
    ?PY:exec(Code).

%% @doc Runs Python statements on the context `Ctx'.
%%
%% ```
%% ok = py:exec(py:context(1), <<"counter = 0">>).
%% '''
-spec exec(context(), code()) -> ok | {error, error()}.
exec(Ctx, Code) ->
    ?PY:exec(Ctx, Code).

%% @doc Calls `Module:Function(Args...)' in Python.
%%
%% ```
%% {ok, 4.0} = py:call(math, sqrt, [16]),
%% {ok, <<"a/b">>} = py:call('os.path', join, [<<"a">>, <<"b">>]).
%% '''
-spec call(name(), name(), list()) -> {ok, term()} | {error, error()}.
call(Module, Function, Args) ->
    ?PY:call(Module, Function, Args).

%% @doc `call(Module, Function, Args, Kwargs)' calls with keyword arguments;
%% `call(Ctx, Module, Function, Args)' calls on the context `Ctx' (module
%% `'__main__'' is the caller's namespace there).
%%
%% ```
%% {ok, 255} = py:call(builtins, int, [<<"ff">>], #{base => 16}),
%% {ok, 3.0} = py:call(py:context(1), math, sqrt, [9]).
%% '''
-spec call(name(), name(), list(), kwargs()) -> {ok, term()} | {error, error()};
          (context(), name(), name(), list()) -> {ok, term()} | {error, error()}.
call(#{'__struct__' := 'Elixir.Py.Context'} = Ctx, Module, Function, Args) ->
    ?PY:call(Ctx, Module, Function, Args);
call(Module, Function, Args, Kwargs) ->
    ?PY:call(Module, Function, Args, [{kwargs, Kwargs}]).

%% @doc `call(Module, Function, Args, Kwargs, Timeout)' calls with keyword
%% arguments and a timeout in milliseconds; `call(Ctx, Module, Function, Args,
%% Kwargs)' calls on `Ctx' with keyword arguments (a list of `Py.call/5'
%% options such as `[{timeout, 1000}]' is accepted in place of `Kwargs').
%%
%% ```
%% {ok, 255} = py:call(builtins, int, [<<"ff">>], #{base => 16}, 5000).
%% '''
-spec call(name(), name(), list(), kwargs(), timeout_ms()) -> {ok, term()} | {error, error()};
          (context(), name(), name(), list(), kwargs()) -> {ok, term()} | {error, error()}.
%% With a context first, the fifth argument is the keyword arguments (a map
%% or a proplist), as in `call/4'; use `ctx_call/6' for a timeout.
call(#{'__struct__' := 'Elixir.Py.Context'} = Ctx, Module, Function, Args, Kwargs) ->
    ?PY:call(Ctx, Module, Function, Args, [{kwargs, Kwargs}]);
call(Module, Function, Args, Kwargs, Timeout) ->
    ?PY:call(Module, Function, Args, [{kwargs, Kwargs}, {timeout, Timeout}]).

%%====================================================================
%% Contexts
%%====================================================================

%% @doc The caller's context: the bound one, else one of the default pool
%% picked from the caller's pid (always the same for a process).
%%
%% ```
%% Ctx = py:context().
%% '''
-spec context() -> context().
context() ->
    ?PY:context().

%% @doc `context(N)': context number `N' (1-based) of the default pool;
%% `context(Pool)': the caller's context in the pool `Pool'.
%%
%% ```
%% Ctx = py:context(1).
%% '''
-spec context(pos_integer() | atom()) -> context().
context(IndexOrPool) ->
    ?PY:context(IndexOrPool).

%% @doc Whether the default context pool is running.
%%
%% ```
%% true = py:contexts_started().
%% '''
-spec contexts_started() -> boolean().
contexts_started() ->
    ?CTX:'pool_started?'(default).

%% @doc Binds the caller's current context to the calling process, so later
%% calls keep running on it (and keep their Python state).
%%
%% ```
%% ok = py:bind(),
%% ok = py:exec(<<"x = 1">>),
%% ok = py:unbind().
%% '''
-spec bind() -> ok.
bind() ->
    ?CTX:bind(?PY:context()).

%% @doc `bind(new)' starts a dedicated context owned by the caller and returns
%% it (closed by {@link unbind/1} or when the caller exits); `bind(Ctx)' binds
%% `Ctx' to the calling process.
%%
%% ```
%% {ok, Ctx} = py:bind(new),
%% ok = py:exec(Ctx, <<"x = 1">>),
%% ok = py:unbind(Ctx).
%% '''
-spec bind(new) -> {ok, context()};
          (context()) -> ok.
bind(new) ->
    {ok, ?CTX:new([])};
bind(#{'__struct__' := 'Elixir.Py.Context'} = Ctx) ->
    ?CTX:bind(Ctx).

%% @doc Removes the calling process's binding.
%%
%% ```
%% ok = py:unbind().
%% '''
-spec unbind() -> ok.
unbind() ->
    ?CTX:unbind().

%% @doc Releases `Ctx': unbinds it if it is the caller's bound context, and
%% closes it if it is a dedicated context from {@link bind/1}.
%%
%% ```
%% {ok, Ctx} = py:bind(new),
%% ok = py:unbind(Ctx).
%% '''
-spec unbind(context()) -> ok.
unbind(#{'__struct__' := 'Elixir.Py.Context', pool := Pool} = Ctx) ->
    case ?CTX:bound() of
        Ctx -> ok = ?CTX:unbind();
        _ -> ok
    end,
    case Pool of
        dedicated -> ?CTX:close(Ctx);
        _ -> ok
    end.

%% @doc Runs `Fun' with the caller's current context bound, restoring the
%% previous binding afterwards (even on exceptions). Returns what `Fun'
%% returns.
%%
%% ```
%% {ok, 45} = py:with_context(fun() ->
%%     ok = py:exec(<<"total = sum(range(10))">>),
%%     py:eval(<<"total">>)
%% end).
%% '''
-spec with_context(fun(() -> Result)) -> Result.
with_context(Fun) ->
    ?PY:with_context(Fun).

%% @doc Calls `Module:Function(Args...)' on the context `Ctx'.
%%
%% ```
%% {ok, 3.0} = py:ctx_call(py:context(1), math, sqrt, [9]).
%% '''
-spec ctx_call(context(), name(), name(), list()) -> {ok, term()} | {error, error()}.
ctx_call(Ctx, Module, Function, Args) ->
    ?PY:call(Ctx, Module, Function, Args, []).

%% @doc Calls on `Ctx' with keyword arguments.
%%
%% ```
%% {ok, 255} = py:ctx_call(py:context(1), builtins, int, [<<"ff">>], #{base => 16}).
%% '''
-spec ctx_call(context(), name(), name(), list(), kwargs()) -> {ok, term()} | {error, error()}.
ctx_call(Ctx, Module, Function, Args, Kwargs) ->
    ?PY:call(Ctx, Module, Function, Args, [{kwargs, Kwargs}]).

%% @doc Calls on `Ctx' with keyword arguments and a timeout in milliseconds.
%%
%% ```
%% {ok, 255} = py:ctx_call(py:context(1), builtins, int, [<<"ff">>], #{base => 16}, 5000).
%% '''
-spec ctx_call(context(), name(), name(), list(), kwargs(), timeout_ms()) ->
    {ok, term()} | {error, error()}.
ctx_call(Ctx, Module, Function, Args, Kwargs, Timeout) ->
    ?PY:call(Ctx, Module, Function, Args, [{kwargs, Kwargs}, {timeout, Timeout}]).

%% @doc Evaluates an expression on `Ctx'.
%%
%% ```
%% {ok, 2} = py:ctx_eval(py:context(1), <<"1 + 1">>).
%% '''
-spec ctx_eval(context(), code()) -> {ok, term()} | {error, error()}.
ctx_eval(Ctx, Code) ->
    ?PY:eval(Ctx, Code, #{}, []).

%% @doc Evaluates an expression on `Ctx' with local variables.
%%
%% ```
%% {ok, 3} = py:ctx_eval(py:context(1), <<"x + 1">>, #{x => 2}).
%% '''
-spec ctx_eval(context(), code(), locals()) -> {ok, term()} | {error, error()}.
ctx_eval(Ctx, Code, Locals) ->
    ?PY:eval(Ctx, Code, Locals, []).

%% @doc Evaluates an expression on `Ctx' with local variables and a timeout in
%% milliseconds.
%%
%% ```
%% {ok, 3} = py:ctx_eval(py:context(1), <<"x + 1">>, #{x => 2}, 5000).
%% '''
-spec ctx_eval(context(), code(), locals(), timeout_ms()) -> {ok, term()} | {error, error()}.
ctx_eval(Ctx, Code, Locals, Timeout) ->
    ?PY:eval(Ctx, Code, Locals, [{timeout, Timeout}]).

%% @doc Runs statements on `Ctx'.
%%
%% ```
%% ok = py:ctx_exec(py:context(1), <<"x = 1">>).
%% '''
-spec ctx_exec(context(), code()) -> ok | {error, error()}.
ctx_exec(Ctx, Code) ->
    ?PY:exec(Ctx, Code, []).

%% @doc Re-imports `Module' from its source in every context.
%%
%% ```
%% ok = py:reload(json).
%% '''
-spec reload(name()) -> ok | {error, error()}.
reload(Module) ->
    ?PY:reload(Module).
