"""The int8 cache: a trained net's int8 quality (nas/training/quantize.py) by (arch_id, int8 key, data fingerprint).

The int8 key (``quantize.int8_key``) is the float training's config hash with the precision and the int8 recipe
folded in, so an int8 row never answers for the float training of the same net, nor the float row for it. Rows are
insert-or-ignore (quantization and QAT are deterministic for a key); weights are safetensors, never pickled.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import sqlalchemy as sa
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from sqlalchemy.engine import Engine

from latency_db.engine import create_tables, insert_or_ignore
from latency_db.retry import retry_transient
from nas.training.quantize import Int8Result

TABLE = "nas_int8_cache_v1"
metadata = sa.MetaData()
int8_cache = sa.Table(
    TABLE, metadata,
    sa.Column("arch_id", sa.String(64), primary_key=True),
    sa.Column("int8_key", sa.String(64), primary_key=True),
    sa.Column("data_id", sa.String(64), primary_key=True),
    sa.Column("figures", sa.Text, nullable=False),            # JSON of Int8Result's numbers (NaN as null)
    sa.Column("graph", sa.LargeBinary, nullable=False),       # the QDQ ONNX graph
    sa.Column("weights", sa.LargeBinary, nullable=False),     # safetensors bytes of its float weights
    sa.Column("created", sa.String(32), nullable=False),      # ISO 8601 UTC
)
NUMBERS = ("float_gain_db", "ptq_gain_db", "qat_gain_db", "psnr_db", "bicubic_psnr_db", "ssim", "int8_s")


class Int8Cache:
    """``get`` / ``put`` of Int8Results in the latency database (the training cache's engine)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_tables(engine, metadata)

    @retry_transient
    def get(self, arch_id: str, key: str, data_id: str) -> Int8Result | None:
        t = int8_cache.c
        query = sa.select(int8_cache).where(t.arch_id == arch_id, t.int8_key == key, t.data_id == data_id)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            return None
        figures = json.loads(row["figures"])
        numbers = {k: math.nan if figures.get(k) is None else float(figures[k]) for k in NUMBERS}
        return Int8Result(**numbers, qat_steps=int(figures["qat_steps"]), graph=bytes(row["graph"]),
                          state_dict=dict(st_load(bytes(row["weights"]))))

    @retry_transient
    def put(self, arch_id: str, key: str, data_id: str, result: Int8Result) -> None:
        figures = {k: (None if not math.isfinite(getattr(result, k)) else getattr(result, k)) for k in NUMBERS}
        values = {"arch_id": arch_id, "int8_key": key, "data_id": data_id,
                  "figures": json.dumps({**figures, "qat_steps": result.qat_steps}, sort_keys=True),
                  "graph": result.graph,
                  "weights": st_save({k: v.contiguous() for k, v in result.state_dict.items()}),
                  "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        insert_or_ignore(self.engine, int8_cache, values)
