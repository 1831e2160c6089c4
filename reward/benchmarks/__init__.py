"""Reward-model benchmarks: EditReward-Bench (EditScore's release, as the JRM paper reports it), TIGER's
EditReward-Bench and MMRB2 image editing. Each takes any :class:`reward.base.RewardModel`."""
