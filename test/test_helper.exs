# The test that runs this same native build under a second Python needs
# Debian's own /usr/bin/python3.11 (with libpython3.11, which `make deps`
# installs). Where that Python does not exist (e.g. GitHub's Ubuntu
# runners) the test is excluded, and ExUnit reports it as excluded.
exclude =
  if File.exists?("/usr/bin/python3.11") do
    []
  else
    IO.puts("excluding :debian_python tests: /usr/bin/python3.11 not found")
    [:debian_python]
  end

# Thread scheduling policies are Linux-specific.
exclude = if match?({:unix, :linux}, :os.type()), do: exclude, else: [:linux | exclude]

# Mounting a tiny or read-only filesystem (SharedDict SQLite faults) needs root.
exclude =
  case System.cmd("id", ["-u"]) do
    {"0\n", 0} ->
      exclude

    _ ->
      IO.puts("excluding :root tests (tmpfs and read-only mounts): not running as root")
      [:root | exclude]
  end

ExUnit.start(exclude: exclude)
ExUnit.after_suite(fn _ -> File.rm_rf(Py.SharedDictCase.dir()) end)
