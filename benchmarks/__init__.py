"""Benchmarks of neuralogcm_jax: `python -m benchmarks.run` (see run.py)."""
