"""Self-contained model checkpoints: what a saved model holds, and `load_model`.

A saved model needs nothing but its own folder: no data root, no trainer, any working directory.
Two kinds of folder are read:

* a **training checkpoint directory** (written by `neuralogcm_jax.train.checkpoint`): one
  sub-directory per step, each with the Orbax items

    - ``state``  -- train state (params, optimizer state, ...), read here for ``params`` only;
    - ``data``   -- the data-iterator position (trainer only);
    - ``meta``   -- JSON, `metadata.make_metadata`: format version, package versions, step, the
      resolved config, the effective model config, the channel layout's depths, a grid
      fingerprint;
    - ``model``  -- arrays, `arrays.model_arrays`: ``grid`` (``lat``, ``lon``, ``depth``,
      ``wet``) and ``stats`` (``mean``, ``std``, ``clim_harmonics``, the compact climatology of
      `neuralogcm_jax.data.normalize`);

* an **export** (`folders.write_export`, ``neuralogcm export``): ``config.yaml`` (resolved config),
  ``metadata.json`` (as ``meta`` plus ``export_format_version``), ``grid.npz``, ``stats.npz``
  and ``params/`` (an Orbax PyTree of the parameters, no optimizer state).

Format history: version 1 (both kinds) stored neither statistics nor, in training checkpoints,
the grid; they were rebuilt from the run's ``data.root``. Such a folder loads only with an
explicit ``stats=`` or ``data_root=`` (see `loading.load_model`). A folder of a newer format
than this program knows is refused.

The package, by concern (every public name is importable from the package itself):

* `metadata` -- format versions, the ``meta`` item, compatibility checks;
* `arrays` -- the ``model`` item's arrays (grid, statistics) and PRNG keys as stored;
* `folders` -- training checkpoint directories and exports on disk: listing, reading, writing;
* `loading` -- `load_model` / `load`, the model rebuilt from a folder.

It imports nothing from ``neuralogcm_jax.train``, ``.eval`` or ``.cli`` (a test holds that): the
trainer uses it, never the reverse.
"""

from __future__ import annotations

from neuralogcm_jax.checkpointing.arrays import (
    GRID_KEYS,
    STATS_KEYS,
    from_storable,
    grid_from_arrays,
    model_arrays,
    stats_from_arrays,
    storable_abstract,
    to_storable,
)
from neuralogcm_jax.checkpointing.folders import (
    is_export,
    list_steps,
    read_config,
    read_npz,
    read_step_metadata,
    resolve_checkpoint_dir,
    restore_tree,
    write_export,
)
from neuralogcm_jax.checkpointing.loading import (
    Loaded,
    build_from_config,
    effective_model_config,
    load,
    load_model,
)
from neuralogcm_jax.checkpointing.metadata import (
    EXPORT_FORMAT_VERSION,
    FORMAT_VERSION,
    MODEL_ITEM,
    PACKAGES,
    check_compatible,
    check_format,
    check_same_grid,
    grid_differences,
    grid_fingerprint,
    make_metadata,
    package_versions,
    stats_differences,
)

__all__ = [
    "EXPORT_FORMAT_VERSION", "FORMAT_VERSION", "GRID_KEYS", "MODEL_ITEM", "PACKAGES", "STATS_KEYS",
    "Loaded", "build_from_config", "check_compatible", "check_format", "check_same_grid",
    "effective_model_config", "from_storable", "grid_differences", "grid_fingerprint",
    "grid_from_arrays", "is_export", "list_steps", "load", "load_model", "make_metadata",
    "model_arrays", "package_versions", "read_config", "read_npz", "read_step_metadata",
    "resolve_checkpoint_dir", "restore_tree", "stats_differences", "stats_from_arrays",
    "storable_abstract", "to_storable", "write_export",
]
