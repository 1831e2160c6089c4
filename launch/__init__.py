"""Entry points: flow_grpo_jrm (ray job), train_jrm, evaluate, demo."""
