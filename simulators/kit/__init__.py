"""The test kit: the pieces the tests and the ``ops/`` benchmarks share, shipped with the project.

- ``emulator``: the ZeroBus emulator (``python -m simulators.zerobus``) as a child process.
- ``workspace``: the Databricks workspace stand-in as a child process.
- ``broker``: a real Mosquitto with the shipped configuration, on a free port.
- ``mqtt``: the MQTT collector in-process on the real spool writer, and ``edge run`` for MQTT end to end.
- ``edgeproc``: ``edge run`` as a child process with a config built from a dict.
- ``proxy``: an HTTP CONNECT proxy for egress tests; ``procs``: stop or kill a child process;
  ``aio``: run a source as a task and wait for a condition.

Paths to the shipped configuration (``mosquitto/``, the repo root for ``PYTHONPATH``) are
taken from a source checkout: the kit runs from the repository, as the benchmarks do.
Nothing here imports ``tests``; the tests import it.
"""
