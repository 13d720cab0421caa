"""Training metrics: one JSON line per record, and TensorBoard event files with the same scalars."""

import json
import struct

import pytest

from neuralogcm_jax.train.loop import MetricsLog


def _read_events(path):
    """(tag, step, value) of every scalar in a TensorBoard event file (TFRecord framing:
    uint64 length, uint32 masked CRC, payload, uint32 masked CRC)."""
    from tensorboardX.proto import event_pb2

    data, out = path.read_bytes(), []
    while data:
        (n,) = struct.unpack("<Q", data[:8])
        ev = event_pb2.Event()
        ev.ParseFromString(data[12:12 + n])
        out += [(v.tag, ev.step, pytest.approx(v.simple_value)) for v in ev.summary.value]
        data = data[12 + n + 4:]
    return out


def test_metrics_reach_jsonl_and_tensorboard(tmp_path):
    log = MetricsLog(tmp_path, enabled=True)
    assert log.tb is not None and log.tb[0] == "tbx"  # tensorboardX is a test dependency
    log.write({"step": 3, "epoch": 0, "kind": "train", "loss": 0.5, "grad_norm": 2.0, "note": "x",
               "skipped_by_group": {"physics_params.nu_m": 1, "corrector.head": 0}})
    log.write({"step": 4, "epoch": 0, "kind": "valid", "loss": 0.25})
    log.close()
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [3, 4] and lines[0]["note"] == "x"
    assert lines[0]["skipped_by_group"] == {"physics_params.nu_m": 1, "corrector.head": 0}
    (events,) = (tmp_path / "tensorboard").glob("events.out.tfevents.*")
    scalars = _read_events(events)
    assert ("train/loss", 3, 0.5) in scalars
    assert ("train/grad_norm", 3, 2.0) in scalars
    assert ("valid/loss", 4, 0.25) in scalars
    assert ("train/skipped_by_group/physics_params.nu_m", 3, 1.0) in scalars
    assert ("train/skipped_by_group/corrector.head", 3, 0.0) in scalars
    assert not any(tag.endswith(("/step", "/epoch", "/note")) for tag, _, _ in scalars)


def test_disabled_log_writes_nothing(tmp_path):
    log = MetricsLog(tmp_path, enabled=False)
    log.write({"step": 1, "loss": 1.0})
    log.close()
    assert list(tmp_path.iterdir()) == []
