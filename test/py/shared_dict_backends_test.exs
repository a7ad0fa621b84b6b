# The shared SharedDict behaviour (test/support/shared_dict_case.ex), once
# per backend.

defmodule Py.SharedDict.MemoryBehaviourTest do
  use Py.SharedDictCase, backend: :memory
end

defmodule Py.SharedDict.SqliteBehaviourTest do
  use Py.SharedDictCase, backend: :sqlite
end

defmodule Py.SharedDict.RedisBehaviourTest do
  # On a redis-server of the suite's own (Py.Test.RedisServer.shared/0).
  use Py.SharedDictCase, backend: :redis
end

defmodule Py.SharedDict.RedisClusterBehaviourTest do
  # On a three-master Redis Cluster of the suite's own
  # (Py.Test.RedisCluster.shared/0), opened through its first node's URL:
  # most dicts' slots are on the other nodes (MOVED).
  use Py.SharedDictCase, backend: :redis_cluster
end
