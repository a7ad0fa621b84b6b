%% @private
%% @doc The interpreter for {@link py}: version, execution mode, memory
%% statistics, garbage collection, `tracemalloc', reloads and virtual
%% environments (`Py.Runtime' and its Elixir functions in `Py').
-module(py_facade_runtime).

-export([version/0, memory_stats/0, gc/0, gc/1, tracemalloc_start/0,
         tracemalloc_start/1, tracemalloc_stop/0, activate_venv/1, deactivate_venv/0,
         venv_info/0, ensure_venv/2, ensure_venv/3, subinterp_supported/0,
         execution_mode/0, reload/1]).

-import(py_dialect, [name/1, result/1]).

-define(PY, 'Elixir.Py').
-define(CTX, 'Elixir.Py.Context').

version() ->
    case 'Elixir.Py.Runtime':info() of
        #{version := Version} -> {ok, Version};
        nil -> {error, {not_started, "Python is not running"}}
    end.

memory_stats() ->
    case result(?PY:memory_stats()) of
        {ok, Stats} ->
            %% As erlang_python: the per-generation maps are Python's dicts,
            %% with binary keys.
            Binary = fun(M) -> maps:fold(fun(K, V, A) -> A#{atom_to_binary(K) => V} end,
                                         #{}, M) end,
            {ok, maps:map(fun(Key, List) when Key =:= gc_stats; Key =:= tracemalloc_top ->
                                  [Binary(M) || M <- List];
                             (_, V) -> V
                          end, Stats)};
        Error ->
            Error
    end.

gc() ->
    result(?PY:gc()).

gc(Generation) when Generation >= 0, Generation =< 2 ->
    result(?PY:gc(Generation)).

tracemalloc_start() ->
    result(?PY:tracemalloc_start()).

tracemalloc_start(Frames) when is_integer(Frames), Frames > 0 ->
    result(?PY:tracemalloc_start(Frames)).

tracemalloc_stop() ->
    result(?PY:tracemalloc_stop()).

activate_venv(Path) ->
    result(?PY:activate_venv(unicode:characters_to_binary(Path))).

deactivate_venv() ->
    result(?PY:deactivate_venv()).

venv_info() ->
    case ?PY:venv_info() of
        {ok, #{active := true, venv_path := Venv, site_packages := [Site | _], sys_path := Path}} ->
            {ok, #{<<"active">> => true, <<"venv_path">> => Venv,
                   <<"site_packages">> => Site, <<"sys_path">> => Path}};
        {ok, #{sys_path := Path}} ->
            {ok, #{<<"active">> => false, <<"sys_path">> => Path}};
        Error ->
            result(Error)
    end.

ensure_venv(Path, Requirements) ->
    ensure_venv(Path, Requirements, []).

ensure_venv(Path, Requirements, Opts) ->
    result(?PY:ensure_venv(unicode:characters_to_binary(Path),
                           unicode:characters_to_binary(Requirements),
                           [{K, V} || {K, V} <- proplists:unfold(Opts)])).

subinterp_supported() ->
    ?CTX:'subinterpreters_supported?'().

execution_mode() ->
    case ?CTX:info(?PY:context(1)) of
        #{mode := subinterpreter} -> owngil;
        #{mode := main} -> worker
    end.

reload(Module) ->
    case result(?PY:reload(name(Module))) of
        ok -> ok;
        {error, Reason} -> {error, [{context, Reason}]}
    end.
