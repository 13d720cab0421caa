"""neuralogcm_jax.train."""
