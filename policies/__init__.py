"""Editing policies: the interfaces (:mod:`policies.base`), the registry of policy families
(:mod:`policies.registry`), sampling settings (:mod:`policies.settings`), rollouts (:mod:`policies.rollout`).
OmniGen2 is the first family (:mod:`policies.omnigen2`)."""
