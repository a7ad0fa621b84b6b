import Config

# pybridge reads (all optional):
#
#     config :pybridge,
#       python: "/usr/bin/python3.11",   # else $PYBRIDGE_PYTHON, else python3 on PATH
#       venv: "/path/to/venv",           # its site-packages are added to sys.path
#       python_path: ["/my/modules"]     # prepended to sys.path
#
# See Py.Runtime and Py.Runtime.Python.

env_config = Path.join(__DIR__, "#{config_env()}.exs")

if File.exists?(env_config) do
  import_config "#{config_env()}.exs"
end
