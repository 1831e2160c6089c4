"""Flow-GRPO: algorithm functions, rollout handling, Ray actors, controller, checkpoints, eval hooks.

Map: ``algorithms`` (advantages, clipped surrogate, KL, step subsets), ``types`` (records between actors),
``config`` (``ExperimentConfig``), ``data`` (instruction JSONL), ``sampler`` / ``reward_actor`` / ``learner``
(the actors), ``placement`` (placement group bundles), ``actor_group`` (submit, gather with restarts, learn,
sync), ``controller`` (``run_flow_grpo``), ``checkpoint``, ``logging``, ``reward_eval_hook`` and
``hook_registry`` (eval hooks), ``remote_proxies`` (interfaces backed by actors).
"""
