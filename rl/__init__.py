"""Flow-GRPO: algorithm functions, rollout handling, Ray actors, controller, checkpoints, eval hooks."""
