"""neuralogcm_jax.data.embedded."""
