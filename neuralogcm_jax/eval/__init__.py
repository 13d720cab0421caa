"""neuralogcm_jax.eval."""
