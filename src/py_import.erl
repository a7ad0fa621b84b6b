%% @doc Erlang interface to pybridge's import and path registry, compatible
%% with erlang_python 4.1's `py_import'.
%%
%% Delegates to the Elixir module `Py.Imports': modules imported, and
%% directories put on `sys.path', in every interpreter now and in the
%% sub-interpreter contexts started later. Errors are as in {@link py}.
%%
%% ```
%% ok = py_import:add_path("/srv/app/python"),
%% ok = py_import:ensure_imported(json),
%% true = py_import:is_imported(json),
%% {ok, #{<<"json">> := []}} = py_import:import_list().
%% '''
-module(py_import).

-export([
    ensure_imported/1, ensure_imported/2,
    is_imported/1, is_imported/2,
    all_imports/0,
    clear_imports/0,
    import_list/0,
    add_path/1, add_paths/1,
    all_paths/0,
    clear_paths/0,
    is_path_added/1
]).

-define(IMPORTS, 'Elixir.Py.Imports').

%% @doc Imports `Module' in every interpreter and registers it for contexts
%% started later.
%%
%% Returns `ok', `{error, main_not_cacheable}' for `` '__main__' '', or the
%% import's `{error, Reason}' (see {@link py}; nothing is registered then).
-type name() :: atom() | binary() | string().
%% A module or function name.

-spec ensure_imported(name()) -> ok | {error, term()}.
ensure_imported(Module) ->
    ensure_imported(Module, all).

%% @doc Like {@link ensure_imported/1}, registering the function `Func' of
%% `Module' (the whole module is imported).
-spec ensure_imported(name(), name() | all) -> ok | {error, term()}.
ensure_imported(Module, Func) ->
    case py_dialect:name(Module) of
        Main when Main =:= '__main__'; Main =:= <<"__main__">> ->
            {error, main_not_cacheable};
        Name ->
            py_dialect:result(?IMPORTS:ensure(Name, func(Func)))
    end.

%% @doc Whether `Module' is registered.
-spec is_imported(name()) -> boolean().
is_imported(Module) ->
    ?IMPORTS:'imported?'(py_dialect:name(Module)).

%% @doc Whether `Module' is registered as a whole or with the function `Func'.
-spec is_imported(name(), name()) -> boolean().
is_imported(Module, Func) ->
    ?IMPORTS:'imported?'(py_dialect:name(Module), py_dialect:name(Func)).

%% @doc The registered imports: `[{Module, Func | all}]' with binary names,
%% in registration order.
-spec all_imports() -> [{binary(), binary() | all}].
all_imports() ->
    ?IMPORTS:list().

%% @doc Forgets the registered imports (imported modules stay). Returns `ok'.
-spec clear_imports() -> ok.
clear_imports() ->
    ?IMPORTS:clear().

%% @doc The registered imports by module: `{ok, #{Module => [Func]}}', where
%% `[]' means the module alone was registered.
-spec import_list() -> {ok, #{binary() => [binary()]}}.
import_list() ->
    {ok, lists:foldl(fun({Module, all}, Acc) -> Acc#{Module => maps:get(Module, Acc, [])};
                        ({Module, Func}, Acc) -> Acc#{Module => maps:get(Module, Acc, []) ++ [Func]}
                     end, #{}, ?IMPORTS:list())}.

%% @doc Appends `Path' to `sys.path' in every interpreter and registers it
%% for contexts started later.
%%
%% Returns `ok' or `{error, Reason}' (see {@link py}).
-spec add_path(string() | binary() | atom()) -> ok | {error, term()}.
add_path(Path) when is_atom(Path) ->
    add_path(atom_to_binary(Path));
add_path(Path) ->
    py_dialect:result(?IMPORTS:add_path(Path)).

%% @doc {@link add_path/1} for each path, in order.
%%
%% Returns `ok' or the first `{error, Reason}'.
-spec add_paths([string() | binary() | atom()]) -> ok | {error, term()}.
add_paths([]) ->
    ok;
add_paths([Path | Paths]) ->
    case add_path(Path) of
        ok -> add_paths(Paths);
        Error -> Error
    end.

%% @doc The registered paths, in order, as binaries.
-spec all_paths() -> [binary()].
all_paths() ->
    ?IMPORTS:paths().

%% @doc Forgets the registered paths (`sys.path' keeps them). Returns `ok'.
-spec clear_paths() -> ok.
clear_paths() ->
    ?IMPORTS:clear_paths().

%% @doc Whether `Path' is registered.
-spec is_path_added(string() | binary() | atom()) -> boolean().
is_path_added(Path) when is_atom(Path) ->
    is_path_added(atom_to_binary(Path));
is_path_added(Path) ->
    ?IMPORTS:'path_added?'(Path).

func(all) -> all;
func(Func) -> py_dialect:name(Func).
