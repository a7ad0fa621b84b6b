# The shared SharedDict behaviour (test/support/shared_dict_case.ex), once
# per backend.

defmodule Py.SharedDict.MemoryBehaviourTest do
  use Py.SharedDictCase, backend: :memory
end

defmodule Py.SharedDict.SqliteBehaviourTest do
  use Py.SharedDictCase, backend: :sqlite
end

# Redis slot: the Redis helper adds
#   defmodule Py.SharedDict.RedisBehaviourTest do
#     use Py.SharedDictCase, backend: :redis
#   end
# once the suite starts a redis-server.
