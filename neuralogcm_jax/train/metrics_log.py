"""The training run's logs: ``metrics.jsonl`` (+ TensorBoard when available) and the progress bar.

Only process 0 writes (`MetricsLog` is disabled elsewhere). TensorBoard scalars go through
`tensorboardX` or, failing that, `tensorflow`; both are optional and imported only when present.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from tqdm import tqdm

from neuralogcm_jax.paths import output_path


class MetricsLog:
    """metrics.jsonl (+ TensorBoard if available), written by process 0 only."""

    def __init__(self, out_dir, enabled: bool):
        self.enabled = enabled
        out_dir = output_path(out_dir)
        self.path = out_dir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        if isinstance(self.path, Path):
            self.file = open(self.path, "a")
        else:  # object stores cannot append: the lines are kept and the file rewritten
            self.file = _RewrittenFile(self.path)
        with contextlib.suppress(Exception):
            if not isinstance(out_dir, Path):
                raise ImportError("tensorboardX writes gs:// only through TensorFlow")
            from tensorboardX import SummaryWriter  # optional dependency (the tensorboard extra)

            self.tb = ("tbx", SummaryWriter(str(out_dir / "tensorboard")))
        if self.tb is None:
            with contextlib.suppress(Exception):
                import tensorflow as tf  # noqa: F401  (optional, not a declared dependency)

                self.tb = ("tf", tf.summary.create_file_writer(str(out_dir / "tensorboard")))

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            step = int(record.get("step", 0))
            kind, w = self.tb
            scalars = []
            for k, v in record.items():
                if k in ("step", "epoch", "kind"):
                    continue
                if isinstance(v, dict):  # e.g. skipped_by_group: one scalar per entry
                    scalars += [(f"{k}/{kk}", vv) for kk, vv in v.items()
                                if isinstance(vv, (int, float))]
                elif isinstance(v, (int, float)):
                    scalars.append((k, v))
            for k, v in scalars:
                if kind == "tbx":
                    w.add_scalar(f"{record.get('kind', 'train')}/{k}", v, step)
                else:
                    import tensorflow as tf  # optional: see __init__

                    with w.as_default():
                        tf.summary.scalar(f"{record.get('kind', 'train')}/{k}", v, step=step)

    def close(self):
        if self.enabled:
            self.file.close()
            if self.tb is not None and self.tb[0] == "tbx":
                self.tb[1].close()


class _RewrittenFile:
    """Append-only text file on a store without appends: every flush rewrites it whole."""

    def __init__(self, path):
        self.path = path
        self.text = path.read_text() if path.exists() else ""

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        self.path.write_text(self.text)

    def close(self) -> None:
        self.flush()


def progress_bar(total, initial, epoch, k, enabled, pushforward=0):
    desc = f"epoch {epoch} K={k}" + (f" after {pushforward} d" if pushforward else "")
    return tqdm(total=total, initial=initial, desc=desc, unit="step",
                disable=not enabled, dynamic_ncols=True, leave=False)
