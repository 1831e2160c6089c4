"""Editing policies. OmniGen2 is the first (:mod:`policies.omnigen2`)."""
