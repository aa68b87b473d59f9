"""The fault-injection suite's toolbox: real processes, a redis-server of each scenario's own, the invariants.

The scenarios (``tests/test_fault_*.py``) break things on purpose and then check the one promise users rely on:
every liquidation the exchange shows is in the stream exactly once and reaches every consumer group, whatever
failed on the way. Each scenario prints one ``FIGURES`` line (expected, published, duplicates, lost, recovery
seconds) that RELIABILITY.md quotes.

- :mod:`tests.faults.redis_proc`: a private ``redis-server`` (AOF, password, ACL user, TLS) that a test can
  SIGKILL, freeze and restart on the same port.
- :mod:`tests.faults.redis_cluster`: a Redis Cluster (3 masters, 3 replicas) and a Sentinel set-up of a test's
  own, with ``CLUSTER FAILOVER`` / ``SENTINEL FAILOVER`` and kill-the-master helpers that wait until it settled.
- :mod:`tests.faults.servers`: what every one of those servers needs (the binary, free ports, the wait until it
  answers).
- :mod:`tests.faults.procs`: ``python -m producer`` / ``consumers.stats`` / ``consumers.alerter`` as subprocesses
  with their logs in files, killed or stopped on purpose, and checked for exits nobody asked for.
- :mod:`tests.faults.feed`: liquidations the fake exchange shows bit by bit, with the ground truth of what it has
  shown so far.
- :mod:`tests.faults.chaos`: the fake exchange with faults that last for a while (a minute of 429s), and the
  hostile or huge answers.
- :mod:`tests.faults.proxy`: a relay in front of Redis that catches a publish in flight (kills mid-publish).
- :mod:`tests.faults.webhooks`: a webhook receiver that can leave an alerter blocked mid-batch.
- :mod:`tests.faults.invariants`: the checks, and the figures they print.
- :mod:`tests.faults.rig`: one scenario's world, torn down whatever happens.
"""
