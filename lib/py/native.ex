defmodule Py.Native do
  @moduledoc false
  # The NIF boundary. Every function here is replaced by the Rust library in
  # native/pybridge once `load/1` has run; the bodies only fire when it has not.
  # Loading is explicit (not @on_load) because libpython must be dlopen'ed with
  # RTLD_GLOBAL first; see Py.Runtime.

  @doc false
  @spec load(Path.t()) :: :ok | {:error, term}
  def load(path) do
    case :erlang.load_nif(String.to_charlist(path), 0) do
      :ok -> :ok
      {:error, {:reload, _}} -> :ok
      {:error, {_reason, text}} -> {:error, List.to_string(text)}
    end
  end

  def init(_config), do: not_loaded()
  def context_new(_pool, _index, _opts), do: not_loaded()
  def context_close(_ctx), do: not_loaded()
  def context_info(_ctx), do: not_loaded()
  def context_cancel_wait(_ticket), do: not_loaded()
  def output_setup(_pid), do: not_loaded()
  def namespace_new(_ctx), do: not_loaded()
  def submit(_ctx, _env, _ref, _job, _timeout, _ticket), do: not_loaded()
  def submit_dirty(_ctx, _env, _ref, _job, _timeout, _ticket), do: not_loaded()
  def cancel(_handle), do: not_loaded()
  def redirect(_handle, _pid), do: not_loaded()

  def callback_reply(_slot, _answer), do: not_loaded()
  def callback_reply_dirty(_slot, _answer), do: not_loaded()
  def callback_reply_inline(_slot, _answer), do: not_loaded()
  def callback_setup(_pids), do: not_loaded()

  def shared_dict_new(_name, _max_entries, _evict_lru, _backend, _prefix, _pool_size),
    do: not_loaded()

  def shared_dict_io(_sd, _op, _args), do: not_loaded()
  def shared_dict_lookup(_name), do: not_loaded()
  def shared_dict_get(_sd, _key), do: not_loaded()
  def shared_dict_get_dirty(_sd, _key), do: not_loaded()
  def shared_dict_value(_sd, _key, _default), do: not_loaded()
  def shared_dict_put(_sd, _key, _value, _ttl, _cond), do: not_loaded()
  def shared_dict_put_dirty(_sd, _key, _value, _ttl, _cond), do: not_loaded()
  def shared_dict_set(_sd, _key, _value), do: not_loaded()
  def shared_dict_put_later(_sd, _key, _value, _ttl, _cond, _tag), do: not_loaded()
  def shared_dict_get_later(_sd, _key, _tag), do: not_loaded()
  def shared_dict_take(_sd, _key), do: not_loaded()
  def shared_dict_delete(_sd, _key), do: not_loaded()
  def shared_dict_keys(_sd), do: not_loaded()
  def shared_dict_to_map(_sd), do: not_loaded()
  def shared_dict_size(_sd), do: not_loaded()
  def shared_dict_incr(_sd, _key, _by), do: not_loaded()
  def shared_dict_ttl(_sd, _key), do: not_loaded()
  def shared_dict_expire(_sd, _key, _ms), do: not_loaded()
  def shared_dict_persist(_sd, _key), do: not_loaded()
  def shared_dict_clear(_sd), do: not_loaded()
  def shared_dict_destroy(_sd), do: not_loaded()
  def shared_dict_stats(_sd), do: not_loaded()
  def shared_dict_subscribe(_sd, _events), do: not_loaded()
  def shared_dict_callback_log, do: not_loaded()
  def shared_dict_unsubscribe(_sd, _events), do: not_loaded()
  def shared_dict_lock(_sd, _key), do: not_loaded()
  def shared_dict_lock_cancel(_sd, _key), do: not_loaded()
  def shared_dict_unlock(_sd, _key), do: not_loaded()
  def shared_dict_all, do: not_loaded()
  def shared_dict_backend(_sd), do: not_loaded()
  def shared_dict_telemetry_keys(_sd, _on), do: not_loaded()
  def shared_dict_telemetry(_on), do: not_loaded()

  def coalesce_enter(_gk, _me, _claim), do: not_loaded()
  def coalesce_take(_hash, _id), do: not_loaded()
  def coalesce_take_joined(_joiners), do: not_loaded()
  def coalesce_take_alone(_joiners), do: not_loaded()
  def coalesce_reporter(_pid), do: not_loaded()
  def coalesce_leave(_joiners, _slot), do: not_loaded()
  def coalesce_mark(_hash, _id, _call), do: not_loaded()
  def coalesce_unmap(_hash, _id), do: not_loaded()
  def coalesce_unmap_owner(_gk, _owner), do: not_loaded()
  def coalesce_forget(_gk), do: not_loaded()
  def coalesce_forget_all(_group), do: not_loaded()
  def coalesce_lookup(_gk), do: not_loaded()
  def coalesce_joiners(_gk), do: not_loaded()
  def coalesce_size, do: not_loaded()
  def coalesce_submit(_cref, _namespace, _ref, _job, _gk, _count), do: not_loaded()
  def coalesce_misses(_group), do: not_loaded()
  def coalesce_reset_misses(_group), do: not_loaded()
  def coalesce_all_misses, do: not_loaded()

  defp not_loaded, do: :erlang.nif_error(:pybridge_not_loaded)
end
