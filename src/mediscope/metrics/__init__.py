"""Metrics per task: per-epoch torchmetrics collections and final evaluations."""
