import Config

# `make test` creates a venv with numpy in _build/test-venv and exports its
# path; without it (plain `mix test`) no venv is used and numpy tests skip.
config :pybridge, venv: System.get_env("PYBRIDGE_TEST_VENV")

# An extra pool, so the pool tests exercise `pools:` for real.
config :pybridge, pools: [io: 2]
