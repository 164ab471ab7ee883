"""Patch datasets: annotation readers, patch extraction, shards, splits, stats, reports, store."""
