"""``python -m neuralogcm_jax.cli COMMAND ...``: the same as ``neuralogcm COMMAND ...``."""

import sys

from neuralogcm_jax.cli import main

sys.exit(main())
