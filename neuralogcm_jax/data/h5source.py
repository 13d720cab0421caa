"""A grain random-access source of training windows over the yearly HDF5 files of one split.

The days of a split's files form one global day index (leap days kept): day ``i`` of a split
whose first year is ``Y0`` is ``i`` days after 1 Jan ``Y0``. Sample ``i`` is the window of ``K + 1``
consecutive days ``i .. i + K``: the ocean state on day ``i``, the forcing and the ocean targets
on days ``i + 1 .. i + K``. Windows cross year ends (31 Dec -> 1 Jan of the next file). There are
``total_days - K`` samples, so a target day is always later than its state day: no sample is its
own target (a fault of the sibling loaders, which used the last day of each year as its own
target and dropped day 366).

Reads: files are opened lazily, once per process (never in ``__init__``), so the source pickles
into grain worker processes. Uncompressed little-endian float32 data (contiguous, or chunked one
day per chunk as `h5write.write_year` writes it) is read with ``os.preadv`` straight from the
file's byte offsets, which releases the GIL and lets grain's read threads overlap their I/O;
anything else (compressed, other chunking) goes through h5py.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import h5py
import numpy as np

from neuralogcm_jax.data import h5format

from neuralogcm_jax.data import h5write
from neuralogcm_jax.data.h5format import FIELDS_KEY, DataRoot
from neuralogcm_jax.errors import DataError
from neuralogcm_jax.layout import ChannelLayout


class _DayReader:
    """Reads whole days ``[n, C, H, W]`` of one year file; opened on first use in a process."""

    def __init__(self, path: Path, shape: tuple[int, int, int, int]):
        self.path = path
        self.shape = shape
        self._h5 = None
        self._fd = None
        self._offsets = None  # [T] byte offset of each day, or None for the h5py path
        self._lock = threading.Lock()
        self._pid = None

    def _open(self) -> None:
        try:
            h5 = h5py.File(self.path, "r")
        except (OSError, ValueError) as e:
            raise DataError(f"{self.path}: cannot open as HDF5 (truncated or corrupt?): {e}") from None
        d = h5[FIELDS_KEY]
        if d.shape != self.shape:
            raise DataError(f"{self.path}: {FIELDS_KEY} has shape {d.shape}, expected {self.shape}")
        offsets = None
        T, C, H, W = self.shape
        day_bytes = C * H * W * 4
        if d.dtype.str == "<f4" and not d._filters:
            try:
                if d.chunks is None:
                    base = d.id.get_offset()
                    if base is not None:
                        offsets = base + day_bytes * np.arange(T, dtype=np.int64)
                elif tuple(d.chunks) == (1, C, H, W):
                    info = [d.id.get_chunk_info_by_coord((t, 0, 0, 0)) for t in range(T)]
                    if all(i.byte_offset is not None and i.size == day_bytes for i in info):
                        offsets = np.array([i.byte_offset for i in info], dtype=np.int64)
            except (OSError, ValueError, RuntimeError):
                offsets = None  # unallocated chunks or an unusual layout: let h5py read them
        self._fd = os.open(self.path, os.O_RDONLY) if offsets is not None else None
        self._offsets = offsets
        self._h5 = h5
        self._pid = os.getpid()

    def read(self, t0: int, t1: int) -> np.ndarray:
        """Days ``t0 .. t1-1`` as float32 ``[t1 - t0, C, H, W]``."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    self._open()
        T, C, H, W = self.shape
        out = np.empty((t1 - t0, C, H, W), dtype=np.float32)
        if self._offsets is not None:
            day_bytes = C * H * W * 4
            flat = out.reshape(t1 - t0, -1)
            for k, t in enumerate(range(t0, t1)):
                buf = memoryview(flat[k]).cast("B")
                got = os.preadv(self._fd, [buf], int(self._offsets[t]))
                if got != day_bytes:
                    raise DataError(
                        f"{self.path}: day {t}: read {got} of {day_bytes} bytes (file truncated?)"
                    )
            return out
        try:
            self._h5[FIELDS_KEY].read_direct(out, np.s_[t0:t1])
        except (OSError, ValueError, RuntimeError) as e:
            raise DataError(f"{self.path}: read of days {t0}..{t1 - 1} failed: {e}") from None
        return out

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
        if self._h5 is not None:
            self._h5.close()
        self._fd = self._h5 = self._offsets = self._pid = None


