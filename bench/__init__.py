"""The fan-out benchmark of issue 3: baseline a (a bare relay) vs the service.

``python -m bench`` (``make bench``) runs it; ``--quick`` is the seconds-long
version the test suite runs. Modules: ``wsframes`` (a minimal RFC 6455 client
core), ``pose`` (pose frames carrying their send time, delivery tally),
``loadgen`` (generator worker processes), ``baseline_relay`` (a),
``servers`` (child processes), ``measure`` (scenarios and sweeps), ``report``
and ``chart`` (output), ``run`` (the command line).
"""
