"""neuralogcm_jax.physics."""
