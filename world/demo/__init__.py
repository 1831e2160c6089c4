"""``make demo``: the method end to end on the toy world, split into its parts (driven by :mod:`launch.demo`).

``config`` (:class:`DemoConfig`), ``stages`` (world data, pretraining, pairs, JRMs, RL), ``heldout`` (the
held-out evaluation), ``outcome`` (what the stages produced), ``metrics`` (``metrics.json``), ``plots`` and
``report`` (``report.md``).
"""
