defmodule Py.Output do
  @moduledoc """
  Where Python's output and log records go.

  Python code run by pybridge prints and logs like any Python program, but
  there is no terminal behind the embedded interpreter: its file
  descriptors are the VM's. pybridge gives every interpreter a `sys.stdout`
  and `sys.stderr` of its own, and a `logging` last-resort handler, that
  hand everything to the BEAM:

    * **During a call**, to the process that made the call, before the
      call returns: `print` output is written to that process's group
      leader (`sys.stderr` to `:standard_error`), so it shows in IEx and
      `ExUnit.CaptureIO` captures it; log records are logged by that process
      with `Logger`, with its metadata.
    * **Elsewhere** (threads Python started that no call waits on,
      finalisers), to this process, which logs each line of output
      (`:info` for stdout, `:warning` for stderr) and each record.

  Log records keep their level (`CRITICAL` → `:critical`, `ERROR` →
  `:error`, `WARNING` → `:warning`, `INFO` → `:info`, `DEBUG` and below →
  `:debug`) and their logger's name as the `:python_logger` metadata.
  Python still decides which records exist: its root logger passes
  `WARNING` and above unless told otherwise
  (`logging.getLogger().setLevel(logging.INFO)`). Records reach `Logger`
  through `logging.lastResort`, that is while no handler is configured; a
  program that configures its own (`logging.basicConfig()`) gets what it
  configured, and a `StreamHandler` writing to `sys.stderr` comes back
  through the output path. Add `pybridge.LogHandler()` to a logger to have
  both.

  Output written below Python (a C extension's `printf`, a subprocess
  inheriting the VM's descriptors) does not go through `sys.stdout` and
  still goes to the VM's own stdout.

  ## Example

      ExUnit.CaptureIO.capture_io(fn -> Py.exec("print('hello')") end)
      #=> "hello\\n"
  """

  use GenServer

  require Logger

  @doc false
  @spec start_link(keyword) :: GenServer.on_start()
  def start_link(_opts), do: GenServer.start_link(__MODULE__, [], name: __MODULE__)

  @doc false
  # Text a call's Python wrote to `stream`, in the calling process.
  @spec write(String.t(), String.t()) :: :ok
  def write("stderr", text), do: IO.write(:standard_error, text)
  def write(_stdout, text), do: IO.write(text)

  @doc false
  # A log record of a call's Python, in the calling process.
  @spec log(integer, String.t(), String.t()) :: :ok
  def log(levelno, name, message) do
    Logger.log(level(levelno), message, python_logger: name)
  end

  @doc """
  The `Logger` level of a Python log level number.

  ## Example

      iex> Py.Output.level(30)
      :warning
      iex> Py.Output.level(5)
      :debug
  """
  @spec level(integer) :: Logger.level()
  def level(levelno) when levelno >= 50, do: :critical
  def level(levelno) when levelno >= 40, do: :error
  def level(levelno) when levelno >= 30, do: :warning
  def level(levelno) when levelno >= 20, do: :info
  def level(_levelno), do: :debug

  @impl true
  def init([]) do
    Process.flag(:trap_exit, true)
    :ok = Py.Native.output_setup(self())
    {:ok, nil}
  end

  @impl true
  def handle_info({:io, {stream, line}}, state) do
    level = if stream == "stderr", do: :warning, else: :info
    Logger.log(level, line, python_stream: if(stream == "stderr", do: :stderr, else: :stdout))
    {:noreply, state}
  end

  def handle_info({:log, {levelno, name, message}}, state) do
    log(levelno, name, message)
    {:noreply, state}
  end

  def handle_info(_other, state), do: {:noreply, state}

  @impl true
  def terminate(_reason, _state) do
    Py.Native.output_setup(nil)
  end
end
