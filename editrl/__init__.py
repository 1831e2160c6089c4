"""Shared utilities of editrl: structured configs, atomic file writes, logging."""
