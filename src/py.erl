%% @doc Erlang interface to pybridge, compatible with erlang_python 4.1's
%% `py' module: a program written against erlang_python runs on pybridge
%% after swapping the dependency.
%%
%% This module translates and delegates; the one implementation is the
%% Elixir modules `Py' and `Py.Context' (see their documentation and the
%% "Erlang" guide, which lists every difference from erlang_python). Values
%% cross in erlang_python's shapes: Python `None' is `none' (and `none',
%% `nil' and `undefined' become `None'), `{bytes, Bin}' is Python `bytes',
%% module and function names are atoms, binaries or strings.
%%
%% == Contexts ==
%% A context is a pid, as in erlang_python: `context/0,1' return it,
%% every `Ctx' argument takes it (a `Py.Context' map is accepted too), and
%% `erlang:monitor(process, Ctx)' reports `shutdown' when the context closes.
%% Calls never pass through that process.
%%
%% == Errors ==
%% Every call returns `{error, Reason}' on failure, with `Reason' one of:
%% <ul>
%% <li>`{TypeAtom, Message}': Python raised; `TypeAtom' is the exception's
%%     class name (`` 'ValueError' ''), `Message' its text as a string
%%     (`{'StopIteration', none}' for `StopIteration'). The traceback is in
%%     {@link last_error/0}.</li>
%% <li>`timeout': the call ran past its timeout and was interrupted.</li>
%% <li>`{Kind, Message}' with a lowercase `Kind' when pybridge itself gave
%%     up: one of `Py.Error.kinds()', described in `Py.Error'. Calls return
%%     `conversion' (a value has no counterpart on the other side), `closed'
%%     (the context was closed, or the pid is not a context),
%%     `not_started' (Python is not running), `badarg' and `internal' (a
%%     bug, caught); {@link subinterp_create/0} returns `context_failed'.
%%     Python class names are capitalised, so the two never collide.</li>
%% </ul>
%% Bad arguments on the Erlang side (a name that is not an atom, binary or
%% string, arguments that are not a list) raise an `error' exception.
%%
%% ```
%% {ok, 2} = py:eval(<<"1 + 1">>),
%% {ok, 4.0} = py:call(math, sqrt, [16]),
%% {ok, none} = py:eval(<<"None">>),
%% {error, {'ZeroDivisionError', "division by zero"}} = py:eval(<<"1 / 0">>),
%% Ctx = py:context(1),
%% ok = py:exec(Ctx, <<"counter = 1">>),
%% {ok, 1} = py:eval(Ctx, <<"counter">>).
%% '''
-module(py).

-export([
    %% erlang_python 4.1
    call/3, call/4, call/5,
    cast/3, cast/4, cast/5,
    spawn_call/3, spawn_call/4, spawn_call/5,
    await/1, await/2,
    eval/1, eval/2, eval/3,
    exec/1, exec/2,
    stream/3, stream/4,
    stream_eval/1, stream_eval/2,
    async_call/3, async_call/4,
    async_await/1, async_await/2,
    async_gather/1,
    async_stream/3, async_stream/4,
    version/0,
    memory_stats/0,
    gc/0, gc/1,
    tracemalloc_start/0, tracemalloc_start/1,
    tracemalloc_stop/0,
    activate_venv/1,
    deactivate_venv/0,
    venv_info/0,
    ensure_venv/2, ensure_venv/3,
    parallel/1,
    subinterp_supported/0,
    execution_mode/0,
    reload/1,
    context/0, context/1,
    start_contexts/0, start_contexts/1,
    stop_contexts/0,
    contexts_started/0,
    call_method/3,
    getattr/2,
    to_term/1,
    is_ref/1,
    register_pool/2,
    unregister_pool/1,
    register_function/2, register_function/3,
    unregister_function/1,
    %% erlang_python before 3.0 (moved to py_import or removed since)
    ensure_imported/1, ensure_imported/2,
    is_imported/1, is_imported/2,
    import_stats/0,
    import_list/0,
    num_executors/0,
    subinterp_create/0, subinterp_destroy/1,
    subinterp_call/4, subinterp_call/5,
    subinterp_eval/2, subinterp_eval/3,
    subinterp_exec/2,
    subinterp_cast/4,
    subinterp_async_call/4,
    subinterp_await/1, subinterp_await/2,
    subinterp_pool_start/0, subinterp_pool_start/1,
    subinterp_pool_stop/0,
    subinterp_pool_ready/0,
    subinterp_pool_stats/0,
    %% pybridge additions
    last_error/0,
    bind/0, bind/1,
    unbind/0, unbind/1,
    with_context/1,
    ctx_call/4, ctx_call/5, ctx_call/6,
    ctx_eval/2, ctx_eval/3, ctx_eval/4,
    ctx_exec/2,
    %% SharedDict and the State API
    shared_dict_new/0, shared_dict_new/1,
    shared_dict_get/2, shared_dict_get/3,
    shared_dict_set/3, shared_dict_set/4,
    shared_dict_del/2,
    shared_dict_keys/1,
    shared_dict_destroy/1,
    state_store/2, state_fetch/1, state_remove/1, state_keys/0, state_clear/0,
    state_incr/1, state_incr/2, state_decr/1, state_decr/2
]).

-export_type([py_result/0, py_ref/0, context/0, reason/0, name/0]).

%% Each function delegates to the module owning its concept, py_facade_*:
%% call (call, eval, exec, ctx_*), async, stream, runtime, contexts,
%% callback, subinterp, shared_dict, state. py_dialect translates values.
%% (Not py_state, py_stream...: erlang_python has modules of those names.)
-import(py_dialect, [name/1, in/1, result/1]).

-define(PY, 'Elixir.Py').

-type context() :: pid().
%% A context, as returned by `context/0,1'.

