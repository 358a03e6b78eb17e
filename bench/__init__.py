"""Benchmark and demo tooling, in one place: management commands that seed synthetic data and
measure pages, models, batch inference and relabel latency. It sits at the top of the layers
(it may import every app) and no app imports it."""
