"""neuralogcm_jax.nn."""