-type reason() :: {atom(), string() | none} | timeout.
%% See "Errors" above.

-type py_result() :: {ok, term()} | {error, reason()}.

-type py_ref() :: map().
%% A handle on a Python object with no plain Erlang counterpart: a
%% `'Elixir.Py.Object'' struct (a map whose `'__struct__'' is that atom).
%% (Written as map() because ExDoc cannot render the struct's map type.)

-type ctx_arg() :: context() | map().
%% A context: its pid, or a `'Elixir.Py.Context'' struct.
-type name() :: atom() | binary() | string().
-type code() :: binary() | string().
-type locals() :: #{atom() | binary() => term()}.
-type kwargs() :: #{atom() | binary() => term()} | [{atom() | binary(), term()}].

%%====================================================================
%% call
%%====================================================================

%% @doc Calls `Module:Func(Args...)' in Python on the caller's context (or
%% the pool `Module' is routed to with {@link register_pool/2}), with the
%% default timeout (`config :pybridge, timeout', 30 s unless set).
%%
%% Returns `{ok, Value}' or `{error, Reason}' (see "Errors").
%%
%% ```
%% {ok, 4.0} = py:call(math, sqrt, [16]),
%% {ok, <<"a/b">>} = py:call("os.path", <<"join">>, [<<"a">>, <<"b">>]).
%% '''
-spec call(name(), name(), list()) -> py_result().
call(Module, Func, Args) -> py_facade_call:call(Module, Func, Args).

%% @doc `call(Ctx, Module, Func, Args)' calls on the context `Ctx' with no
%% timeout (as erlang_python); `call(Pool, Module, Func, Args)' calls on the
%% caller's context of the pool `Pool' (the function name must then be an
%% atom or binary); `call(Module, Func, Args, Kwargs)' calls with keyword
%% arguments (a map or a proplist).
%%
%% Returns `{ok, Value}' or `{error, Reason}' (see "Errors").
%%
%% ```
%% {ok, 255} = py:call(builtins, int, [<<"ff">>], #{base => 16}),
%% {ok, 3.0} = py:call(py:context(1), math, sqrt, [9]),
%% {ok, 2.0} = py:call(default, math, sqrt, [4]).
%% '''
-spec call(ctx_arg(), name(), name(), list()) -> py_result();
          (atom(), name(), atom() | binary(), list()) -> py_result();
          (name(), name(), list(), kwargs()) -> py_result().
call(Ctx, Module, Func, Args) -> py_facade_call:call(Ctx, Module, Func, Args).

%% @doc `call(Ctx, Module, Func, Args, Opts)' calls on `Ctx' with the options
%% map `#{kwargs => Kwargs, timeout => Ms}' (no timeout unless given), plus
%% pybridge's `coalesce => true | Key' and `group => Group' (concurrent
%% identical calls share one execution: `Py.Coalesce'); other keys raise an
%% `error' exception;
%% `call(Pool, Module, Func, Args, Kwargs)' calls on `Pool' with keyword
%% arguments; `call(Module, Func, Args, Kwargs, Timeout)' calls with keyword
%% arguments and a timeout in milliseconds (or `infinity').
%%
%% Returns `{ok, Value}' or `{error, Reason}' (see "Errors"); `{error,
%% timeout}' when the timeout passed.
%%
%% ```
%% {ok, 255} = py:call(builtins, int, [<<"ff">>], #{base => 16}, 5000),
%% {ok, 3} = py:call(py:context(1), builtins, int, [<<"11">>], #{kwargs => #{base => 2}}).
%% '''
-spec call(ctx_arg(), name(), name(), list(), map()) -> py_result();
          (atom(), name(), atom() | binary(), list(), kwargs()) -> py_result();
          (name(), name(), list(), kwargs(), timeout()) -> py_result().
call(Ctx, Module, Func, Args, Opts) -> py_facade_call:call(Ctx, Module, Func, Args, Opts).

%%====================================================================
%% eval / exec
%%====================================================================

%% @doc Evaluates a Python expression in the caller's namespace of its
%% context, with the default timeout.
%%
%% Returns `{ok, Value}' or `{error, Reason}' (see "Errors").
%%
%% ```
%% {ok, 3} = py:eval(<<"1 + 2">>),
%% {ok, 3} = py:eval("1 + 2").
%% '''
-spec eval(code()) -> py_result().
eval(Code) -> py_facade_call:eval(Code).

%% @doc `eval(Ctx, Code)' evaluates on the context `Ctx' (no timeout);
%% `eval(Code, Locals)' evaluates with the variables `Locals', visible to
%% this evaluation only.
%%
%% Returns `{ok, Value}' or `{error, Reason}' (see "Errors").
%%
%% ```
%% {ok, 6} = py:eval(<<"x * y">>, #{x => 2, y => 3}),
%% {ok, 2} = py:eval(py:context(1), <<"1 + 1">>).
%% '''
-spec eval(ctx_arg(), code()) -> py_result();
          (code(), locals()) -> py_result().
eval(Ctx, Code) -> py_facade_call:eval(Ctx, Code).

%% @doc `eval(Ctx, Code, Locals)' evaluates on `Ctx' with `Locals' (no
%% timeout); `eval(Code, Locals, Timeout)' evaluates with a timeout in
%% milliseconds (or `infinity').
%%
%% Returns `{ok, Value}' or `{error, Reason}' (see "Errors"); `{error,
%% timeout}' when the timeout passed.
%%
%% ```
%% {ok, 2} = py:eval(<<"x + 1">>, #{x => 1}, 5000),
%% {error, timeout} = py:eval(<<"__import__('time').sleep(1)">>, #{}, 50).
%% '''
-spec eval(ctx_arg(), code(), locals()) -> py_result();
          (code(), locals(), timeout()) -> py_result().
eval(Ctx, Code, Locals) -> py_facade_call:eval(Ctx, Code, Locals).

%% @doc Runs Python statements in the caller's namespace of its context:
%% what they assign stays visible to the caller's later calls there.
%%
%% Returns `ok' or `{error, Reason}' (see "Errors").
%%
%% ```
%% ok = py:exec(<<"x = 42">>),
%% {ok, 42} = py:eval(<<"x">>).
%% '''
-spec exec(code()) -> ok | {error, reason()}.
exec(Code) -> py_facade_call:exec(Code).

%% @doc Runs Python statements on the context `Ctx' (no timeout).
%%
%% Returns `ok' or `{error, Reason}' (see "Errors").
%%
%% ```
%% ok = py:exec(py:context(1), <<"counter = 0">>).
%% '''
-spec exec(ctx_arg(), code()) -> ok | {error, reason()}.
exec(Ctx, Code) -> py_facade_call:exec(Ctx, Code).

%%====================================================================
%% Asynchronous calls
%%====================================================================

%% @doc Starts `Module:Func(Args...)' in a new process and returns `ok'
%% at once; the result is dropped.
%%
%% ```
%% ok = py:cast(builtins, print, [<<"hello">>]).
%% '''
-spec cast(name(), name(), list()) -> ok.
cast(Module, Func, Args) -> py_facade_async:cast(Module, Func, Args).

%% @doc `cast(Ctx, Module, Func, Args)' on the context `Ctx';
%% `cast(Module, Func, Args, Kwargs)' with keyword arguments. Returns `ok'.
-spec cast(ctx_arg(), name(), name(), list()) -> ok;
          (name(), name(), list(), kwargs()) -> ok.
cast(Ctx, Module, Func, Args) -> py_facade_async:cast(Ctx, Module, Func, Args).

%% @doc `cast(Ctx, Module, Func, Args, Kwargs)': on `Ctx' with keyword
%% arguments. Returns `ok'.
-spec cast(ctx_arg(), name(), name(), list(), kwargs()) -> ok.
cast(Ctx, Module, Func, Args, Kwargs) ->
    py_facade_async:cast(Ctx, Module, Func, Args, Kwargs).

%% @doc Starts `Module:Func(Args...)' in a new process and returns a
%% reference for `await/1,2'.
%%
%% ```
%% Ref = py:spawn_call(math, sqrt, [16]),
%% {ok, 4.0} = py:await(Ref).
%% '''
-spec spawn_call(name(), name(), list()) -> reference().
spawn_call(Module, Func, Args) -> py_facade_async:spawn_call(Module, Func, Args).

%% @doc `spawn_call(Ctx, Module, Func, Args)' on the context `Ctx';
%% `spawn_call(Module, Func, Args, Kwargs)' with keyword arguments.
-spec spawn_call(ctx_arg(), name(), name(), list()) -> reference();
                (name(), name(), list(), kwargs()) -> reference().
spawn_call(Ctx, Module, Func, Args) -> py_facade_async:spawn_call(Ctx, Module, Func, Args).

%% @doc `spawn_call(Ctx, Module, Func, Args, Kwargs)': on `Ctx' with keyword
%% arguments.
-spec spawn_call(ctx_arg(), name(), name(), list(), kwargs()) -> reference().
spawn_call(Ctx, Module, Func, Args, Kwargs) ->
    py_facade_async:spawn_call(Ctx, Module, Func, Args, Kwargs).

%% @doc Waits up to 30 s for the result of `spawn_call/3,4,5'.
%%
%% Returns the call's result, or `{error, timeout}'.
-spec await(reference()) -> py_result().
await(Ref) -> py_facade_async:spawn_await(Ref).

%% @doc Waits up to `Timeout' milliseconds for the result of
%% `spawn_call/3,4,5'.
%%
%% Returns the call's result, or `{error, timeout}' (the call keeps running;
%% its late reply stays in the mailbox).
-spec await(reference(), timeout()) -> py_result().
await(Ref, Timeout) -> py_facade_async:spawn_await(Ref, Timeout).

%%====================================================================
%% Streams
%%====================================================================

%% @doc Calls the generator function `Module:Func(Args...)' and returns all
%% it yields as a list (an async generator too). The items are fetched in
%% batches, as `Py.stream/4' does.
%%
%% Returns `{ok, List}' or `{error, Reason}' (see "Errors").
%%
%% ```
%% {ok, [0, 1, 2]} = py:stream(builtins, range, [3]).
%% '''
-spec stream(name(), name(), list()) -> py_result().
stream(Module, Func, Args) -> py_facade_stream:stream(Module, Func, Args).

%% @doc Like {@link stream/3}, with keyword arguments.
-spec stream(name(), name(), list(), kwargs()) -> py_result().
stream(Module, Func, Args, Kwargs) -> py_facade_stream:stream(Module, Func, Args, Kwargs).

%% @doc Evaluates an expression giving an iterable (a generator expression)
%% and returns its items as a list.
%%
%% Returns `{ok, List}' or `{error, Reason}' (see "Errors").
%%
%% ```
%% {ok, [0, 2, 4]} = py:stream_eval(<<"(x * 2 for x in range(3))">>).
%% '''
-spec stream_eval(code()) -> py_result().
stream_eval(Code) -> py_facade_stream:stream_eval(Code).

%% @doc Like {@link stream_eval/1}, with local variables.
-spec stream_eval(code(), locals()) -> py_result().
stream_eval(Code, Locals) -> py_facade_stream:stream_eval(Code, Locals).

%%====================================================================
%% asyncio
%%====================================================================

%% @doc Starts `Module:Func(Args...)', an `async def' function (any other
%% runs like {@link call/3}), and returns a reference at once; collect the
%% result with `async_await/1,2'. The coroutine runs on the
%% interpreter's event loop and holds no context thread while it waits.
%%
%% ```
%% Ref = py:async_call(asyncio, sleep, [0, 42]),
%% {ok, 42} = py:async_await(Ref).
%% '''
-spec async_call(name(), name(), list()) -> reference().
async_call(Module, Func, Args) -> py_facade_async:call(Module, Func, Args).

%% @doc Like {@link async_call/3}, with keyword arguments.
-spec async_call(name(), name(), list(), kwargs()) -> reference().
async_call(Module, Func, Args, Kwargs) -> py_facade_async:call(Module, Func, Args, Kwargs).

%% @doc Waits up to 30 s for the result of `async_call/3,4'.
-spec async_await(reference()) -> py_result().
async_await(Ref) -> py_facade_async:await(Ref).

%% @doc Waits up to `Timeout' milliseconds for the result of
%% `async_call/3,4': the call's result, or `{error, timeout}', in which
%% case the coroutine is cancelled (`CancelledError' inside it). A reference
%% of `spawn_call/3,4,5' is awaited as {@link await/2} does.
-spec async_await(reference(), timeout()) -> py_result().
async_await(Ref, Timeout) -> py_facade_async:await(Ref, Timeout).

%% @doc Runs the calls `[{Module, Func, Args}]' concurrently (coroutines
%% overlap on the event loop) and waits up to 30 s for all of them.
%%
%% Returns `{ok, Results}' in the calls' order, or the first failure's
%% `{error, Reason}'.
%%
%% ```
%% {ok, [1, 2]} = py:async_gather([{asyncio, sleep, [0, 1]}, {asyncio, sleep, [0, 2]}]).
%% '''
-spec async_gather([{name(), name(), list()}]) -> py_result().
async_gather(Calls) -> py_facade_async:gather(Calls).

%% @doc All that the async generator `Module:Func(Args...)' yields, as a
%% list (a plain generator too).
%%
%% Returns `{ok, List}' or `{error, Reason}' (see "Errors").
-spec async_stream(name(), name(), list()) -> py_result().
async_stream(Module, Func, Args) -> py_facade_stream:stream(Module, Func, Args).

%% @doc Like {@link async_stream/3}, with keyword arguments.
-spec async_stream(name(), name(), list(), kwargs()) -> py_result().
async_stream(Module, Func, Args, Kwargs) ->
    py_facade_stream:stream(Module, Func, Args, Kwargs).

%%====================================================================
%% Interpreter information
%%====================================================================

%% @doc The running Python's `sys.version'.
%%
%% Returns `{ok, Binary}', or `{error, {not_started, Message}}' when Python
%% is not running.
%%
%% ```
%% {ok, <<"3.", _/binary>>} = py:version().
%% '''
-spec version() -> {ok, binary()} | {error, reason()}.
version() -> py_facade_runtime:version().

%% @doc Python's memory statistics (`Py.memory_stats/0'): a map with
%% `gc_stats' (one map per generation), `gc_count' and `gc_threshold'
%% (tuples), `objects' (tracked by the collector), `rss' (bytes, or `none'),
%% and, while `tracemalloc' is tracing, `traced_memory_current',
%% `traced_memory_peak' (bytes) and `tracemalloc_top' (maps with `file',
%% `line', `size', `count'). The maps in lists have binary keys, as in
%% erlang_python.
%%
%% Returns `{ok, Map}' or `{error, Reason}' (see "Errors").
-spec memory_stats() -> {ok, map()} | {error, reason()}.
memory_stats() -> py_facade_runtime:memory_stats().

%% @doc Runs a full garbage collection (`gc.collect()') in every
%% interpreter.
%%
%% Returns `{ok, Unreachable}' (the number of unreachable objects found) or
%% `{error, Reason}' (see "Errors").
-spec gc() -> {ok, non_neg_integer()} | {error, reason()}.
gc() -> py_facade_runtime:gc().

%% @doc Collects generations `0' to `Generation' (0, 1 or 2) in every
%% interpreter.
%%
%% Returns `{ok, Unreachable}' or `{error, Reason}' (see "Errors").
-spec gc(0..2) -> {ok, non_neg_integer()} | {error, reason()}.
gc(Generation) -> py_facade_runtime:gc(Generation).

%% @doc Starts `tracemalloc' with one frame per allocation.
-spec tracemalloc_start() -> ok | {error, reason()}.
tracemalloc_start() -> py_facade_runtime:tracemalloc_start().

%% @doc Starts `tracemalloc' keeping `Frames' frames per allocation.
-spec tracemalloc_start(pos_integer()) -> ok | {error, reason()}.
tracemalloc_start(Frames) -> py_facade_runtime:tracemalloc_start(Frames).

%% @doc Stops `tracemalloc' and frees its traces.
-spec tracemalloc_stop() -> ok | {error, reason()}.
tracemalloc_stop() -> py_facade_runtime:tracemalloc_stop().

%%====================================================================
%% Virtual environments
%%====================================================================

%% @doc Activates the venv at `Path' in every interpreter
%% (`Py.activate_venv/1'): its packages become importable in every context.
%%
%% Returns `ok', or `{error, {venv_not_found, Message}}' when `Path' is not
%% a venv for the running Python.
-spec activate_venv(file:filename_all()) -> ok | {error, reason()}.
activate_venv(Path) -> py_facade_runtime:activate_venv(Path).

%% @doc Deactivates the venv {@link activate_venv/1} activated.
-spec deactivate_venv() -> ok | {error, reason()}.
deactivate_venv() -> py_facade_runtime:deactivate_venv().

%% @doc The venv active at run time, as erlang_python's map: `<<"active">>',
%% and while one is, `<<"venv_path">>' and `<<"site_packages">>' (its first
%% site-packages directory); `<<"sys_path">>' always.
-spec venv_info() -> {ok, #{binary() => term()}} | {error, reason()}.
venv_info() -> py_facade_runtime:venv_info().

%% @doc Creates the venv at `Path' when missing, installs the requirements
%% file `Requirements' into it, and activates it (`Py.ensure_venv/3').
-spec ensure_venv(file:filename_all(), file:filename_all()) -> ok | {error, reason()}.
ensure_venv(Path, Requirements) -> py_facade_runtime:ensure_venv(Path, Requirements).

%% @doc {@link ensure_venv/2} with options: `{installer, pip | uv}',
%% `force' (recreate the venv).
-spec ensure_venv(file:filename_all(), file:filename_all(), list()) -> ok | {error, reason()}.
ensure_venv(Path, Requirements, Opts) ->
    py_facade_runtime:ensure_venv(Path, Requirements, Opts).

%% @doc Whether contexts can run in sub-interpreters with their own GIL
%% (CPython 3.12 or newer).
-spec subinterp_supported() -> boolean().
subinterp_supported() -> py_facade_runtime:subinterp_supported().

%% @doc How the default pool's contexts run: `worker' (in the main
%% interpreter, pybridge's `context_mode: main') or `owngil' (each in a
%% sub-interpreter with its own GIL, `context_mode: subinterpreter').
-spec execution_mode() -> worker | owngil.
execution_mode() -> py_facade_runtime:execution_mode().

%% @doc Runs the calls `[{Module, Func, Args}]' concurrently, spread over the
%% default pool's contexts, and returns their values in order. CPU-bound
%% Python only runs in parallel on sub-interpreter contexts or a
%% free-threaded Python; calls that release the GIL always overlap.
%%
%% Returns `{ok, Values}', or the first failed call's `{error, Reason}'
%% (see "Errors"); `{error, timeout}' for a call still running after 30 s.
%%
%% ```
%% {ok, [2.0, 3.0]} = py:parallel([{math, sqrt, [4]}, {math, sqrt, [9]}]).
%% '''
-spec parallel([{name(), name(), list()}]) -> {ok, list()} | {error, reason()}.
parallel(Calls) -> py_facade_async:parallel(Calls).

%% @doc Re-imports `Module' from its source in every context.
%%
%% Returns `ok', or `{error, [{context, Reason}]}' with the first failure
%% (`Reason' as in "Errors").
%%
%% ```
%% ok = py:reload(json),
%% ok = py:reload("json").
%% '''
-spec reload(name()) -> ok | {error, [{context, reason()}]}.
reload(Module) -> py_facade_runtime:reload(Module).

%%====================================================================
%% Contexts
%%====================================================================

%% @doc The caller's context: its bound one, else one of the default pool
%% picked from the caller's pid (always the same for a process).
%%
%% ```
%% Ctx = py:context(),
%% true = is_pid(Ctx).
%% '''
-spec context() -> context().
context() -> py_facade_contexts:context().

%% @doc `context(N)': context number `N' (1-based) of the default pool;
%% `context(Pool)': the caller's context in the pool `Pool'. Raises an
%% `error' exception when there is no such context.
%%
%% ```
%% Ctx = py:context(1).
%% '''
-spec context(pos_integer() | atom()) -> context().
context(IndexOrPool) -> py_facade_contexts:context(IndexOrPool).

%% @doc Starts the context pools if they are stopped, with the application
%% settings.
%%
%% Returns `{ok, Contexts}' (the default pool's) or `{error, Reason}'.
-spec start_contexts() -> {ok, [context()]} | {error, term()}.
start_contexts() -> py_facade_contexts:start_contexts().

%% @doc Starts the context pools if they are stopped, with `#{contexts =>
%% N, mode => worker | owngil}' over the application settings. When they
%% run already, nothing changes.
%%
%% Returns `{ok, Contexts}' (the default pool's) or `{error, Reason}'.
-spec start_contexts(#{contexts => pos_integer(), mode => worker | owngil}) ->
    {ok, [context()]} | {error, term()}.
start_contexts(Opts) -> py_facade_contexts:start_contexts(Opts).

%% @doc Stops every context pool: their contexts close and their pids exit
%% with `shutdown'. Returns `ok'.
-spec stop_contexts() -> ok.
stop_contexts() -> py_facade_contexts:stop_contexts().

%% @doc Whether the default context pool is running.
-spec contexts_started() -> boolean().
contexts_started() -> py_facade_contexts:contexts_started().

%% @doc Routes calls of `Module' (or of `{Module, Func}') made with the
%% routed forms of `call/3,4,5' to the pool `Pool'. Returns `ok'.
%%
%% ```
%% ok = py:register_pool(default, json),
%% ok = py:unregister_pool(json).
%% '''
-spec register_pool(atom(), name() | {name(), name()}) -> ok.
register_pool(Pool, Module) -> py_facade_contexts:register_pool(Pool, Module).

%% @doc Removes a routing made with {@link register_pool/2}. Returns `ok'.
-spec unregister_pool(name() | {name(), name()}) -> ok.
unregister_pool(Module) -> py_facade_contexts:unregister_pool(Module).

%%====================================================================
%% Callbacks (Python -> Erlang)
%%====================================================================

%% @doc Registers `Fun' under `Name' for Python to call:
%% `erlang.call("name", *args)', `erlang.name(*args)' or
%% `from erlang import name'. `Fun' takes one argument, the list of
%% Python's arguments (in erlang_python's values: `None' is `none'); its
%% result goes back to Python (`none' and `undefined' become `None').
%% `{Module, Function}' calls `Module:Function(Args)'. Returns `ok'.
%%
%% During a Python call the function runs in the calling process; from a
%% thread Python started itself, in pybridge's callback pool. An
%% exception, exit or throw becomes `erlang.Error' (`erlang.ExitError',
%% `erlang.ThrowError') in Python, with the reason in `.reason'.
%%
%% ```
%% ok = py:register_function(add, fun([A, B]) -> A + B end),
%% {ok, 3} = py:eval(<<"__import__('erlang').add(1, 2)">>).
%% '''
-spec register_function(name(), fun((list()) -> term()) | {module(), atom()}) -> ok.
register_function(Name, Fun) -> py_facade_callback:register_function(Name, Fun).

%% @doc Registers `Module:Function/1' under `Name': Python's
%% `erlang.name(*args)' runs `Module:Function(Args)'; see
%% {@link register_function/2}. Returns `ok'.
-spec register_function(name(), module(), atom()) -> ok.
register_function(Name, Module, Function) ->
    py_facade_callback:register_function(Name, Module, Function).

%% @doc Removes the function registered as `Name' (Python calling it then
%% gets `erlang.UnknownFunction'). Returns `ok', also when there was none.
-spec unregister_function(name()) -> ok.
unregister_function(Name) -> py_facade_callback:unregister_function(Name).

%%====================================================================
%% Object handles
%%====================================================================

%% @doc Calls method `Method' of the object `Ref'.
%%
%% Returns `{ok, Value}' or `{error, Reason}' (see "Errors").
%%
%% ```
%% {ok, Date} = py:call(datetime, date, [2024, 5, 17]),
%% {ok, <<"2024-05-17">>} = py:call_method(Date, isoformat, []).
%% '''
-spec call_method(py_ref(), name(), list()) -> py_result().
call_method(Ref, Method, Args) -> result(?PY:call_method(Ref, name(Method), in(Args))).

%% @doc Reads the attribute `Name' of the object `Ref'.
%%
%% Returns `{ok, Value}' or `{error, Reason}' (see "Errors").
%%
%% ```
%% {ok, Date} = py:call(datetime, date, [2024, 5, 17]),
%% {ok, 2024} = py:getattr(Date, year).
%% '''
-spec getattr(py_ref(), name()) -> py_result().
getattr(Ref, Name) -> result(?PY:getattr(Ref, name(Name))).

%% @doc The Erlang term for the object `Ref'. Handles only stand for objects
%% that have no plainer term, so this is `{ok, Ref}' for a handle; any other
%% term is returned as it is.
-spec to_term(term()) -> {ok, term()}.
to_term(Term) -> {ok, Term}.

%% @doc Whether `Term' is an object handle.
-spec is_ref(term()) -> boolean().
is_ref(#{'__struct__' := 'Elixir.Py.Object'}) -> true;
is_ref(_) -> false.

%%====================================================================
%% erlang_python before 3.0
%%
%% Functions erlang_python moved to py_import or removed; kept for older
%% programs. The subinterp_* handle functions are mapped onto dedicated
%% sub-interpreter contexts: the handle is a context pid.
%%====================================================================

%% @doc Same as {@link py_import:ensure_imported/1} (erlang_python 3.0 moved
%% it there).
-spec ensure_imported(name()) -> ok | {error, term()}.
ensure_imported(Module) -> py_import:ensure_imported(Module).

%% @doc Same as {@link py_import:ensure_imported/2}.
-spec ensure_imported(name(), name()) -> ok | {error, term()}.
ensure_imported(Module, Func) -> py_import:ensure_imported(Module, Func).

%% @doc Same as {@link py_import:is_imported/1}.
-spec is_imported(name()) -> boolean().
is_imported(Module) -> py_import:is_imported(Module).

%% @doc Same as {@link py_import:is_imported/2}.
-spec is_imported(name(), name()) -> boolean().
is_imported(Module, Func) -> py_import:is_imported(Module, Func).

%% @doc `{ok, #{count => N}}': how many imports are registered.
-spec import_stats() -> {ok, #{count := non_neg_integer()}}.
import_stats() -> {ok, #{count => length(py_import:all_imports())}}.

%% @doc Same as {@link py_import:import_list/0}.
-spec import_list() -> {ok, #{binary() => [binary()]}}.
import_list() -> py_import:import_list().

%% @doc The number of contexts in the default pool, which run the calls
%% (erlang_python 3.0 removed this function with its executors).
-spec num_executors() -> non_neg_integer().
num_executors() -> py_facade_contexts:num_executors().

%% @doc Starts a dedicated sub-interpreter context (its own interpreter and
%% GIL) owned by the caller, and returns it as the handle of the other
%% `subinterp_*' functions. It closes on {@link subinterp_destroy/1} or when
%% the caller exits.
%%
%% Returns `{ok, Ctx}', or `{error, {context_failed, Message}}' (before
%% Python 3.12).
-spec subinterp_create() -> {ok, context()} | {error, reason()}.
subinterp_create() -> py_facade_subinterp:create().

%% @doc Closes a context from {@link subinterp_create/0}. Returns `ok'.
-spec subinterp_destroy(context()) -> ok.
subinterp_destroy(Handle) -> py_facade_subinterp:destroy(Handle).

%% @doc Same as `call(Handle, Module, Func, Args)'.
-spec subinterp_call(context(), name(), name(), list()) -> py_result().
subinterp_call(Handle, Module, Func, Args) ->
    py_facade_subinterp:call(Handle, Module, Func, Args).

%% @doc Same as `call(Handle, Module, Func, Args, #{kwargs => Kwargs})'.
-spec subinterp_call(context(), name(), name(), list(), kwargs()) -> py_result().
subinterp_call(Handle, Module, Func, Args, Kwargs) ->
    py_facade_subinterp:call(Handle, Module, Func, Args, Kwargs).

%% @doc Same as `eval(Handle, Code)'.
-spec subinterp_eval(context(), code()) -> py_result().
subinterp_eval(Handle, Code) -> py_facade_subinterp:eval(Handle, Code).

%% @doc Same as `eval(Handle, Code, Locals)'.
-spec subinterp_eval(context(), code(), locals()) -> py_result().
subinterp_eval(Handle, Code, Locals) -> py_facade_subinterp:eval(Handle, Code, Locals).

%% @doc Same as `exec(Handle, Code)'.
-spec subinterp_exec(context(), code()) -> ok | {error, reason()}.
subinterp_exec(Handle, Code) -> py_facade_subinterp:exec(Handle, Code).

%% @doc Same as `cast(Handle, Module, Func, Args)'. Returns `ok'.
-spec subinterp_cast(context(), name(), name(), list()) -> ok.
subinterp_cast(Handle, Module, Func, Args) ->
    py_facade_subinterp:cast(Handle, Module, Func, Args).

%% @doc Starts `call(Handle, Module, Func, Args)' in a new process and
%% returns a reference for `subinterp_await/1,2'.
-spec subinterp_async_call(context(), name(), name(), list()) -> reference().
subinterp_async_call(Handle, Module, Func, Args) ->
    py_facade_subinterp:async_call(Handle, Module, Func, Args).

%% @doc Same as {@link await/1}.
-spec subinterp_await(reference()) -> py_result().
subinterp_await(Ref) -> py_facade_subinterp:await(Ref).

%% @doc Same as {@link await/2}.
-spec subinterp_await(reference(), timeout()) -> py_result().
subinterp_await(Ref, Timeout) -> py_facade_subinterp:await(Ref, Timeout).

%% @doc Sub-interpreter contexts start their own threads, so there is no
%% pool to start: `ok' where they are supported, else
%% `{error, subinterpreters_not_supported}'.
-spec subinterp_pool_start() -> ok | {error, subinterpreters_not_supported}.
subinterp_pool_start() -> py_facade_subinterp:pool_start().

%% @doc Same as {@link subinterp_pool_start/0}; the size is not used.
-spec subinterp_pool_start(non_neg_integer()) -> ok | {error, subinterpreters_not_supported}.
subinterp_pool_start(NumWorkers) -> py_facade_subinterp:pool_start(NumWorkers).

%% @doc Returns `ok': contexts from {@link subinterp_create/0} close with
%% {@link subinterp_destroy/1} or their owner.
-spec subinterp_pool_stop() -> ok.
subinterp_pool_stop() -> py_facade_subinterp:pool_stop().

%% @doc Same as {@link subinterp_supported/0}.
-spec subinterp_pool_ready() -> boolean().
subinterp_pool_ready() -> py_facade_subinterp:pool_ready().

%% @doc The open dedicated sub-interpreter contexts as erlang_python's pool
%% statistics: `#{num_workers, total_requests, total_errors, initialized}'.
-spec subinterp_pool_stats() -> #{atom() => non_neg_integer() | boolean()}.
subinterp_pool_stats() -> py_facade_subinterp:pool_stats().

%%====================================================================
%% pybridge additions
%%====================================================================

%% @doc The caller's last error from this module: `none', or a map with
%% the `reason' returned, the `type' (atom), `message' (binary) and
%% `traceback' (the formatted Python traceback as a binary, or `none').
%%
%% ```
%% {error, {'ZeroDivisionError', _}} = py:eval(<<"1 / 0">>),
%% #{type := 'ZeroDivisionError', traceback := <<"Traceback", _/binary>>} = py:last_error().
%% '''
-spec last_error() -> none | #{reason := reason(), type := atom(), message := binary(),
                               traceback := binary() | none}.
last_error() -> py_dialect:last_error().

%% @doc Binds the caller's current context to the calling process. Returns
%% `ok'.
-spec bind() -> ok.
bind() -> py_facade_contexts:bind().

%% @doc `bind(new)' starts a dedicated context owned by the caller and
%% returns `{ok, Ctx}' (closed by {@link unbind/1} or when the caller exits);
%% `bind(Ctx)' binds `Ctx' to the calling process and returns `ok'.
-spec bind(new) -> {ok, context()};
          (ctx_arg()) -> ok.
bind(Ctx) -> py_facade_contexts:bind(Ctx).

%% @doc Removes the calling process's binding. Returns `ok'.
-spec unbind() -> ok.
unbind() -> py_facade_contexts:unbind().

%% @doc Releases `Ctx': unbinds it if it is the caller's bound context, and
%% closes it if it is a dedicated context from {@link bind/1}. Returns `ok'.
-spec unbind(ctx_arg()) -> ok.
unbind(Ctx) -> py_facade_contexts:unbind(Ctx).

%% @doc Runs `Fun' with the caller's current context bound, restoring the
%% previous binding afterwards. Returns what `Fun' returns.
-spec with_context(fun(() -> Result)) -> Result.
with_context(Fun) -> py_facade_contexts:with_context(Fun).

%% @doc `call(Ctx, Module, Func, Args)' with the default timeout.
-spec ctx_call(ctx_arg(), name(), name(), list()) -> py_result().
ctx_call(Ctx, Module, Func, Args) -> py_facade_call:ctx_call(Ctx, Module, Func, Args).

%% @doc Calls on `Ctx' with keyword arguments and the default timeout.
-spec ctx_call(ctx_arg(), name(), name(), list(), kwargs()) -> py_result().
ctx_call(Ctx, Module, Func, Args, Kwargs) ->
    py_facade_call:ctx_call(Ctx, Module, Func, Args, Kwargs).

%% @doc Calls on `Ctx' with keyword arguments and a timeout.
-spec ctx_call(ctx_arg(), name(), name(), list(), kwargs(), timeout()) -> py_result().
ctx_call(Ctx, Module, Func, Args, Kwargs, Timeout) ->
    py_facade_call:ctx_call(Ctx, Module, Func, Args, Kwargs, Timeout).

%% @doc Evaluates on `Ctx' with the default timeout.
-spec ctx_eval(ctx_arg(), code()) -> py_result().
ctx_eval(Ctx, Code) -> py_facade_call:ctx_eval(Ctx, Code).

%% @doc Evaluates on `Ctx' with local variables and the default timeout.
-spec ctx_eval(ctx_arg(), code(), locals()) -> py_result().
ctx_eval(Ctx, Code, Locals) -> py_facade_call:ctx_eval(Ctx, Code, Locals).

%% @doc Evaluates on `Ctx' with local variables and a timeout.
-spec ctx_eval(ctx_arg(), code(), locals(), timeout()) -> py_result().
ctx_eval(Ctx, Code, Locals, Timeout) -> py_facade_call:ctx_eval(Ctx, Code, Locals, Timeout).

%% @doc Runs statements on `Ctx' with the default timeout.
-spec ctx_exec(ctx_arg(), code()) -> ok | {error, reason()}.
ctx_exec(Ctx, Code) -> py_facade_call:ctx_exec(Ctx, Code).

%%====================================================================
%% SharedDict (Py.SharedDict) and the State API (Py.State)
%%====================================================================

%% @doc A new SharedDict owned by the caller and destroyed when it exits
%% (see `Py.SharedDict'). Values go in as in calls and come back with
%% `none' for Python `None'; map keys come back as binaries.
%%
%% ```
%% {ok, SD} = py:shared_dict_new(),
%% ok = py:shared_dict_set(SD, <<"k">>, #{a => 1}),
%% #{<<"a">> := 1} = py:shared_dict_get(SD, <<"k">>).
%% '''
-spec shared_dict_new() -> {ok, map()}.
shared_dict_new() -> py_facade_shared_dict:new().

%% @doc A new SharedDict with options (a map or proplist): `name' (a named
%% dict, without owner, until destroyed), `max_entries', `evict' (`lru'),
%% `backend' (`memory', `{sqlite, Path}' for a file that survives
%% restarts, or `{redis, Url}' for a dict several nodes share through a
%% Redis server, `{redis, [Url, ...]}' for seed nodes of a Redis Cluster), `prefix', `pool_size'. Returns `{error, exists}' when the name
%% is taken, `{error, #{type := backend}}' (a `Py.Error') when the backend
%% cannot be opened.
-spec shared_dict_new(map() | list()) -> {ok, map()} | {error, exists | map()}.
shared_dict_new(Opts) -> py_facade_shared_dict:new(Opts).

%% @doc The value of `Key', or `undefined' when it is missing.
-spec shared_dict_get(map(), binary()) -> term().
shared_dict_get(SD, Key) -> py_facade_shared_dict:get(SD, Key).

%% @doc The value of `Key', or `Default' when it is missing.
-spec shared_dict_get(map(), binary(), term()) -> term().
shared_dict_get(SD, Key, Default) -> py_facade_shared_dict:get(SD, Key, Default).

%% @doc Stores `Value' under `Key': `ok', or `{error, full}'.
-spec shared_dict_set(map(), binary(), term()) -> ok | {error, term()}.
shared_dict_set(SD, Key, Value) -> py_facade_shared_dict:set(SD, Key, Value).

%% @doc Stores `Value' under `Key' with options: `ttl' in milliseconds.
-spec shared_dict_set(map(), binary(), term(), map() | list()) -> ok | {error, term()}.
shared_dict_set(SD, Key, Value, Opts) -> py_facade_shared_dict:set(SD, Key, Value, Opts).

%% @doc Removes `Key'; `ok' also when it is missing.
-spec shared_dict_del(map(), binary()) -> ok.
shared_dict_del(SD, Key) -> py_facade_shared_dict:del(SD, Key).

%% @doc The live keys.
-spec shared_dict_keys(map()) -> [binary()].
shared_dict_keys(SD) -> py_facade_shared_dict:keys(SD).

%% @doc Destroys the dict; later operations raise. Idempotent.
-spec shared_dict_destroy(map()) -> ok.
shared_dict_destroy(SD) -> py_facade_shared_dict:destroy(SD).

%% @doc Stores `Value' under `Key' in the global State (`Py.State').
-spec state_store(binary(), term()) -> ok.
state_store(Key, Value) -> py_facade_state:store(Key, Value).

%% @doc `{ok, Value}', or `{error, not_found}'.
-spec state_fetch(binary()) -> {ok, term()} | {error, not_found}.
state_fetch(Key) -> py_facade_state:fetch(Key).

%% @doc Removes `Key' from the State.
-spec state_remove(binary()) -> ok.
state_remove(Key) -> py_facade_state:remove(Key).

%% @doc Every key of the State.
-spec state_keys() -> [binary()].
state_keys() -> py_facade_state:keys().

%% @doc Removes every key of the State.
-spec state_clear() -> ok.
state_clear() -> py_facade_state:clear().

%% @doc Adds 1 to the counter `Key' atomically; returns the new value.
-spec state_incr(binary()) -> integer().
state_incr(Key) -> py_facade_state:incr(Key).

%% @doc Adds `By' to the counter `Key' atomically; returns the new value.
-spec state_incr(binary(), integer()) -> integer().
state_incr(Key, By) -> py_facade_state:incr(Key, By).

%% @doc Subtracts 1 from the counter `Key' atomically.
-spec state_decr(binary()) -> integer().
state_decr(Key) -> py_facade_state:decr(Key).

%% @doc Subtracts `By' from the counter `Key' atomically.
-spec state_decr(binary(), integer()) -> integer().
state_decr(Key, By) -> py_facade_state:decr(Key, By).
