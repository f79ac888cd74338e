"""Training cache: one row per (arch_id, train-config hash, data fingerprint), shared by every study
that uses the same database (the latency database's URL: a SQLite file or PostgreSQL).

Rows are insert-or-ignore: the first finished training of a key wins, and since training is
deterministic for a config (which holds the seed) a second one would be the same. Weights are
stored as safetensors bytes, never pickled.

A training the pruner stopped at a rung keeps its checkpoint in a second table under the same key
(the farthest one wins), so a candidate met again resumes there instead of starting over.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from latency_db.engine import create_tables, insert_or_ignore, make_engine
from latency_db.retry import retry_transient
from nas.training.train import Checkpoint, CheckpointMismatch, TrainResult

if TYPE_CHECKING:
    from nas.training.data import TaskData
    from nas.training.train import TrainConfig
    from search_spaces import ArchSpec

ID_CHARS = 64  # the arch_id column's width (row_id fits longer ids into it)
TABLE = "nas_train_cache_v2"  # v2 adds the stability metrics; rows of the first table are not read (retrained once)
metadata = sa.MetaData()
train_cache = sa.Table(
    TABLE, metadata,
    sa.Column("arch_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("config_hash", sa.String(64), primary_key=True),
    sa.Column("data_id", sa.String(64), primary_key=True),
    # NaN (a diverged training) reads back as NULL on SQLite: nullable, mapped back to NaN
    sa.Column("psnr_db", sa.Float, nullable=True),
    sa.Column("bicubic_psnr_db", sa.Float, nullable=True),
    sa.Column("psnr_gain_db", sa.Float, nullable=True),
    sa.Column("ssim", sa.Float, nullable=True),
    sa.Column("shift_consistency_db", sa.Float, nullable=True),
    sa.Column("temporal_psnr_db", sa.Float, nullable=True),
    sa.Column("loss_curve", sa.Text, nullable=False),   # JSON [[step, loss], ...]
    sa.Column("val_curve", sa.Text, nullable=False),    # JSON [[step, gain_db], ...]
    sa.Column("train_s", sa.Float, nullable=False),
    sa.Column("moved", sa.Boolean, nullable=False),
    sa.Column("weights", sa.LargeBinary, nullable=False),  # safetensors bytes
    sa.Column("train_config", sa.Text, nullable=False),    # JSON of TrainConfig.to_dict(), for humans
    sa.Column("created", sa.String(32), nullable=False),   # ISO 8601 UTC
)
PARTIAL_TABLE = "nas_train_partial_v1"
partial_trainings = sa.Table(
    PARTIAL_TABLE, metadata,
    sa.Column("arch_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("config_hash", sa.String(64), primary_key=True),
    sa.Column("data_id", sa.String(64), primary_key=True),
    sa.Column("step", sa.Integer, nullable=False),          # the rung it stopped at
    sa.Column("tensors", sa.LargeBinary, nullable=False),   # safetensors bytes of Checkpoint.tensors
    sa.Column("meta", sa.Text, nullable=False),             # JSON of Checkpoint.meta
    sa.Column("created", sa.String(32), nullable=False),    # ISO 8601 UTC
)


def _num(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _json_safe(curve: list[list[float]]) -> str:
    return json.dumps([[a, None if isinstance(b, float) and not math.isfinite(b) else b] for a, b in curve])


def row_id(arch_id: str) -> str:
    """The arch_id column's value: the id itself, or the sha256 of a longer one (a user's graph, ``onnx-`` and the
    sha256 of its file, latency_db/keys.py), so that it fits the 64 characters the existing tables have."""
    return arch_id if len(arch_id) <= ID_CHARS else hashlib.sha256(arch_id.encode()).hexdigest()


class TrainCache:
    """``get`` / ``put`` of TrainResults by (arch_id, config_hash, data_id)."""

    def __init__(self, url: str | Engine) -> None:
        """``url``: the latency database (a URL or a bare SQLite path), or an engine already open on it."""
        self.engine = url if isinstance(url, Engine) else make_engine(url)
        create_tables(self.engine, metadata)

    @retry_transient
    def get(self, arch_id: str, config_hash: str, data_id: str) -> TrainResult | None:
        """The cached result with its weights, or None."""
        t = train_cache.c
        query = sa.select(train_cache).where(
            t.arch_id == row_id(arch_id), t.config_hash == config_hash, t.data_id == data_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None

        def flt(x: float | None) -> float:
            return math.nan if x is None else float(x)

        def curve(text: str) -> list[list[float]]:
            return [[a, flt(b)] for a, b in json.loads(text)]

        return TrainResult(
            psnr_db=flt(row["psnr_db"]), bicubic_psnr_db=flt(row["bicubic_psnr_db"]),
            psnr_gain_db=flt(row["psnr_gain_db"]), ssim=flt(row["ssim"]),
            loss_curve=curve(row["loss_curve"]), val_curve=curve(row["val_curve"]),
            train_s=float(row["train_s"]), moved=bool(row["moved"]),
            state_dict=dict(st_load(bytes(row["weights"]))),
            shift_consistency_db=flt(row["shift_consistency_db"]), temporal_psnr_db=flt(row["temporal_psnr_db"]),
        )

    def train(self, spec: ArchSpec, data: TaskData, config: TrainConfig, backend: Any, device: str,
              rungs: Sequence[int] = (), on_rung: Callable[[int, float], bool] | None = None,
              ) -> tuple[TrainResult, bool, float]:
        """``short_train`` through the cache: (result, whether it came from the cache, seconds waited for the
        device lock). A miss trains under ``backend``'s device lock, so no latency is timed meanwhile; it
        reports at ``rungs`` through ``on_rung`` (short_train). A full training is stored as the result; one
        stopped at a rung as a checkpoint, which the next training of the key resumes from."""
        from latency_db import device_lock
        from nas.training.train import short_train

        key = (spec.arch_id, config.hash(), data.data_id)
        result = self.get(*key)
        if result is not None:
            return result, True, 0.0
        partial = self.get_partial(*key)
        with device_lock(backend) as lock:
            try:
                result = short_train(spec, data, config, device=device, rungs=rungs, on_rung=on_rung, resume=partial)
            except CheckpointMismatch:  # stored by other code for this key: start over
                result = short_train(spec, data, config, device=device, rungs=rungs, on_rung=on_rung)
        if result.stopped_at is None:
            self.put(*key, result, config.to_dict())
            if partial is not None:
                self.delete_partial(*key)
        elif result.checkpoint is not None:
            self.put_partial(*key, result.checkpoint)
        return result, False, lock.waited_s

    @retry_transient
    def get_partial(self, arch_id: str, config_hash: str, data_id: str) -> Checkpoint | None:
        """The stored checkpoint of a training stopped at a rung, or None (also for a row that cannot be read)."""
        t = partial_trainings.c
        query = sa.select(t.step, t.tensors, t.meta).where(
            t.arch_id == row_id(arch_id), t.config_hash == config_hash, t.data_id == data_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        try:
            tensors, meta = dict(st_load(bytes(row.tensors))), json.loads(row.meta)
        except (SafetensorError, ValueError):  # unreadable: resuming is an optimization, train from scratch
            return None
        return Checkpoint(int(row.step), tensors, meta) if isinstance(meta, dict) else None

    @retry_transient
    def put_partial(self, arch_id: str, config_hash: str, data_id: str, checkpoint: Checkpoint) -> None:
        """Store a checkpoint unless one from a later step is already there (workers may race)."""
        values = {
            "arch_id": row_id(arch_id), "config_hash": config_hash, "data_id": data_id, "step": checkpoint.step,
            "tensors": st_save({k: v.contiguous() for k, v in checkpoint.tensors.items()}),
            "meta": json.dumps(checkpoint.meta), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        dialect = {"sqlite": sqlite, "postgresql": postgresql}.get(self.engine.dialect.name)
        with self.engine.begin() as conn:
            if dialect is None:  # other dialects: replace in one transaction
                self._delete_partial(conn, arch_id, config_hash, data_id)
                conn.execute(partial_trainings.insert().values(values))
                return
            stmt = dialect.insert(partial_trainings).values(values)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["arch_id", "config_hash", "data_id"],
                set_={k: stmt.excluded[k] for k in ("step", "tensors", "meta", "created")},
                where=partial_trainings.c.step < stmt.excluded.step))

    @retry_transient
    def delete_partial(self, arch_id: str, config_hash: str, data_id: str) -> None:
        """Forget a checkpoint once its training is stored in full."""
        with self.engine.begin() as conn:
            self._delete_partial(conn, arch_id, config_hash, data_id)

    @staticmethod
    def _delete_partial(conn: sa.Connection, arch_id: str, config_hash: str, data_id: str) -> None:
        t = partial_trainings.c
        conn.execute(partial_trainings.delete().where(
            t.arch_id == row_id(arch_id), t.config_hash == config_hash, t.data_id == data_id))

    @retry_transient
    def put(self, arch_id: str, config_hash: str, data_id: str, result: TrainResult,
            train_config: dict[str, Any] | None = None) -> bool:
        """Insert unless the key exists; True when this call inserted the row."""
        values = {
            "arch_id": row_id(arch_id), "config_hash": config_hash, "data_id": data_id,
            "psnr_db": _num(result.psnr_db), "bicubic_psnr_db": _num(result.bicubic_psnr_db),
            "psnr_gain_db": _num(result.psnr_gain_db), "ssim": _num(result.ssim),
            "shift_consistency_db": _num(result.shift_consistency_db),
            "temporal_psnr_db": _num(result.temporal_psnr_db),
            "loss_curve": _json_safe(result.loss_curve), "val_curve": _json_safe(result.val_curve),
            "train_s": float(result.train_s), "moved": bool(result.moved),
            "weights": st_save({k: v.contiguous() for k, v in result.state_dict.items()}),
            "train_config": json.dumps(train_config or {}, sort_keys=True),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        return insert_or_ignore(self.engine, train_cache, values)
