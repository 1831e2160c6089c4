"""Reward models for image editing behind one interface (:mod:`reward.base`)."""
