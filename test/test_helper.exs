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

# Mounting a tiny or read-only filesystem (SharedDict SQLite faults) needs
# root, and a sandbox that allows mounts: tried once here.
can_mount? = fn ->
  probe = Path.join(System.tmp_dir!(), "pybridge-mount-probe-#{System.pid()}")
  File.mkdir_p!(probe)

  mounted? =
    match?({"0\n", 0}, System.cmd("id", ["-u"])) and
      match?(
        {_, 0},
        System.cmd("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe],
          stderr_to_stdout: true
        )
      )

  if mounted?, do: System.cmd("umount", [probe])
  File.rm_rf(probe)
  mounted?
end

exclude =
  if can_mount?.() do
    exclude
  else
    IO.puts("excluding :root tests (tmpfs and read-only mounts): not root, or mounts not allowed")
    [:root | exclude]
  end

# `assert_receive` without a timeout waits up to 5 s, not ExUnit's 100 ms:
# the message often comes from another process doing real work (a lock
# taken, a Python call made), which a loaded machine can delay past 100 ms.
# A passing test does not wait any longer for it; `refute_receive` keeps its
# own short default.
ExUnit.start(exclude: exclude, assert_receive_timeout: 5_000)
ExUnit.after_suite(fn _ -> File.rm_rf(Py.SharedDictCase.dir()) end)
