%% @doc The translation between erlang_python's dialect and pybridge's Elixir
%% API, used by {@link py}, {@link py_context_router} and {@link py_import}:
%% values (`none', `{bytes, Bin}'), names, context pids, and results and
%% errors (one function, {@link result/1}), and SharedDict options and
%% results.
-module(py_dialect).

-export([ctx/1, ctx_or_none/1, ctx_run/2, pid_of/1,
         name/1, in/1, in_locals/1, in_kwargs/1, out/1,
         result/1, last_error/0, sd_options/1, sd_result/1]).

-define(LAST_ERROR, {py, last_error}).

%% @doc The caller's last error translated by {@link result/1}, or `none'
%% (see {@link py:last_error/0}).
-spec last_error() -> none | map().
last_error() ->
    case get(?LAST_ERROR) of
        undefined -> none;
        Error -> Error
    end.

%%====================================================================
%% Contexts: pid <-> Py.Context
%%====================================================================

%% @doc The `Py.Context' of a context pid (or a `Py.Context' map); raises
%% `error({badarg, {not_a_context, Ctx}})' when it is neither.
-spec ctx(term()) -> map().
ctx(Ctx) ->
    case ctx_or_none(Ctx) of
        none -> error({badarg, {not_a_context, Ctx}});
        C -> C
    end.

ctx_or_none(Pid) when is_pid(Pid) ->
    case 'Elixir.Py.Context':from_pid(Pid) of
        nil -> none;
        Ctx -> Ctx
    end;
ctx_or_none(#{'__struct__' := 'Elixir.Py.Context'} = Ctx) ->
    Ctx;
ctx_or_none(Other) ->
    error({badarg, {not_a_context, Other}}).

%% @doc Runs `Fun' on the `Py.Context' of `Ctx' and translates its result;
%% a pid that is no open context gives the same error as a closed context.
-spec ctx_run(term(), fun((map()) -> term())) -> term().
ctx_run(Ctx, Fun) ->
    case ctx_or_none(Ctx) of
        none ->
            result({error, 'Elixir.Py.Error':exception(
                [{type, closed},
                 {message, iolist_to_binary(io_lib:format(
                     "no open pybridge context has the pid ~p", [Ctx]))}])});
        C ->
            result(Fun(C))
    end.

%% @doc The pid standing for a `Py.Context'.
-spec pid_of(map()) -> pid().
pid_of(#{pid := Pid}) -> Pid.

%%====================================================================
%% Translation at the boundary
%%====================================================================

%% @doc Module, function and attribute names: atoms and binaries pass,
%% strings become binaries; anything else raises `error({badarg, {name, N}})'.
-spec name(py:name()) -> atom() | binary().
name(Name) when is_atom(Name); is_binary(Name) -> Name;
name(Name) when is_list(Name) ->
    case unicode:characters_to_binary(Name) of
        Bin when is_binary(Bin) -> Bin;
        _ -> error({badarg, {name, Name}})
    end;
name(Name) ->
    error({badarg, {name, Name}}).

%% @doc Locals: each value through {@link in/1}.
-spec in_locals(term()) -> term().
in_locals(Locals) when is_map(Locals) ->
    maps:map(fun(_K, V) -> in(V) end, Locals);
in_locals(Other) ->
    Other.

%% @doc Keyword arguments (map or proplist): each value through {@link in/1}.
-spec in_kwargs(term()) -> term().
in_kwargs(Kwargs) when is_map(Kwargs) ->
    maps:map(fun(_K, V) -> in(V) end, Kwargs);
in_kwargs(Kwargs) when is_list(Kwargs) ->
    [case KV of {K, V} -> {K, in(V)}; Other -> Other end || KV <- Kwargs];
in_kwargs(Other) ->
    Other.

%% @doc Arguments: erlang_python's spellings of `None' (`none',
%% `undefined') and bytes (`{bytes, Bin}') become pybridge's (`nil',
%% `Py.Bytes'). The term is rebuilt only when it holds one (most do not).
-spec in(term()) -> term().
in(Term) ->
    case needs_in(Term) of
        true -> in_(Term);
        false -> Term
    end.

needs_in(none) -> true;
needs_in(undefined) -> true;
needs_in({bytes, Bin}) when is_binary(Bin) -> true;
needs_in([H | T]) -> needs_in(H) orelse needs_in(T);
needs_in(T) when is_tuple(T) -> needs_in_tuple(T, tuple_size(T));
needs_in(#{'__struct__' := _}) -> false;
needs_in(M) when is_map(M) -> needs_in_map(maps:next(maps:iterator(M)));
needs_in(_) -> false.

needs_in_tuple(_T, 0) -> false;
needs_in_tuple(T, I) -> needs_in(element(I, T)) orelse needs_in_tuple(T, I - 1).

needs_in_map(none) -> false;
needs_in_map({K, V, I}) -> needs_in(K) orelse needs_in(V) orelse needs_in_map(maps:next(I)).

in_(none) -> nil;
in_(undefined) -> nil;
in_({bytes, Bin}) when is_binary(Bin) -> #{'__struct__' => 'Elixir.Py.Bytes', data => Bin};
in_([H | T]) -> [in_(H) | in_(T)];
in_(T) when is_tuple(T) -> list_to_tuple([in_(E) || E <- tuple_to_list(T)]);
in_(#{'__struct__' := _} = S) -> S;
in_(M) when is_map(M) -> maps:from_list([{in_(K), in_(V)} || {K, V} <- maps:to_list(M)]);
in_(Other) -> Other.

%% @doc Results: Python `None' (`nil') is `none'.
-spec out(term()) -> term().
out(Term) ->
    case needs_out(Term) of
        true -> out_(Term);
        false -> Term
    end.

needs_out(nil) -> true;
needs_out([H | T]) -> needs_out(H) orelse needs_out(T);
needs_out(T) when is_tuple(T) -> needs_out_tuple(T, tuple_size(T));
needs_out(#{'__struct__' := 'Elixir.Py.Object'}) -> false;
needs_out(M) when is_map(M) -> needs_out_map(maps:next(maps:iterator(M)));
needs_out(_) -> false.

needs_out_tuple(_T, 0) -> false;
needs_out_tuple(T, I) -> needs_out(element(I, T)) orelse needs_out_tuple(T, I - 1).

needs_out_map(none) -> false;
needs_out_map({K, V, I}) ->
    needs_out(K) orelse needs_out(V) orelse needs_out_map(maps:next(I)).

out_(nil) -> none;
out_([H | T]) -> [out_(H) | out_(T)];
out_(T) when is_tuple(T) -> list_to_tuple([out_(E) || E <- tuple_to_list(T)]);
out_(#{'__struct__' := 'Elixir.Py.Object'} = O) -> O;
out_(M) when is_map(M) -> maps:from_list([{out_(K), out_(V)} || {K, V} <- maps:to_list(M)]);
out_(Other) -> Other.

%% @doc The one translation of results: `Py''s `{ok, V} | ok | {error,
%% Py.Error}' into erlang_python's shapes (see "Errors" in {@link py}); an
%% error is also kept for {@link last_error/0}.
-spec result(ok | {ok, term()} | {error, map()}) -> ok | py:py_result().
result(ok) ->
    ok;
result({ok, Value}) ->
    {ok, out(Value)};
result({error, #{'__struct__' := 'Elixir.Py.Error', type := Type, message := Message} = E}) ->
    Reason = reason(Type, Message),
    put(?LAST_ERROR, #{reason => Reason,
                       type => type_atom(Type),
                       message => message_binary(Type, Message),
                       traceback => case maps:get(traceback, E, nil) of
                                        nil -> none;
                                        Tb -> Tb
                                    end}),
    {error, Reason}.

reason(timeout, _Message) -> timeout;
reason(<<"StopIteration">>, _Message) -> {'StopIteration', none};
reason(Type, Message) -> {type_atom(Type), message_string(Type, Message)}.

%% erlang_python names an exception by its class's __name__; Py.Error gives
%% the __qualname__ ("Outer.Inner"), whose last part that is.
type_atom(Type) when is_atom(Type) -> Type;
type_atom(Type) when is_binary(Type) ->
    binary_to_atom(lists:last(binary:split(Type, <<".">>, [global])), utf8).

%% An error without a message gets its kind's description (Py.Error).
message_binary(Type, nil) ->
    case 'Elixir.Py.Error':describe(Type) of
        nil -> <<>>;
        Description -> Description
    end;
message_binary(_Type, Message) when is_binary(Message) -> Message;
message_binary(_Type, Message) -> unicode:characters_to_binary(io_lib:format("~tp", [Message])).

message_string(Type, Message) ->
    Bin = message_binary(Type, Message),
    case unicode:characters_to_list(Bin) of
        List when is_list(List) -> List;
        _ -> binary_to_list(Bin)
    end.

%%====================================================================
%% SharedDict
%%====================================================================

%% @doc SharedDict and State options, a map or a proplist, as the keyword
%% list `Py.SharedDict' validates.
-spec sd_options(map() | list()) -> [{atom(), term()}].
sd_options(Opts) when is_map(Opts) -> maps:to_list(Opts);
sd_options(Opts) when is_list(Opts) -> [{K, V} || {K, V} <- proplists:unfold(Opts)].

%% @doc A SharedDict write's result: `ok', `{error, full | exists}', or a
%% `Py.Error' translated by {@link result/1}.
-spec sd_result(ok | {error, atom() | map()}) -> ok | {error, term()}.
sd_result({error, Reason}) when is_atom(Reason) -> {error, Reason};
sd_result(Result) -> result(Result).
