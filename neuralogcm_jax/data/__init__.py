"""neuralogcm_jax.data."""
