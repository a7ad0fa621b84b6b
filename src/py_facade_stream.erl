%% @private
%% @doc Generators read to a list for {@link py}'s `stream/3,4',
%% `stream_eval/1,2' and `async_stream/3,4' (`Py.stream').
-module(py_facade_stream).

-export([stream/3, stream/4, stream_eval/1, stream_eval/2]).

-import(py_dialect, [name/1, in/1, in_locals/1, in_kwargs/1, result/1]).

-define(PY, 'Elixir.Py').

stream(Module, Func, Args) ->
    stream(Module, Func, Args, #{}).

stream(Module, Func, Args, Kwargs) ->
    to_list(fun() -> ?PY:stream(name(Module), name(Func), in(Args),
                                [{kwargs, in_kwargs(Kwargs)}])
            end).

stream_eval(Code) ->
    stream_eval(Code, #{}).

stream_eval(Code, Locals) ->
    to_list(fun() -> ?PY:stream_eval(Code, [{locals, in_locals(Locals)}]) end).

%% A stream's items as `{ok, List}', or its failure as `{error, Reason}'.
to_list(MakeStream) ->
    Stream = MakeStream(),
    try 'Elixir.Enum':to_list(Stream) of
        List -> result({ok, List})
    catch
        error:#{'__struct__' := 'Elixir.Py.Error'} = Error -> result({error, Error})
    end.
