import Config

# `make test` creates a venv with numpy in _build/test-venv and exports its
# path. Under plain `mix test` no venv is configured and the two venv tests
# fail, saying to run `make test` (or to export PYBRIDGE_TEST_VENV).
config :pybridge, venv: System.get_env("PYBRIDGE_TEST_VENV")

# An extra pool, so the pool tests exercise `pools:` for real.
config :pybridge, pools: [io: 2]