class H5WindowSource:
    """grain ``RandomAccessDataSource`` of ``K + 1``-day windows over one split.

    `data`: a data root folder or an already validated `DataRoot` (`h5format.open_dataset`).
    `split`: "train", "valid" or "test". `k_steps`: K, the number of target days per sample.

    ``source[i]`` is a dict of numpy arrays (all fields normalised, float32, land 0)::

        state       [n_ocean, H, W]     anomaly of day i
        forcing     [K, F, H, W]        forcing of days i+1 .. i+K, (x - mean) / std
        target      [K, n_ocean, H, W]  anomalies of days i+1 .. i+K
        doy         int32               0-based day of year of day i (0 .. 365)
        target_doy  [K] int32           day of year of each target day
        time        int64               global day index i

    Anomalies are ``(x - clim[doy] - mean) / std`` with each day's own day-of-year climatology.
    """

    def __init__(
        self,
        data: str | os.PathLike | DataRoot,
        split: str,
        k_steps: int = 1,
        *,
        layout: ChannelLayout | None = None,
        **open_kwargs,
    ):
        if not isinstance(data, DataRoot):
            data = h5format.open_dataset(data, layout, splits=(split,), **open_kwargs)
        info = data.split(split)
        k_steps = int(k_steps)
        if k_steps < 1:
            raise DataError(f"k_steps must be >= 1, got {k_steps}")
        if info.n_days <= k_steps:
            raise DataError(
                f"{data.root / split}: {info.n_days} days cannot hold one window of "
                f"{k_steps + 1} days"
            )
        self.root = data.root
        self.split = split
        self.k_steps = k_steps
        self.layout = data.layout
        self.wet_channels = data.wet_channels
        self.files = info.files
        self.years = np.array(info.years, dtype=np.int64)
        self.offsets = info.day_offsets
        self.n_days = int(info.n_days)
        H, W = data.grid.shape
        self._shapes = [(f.n_days, self.layout.n_channels, H, W) for f in self.files]
        self._readers: list[_DayReader] | None = None
        self._stats = None
        self._consts = None
        self._init_lock = threading.Lock()

    # -------------------------------------------------------------- pickling (grain workers)
    def __getstate__(self):
        state = self.__dict__.copy()
        # Open files, memory maps and locks stay behind; each process opens its own.
        state["_readers"] = None
        state["_stats"] = None
        state["_consts"] = None
        state["_clim_cache"] = {}
        state["_init_lock"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._init_lock = threading.Lock()

    def _ensure_open(self):
        if self._readers is None:
            with self._init_lock:
                if self._readers is None:
                    self._stats = h5format.load_stats(self.root, self.layout, self.wet_channels,
                                                      progress=False)
                    self._readers = [_DayReader(f.path, s) for f, s in zip(self.files, self._shapes)]
        return self._readers

    @property
    def stats(self):
        """The dataset's `Stats`, loaded on first use."""
        self._ensure_open()
        return self._stats

    # -------------------------------------------------------------- index arithmetic
    def __len__(self) -> int:
        return self.n_days - self.k_steps

    def __repr__(self) -> str:
        # grain's DataLoader checkpoints compare this string: it names what defines the samples
        # but not the folder, so a run resumes on data moved to another disk or host.
        return (
            f"H5WindowSource(split={self.split!r}, "
            f"years={int(self.years[0])}-{int(self.years[-1])}, k_steps={self.k_steps}, "
            f"n_samples={len(self)})"
        )

    def locate(self, day: int) -> tuple[int, int]:
        """Global day index -> (file index, 0-based day of year)."""
        if not 0 <= day < self.n_days:
            raise IndexError(f"day {day} outside 0 .. {self.n_days - 1} of split {self.split!r}")
        f = int(np.searchsorted(self.offsets, day, side="right") - 1)
        return f, int(day - self.offsets[f])

    def read_days(self, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw days ``start .. start+n-1`` (physical units, NaN on land) as ``[n, C, H, W]``
        float32, crossing year files as needed, and their days of year ``[n]`` int32."""
        readers = self._ensure_open()
        parts, doys = [], []
        day = start
        while day < start + n:
            f, t0 = self.locate(day)
            t1 = min(self.files[f].n_days, t0 + (start + n - day))
            parts.append(readers[f].read(t0, t1))
            doys.append(np.arange(t0, t1, dtype=np.int32))
            day += t1 - t0
        x = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        return x, np.concatenate(doys)

    # -------------------------------------------------------------- samples
    def __getitem__(self, index) -> dict[str, np.ndarray]:
        i = int(index)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"sample {index} outside 0 .. {len(self) - 1} of {self!r}")
        K = self.k_steps
        x, doy = self.read_days(i, K + 1)
        n = self.layout.n_ocean
        for k in range(K + 1):
            self._anomaly_inplace(x[k, :n], int(doy[k]))
        forcing = self._stats.normalize_forcing(x[1:, n:]).astype(np.float32)
        anomalies = x[:, :n]
        return {
            "state": anomalies[0],
            "forcing": forcing,
            "target": np.ascontiguousarray(anomalies[1:]),
            "doy": np.int32(doy[0]),
            "target_doy": doy[1:].astype(np.int32),
            "time": np.int64(i),
        }

    def _anomaly_inplace(self, x: np.ndarray, doy: int) -> None:
        """``x`` [n_ocean, H, W] physical -> normalised anomaly, in place, land 0.

        The same float32 operations in the same order as `Stats.physical_to_anomaly` (the
        definition; a test holds them bit-equal), without most of its temporaries. The day's
        climatology is evaluated from the harmonics (`Stats.clim_at`) and kept for the next
        few samples, which share most of their days."""
        stats = self._stats
        n = self.layout.n_ocean
        if self._consts is None:
            self._consts = (
                stats.mean[:n, None, None].astype(np.float32),
                stats.std[:n, None, None].astype(np.float32),
                ~np.asarray(stats.wet, dtype=bool),
            )
        mean, std, land = self._consts
        # Land is NaN in the data (and in the climatology): computed through, then set to 0.
        # `open_dataset` refuses a climatology that is NaN in an ocean cell (checked on two days);
        # one that slips through gives NaN here, which the training loop's finite checks catch.
        with np.errstate(invalid="ignore"):
            np.subtract(x, self._clim_day(doy), out=x)
            np.subtract(x, mean, out=x)
            np.divide(x, std, out=x)
        np.copyto(x, 0.0, where=land)

    def _clim_day(self, doy: int) -> np.ndarray:
        """The climatology of day `doy`, from a small cache (read threads share it)."""
        cache = self.__dict__.setdefault("_clim_cache", {})
        c = cache.get(doy)
        if c is None:
            c = self._stats.clim_at(doy)
            with self._init_lock:
                while len(cache) >= 2 * (self.k_steps + 1) + 8:
                    cache.pop(next(iter(cache)))
                cache[doy] = c
        return c

    def close(self) -> None:
        """Close this process's open files (they reopen on the next read)."""
        if self._readers is not None:
            for r in self._readers:
                r.close()
        self._readers = None
        self._stats = None
        self._consts = None
        self._clim_cache = {}


def denormalize_sample(sample: dict, stats) -> dict[str, np.ndarray]:
    """Physical fields of a sample: ``state`` [n_ocean, H, W], ``target`` [K, n_ocean, H, W],
    ``forcing`` [K, 4, H, W] (land 0 in the ocean fields)."""
    K = sample["target"].shape[0]
    return {
        "state": stats.anomaly_to_physical(sample["state"], int(sample["doy"])),
        "target": np.stack(
            [
                stats.anomaly_to_physical(sample["target"][k], int(sample["target_doy"][k]))
                for k in range(K)
            ]
        ),
        "forcing": stats.denormalize_forcing(sample["forcing"]),
    }
