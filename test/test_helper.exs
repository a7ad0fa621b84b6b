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

ExUnit.start(exclude: exclude)
