"""Executors: where a job's partitions run."""
