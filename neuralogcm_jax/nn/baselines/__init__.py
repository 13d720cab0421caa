"""neuralogcm_jax.nn.baselines."""
