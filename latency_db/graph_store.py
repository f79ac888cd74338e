"""The user's ONNX graphs in the latency database, by content: how a ``--baseline`` travels to agents (docs/agents.md).

A search with ``--target`` and ``--baseline`` stores each graph's bytes once in ``nas_graphs`` (keyed by their
sha256) and queues a ``graph`` job whose arch_id is the graph's id (``onnx-`` + that hash) and whose spec names the
hash. The agent fetches the bytes, checks their hash and checks them as data (``check_graph``: ``onnx.load`` from
bytes, ``onnx.checker``, one NCHW frame in and out, RGB or luma, float32 or float16: the checks of
nas/baseline/load.py) before its own backend builds them: nothing in a job runs as code, nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from latency_db.graph import OnnxGraph
from latency_db.keys import GRAPH_ID_PREFIX
from latency_db.retry import retry_transient
from latency_db.schema import graphs
from latency_db.store import now_iso
from search_spaces.errors import NasError

if TYPE_CHECKING:
    from latency_db.store import LatencyStore
    from latency_db.workload import Workload

DTYPES = {1: "fp32", 10: "fp16"}  # ONNX elem types: FLOAT, FLOAT16
CHANNELS = {3: "rgb", 1: "luma"}
SHA256 = re.compile(r"[0-9a-f]{64}")


class GraphError(NasError):
    """Bytes that are not a graph a baseline can be (or that do not match their hash): one line, why."""


@dataclass(frozen=True)
class GraphInfo:
    """What the checks read from a graph: its channels (3 or 1), IO dtype and input dimensions (None: dynamic)."""

    channels: int
    io_dtype: str
    in_dims: list[int | None]


def _dims(value: Any) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value.type.tensor_type.shape.dim]


def check_graph(data: bytes) -> GraphInfo:
    """The graph read as data and checked (one frame in and out, float32 or float16, RGB or luma, batch 1);
    GraphError with the reason when it cannot be a baseline."""
    import onnx

    try:
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001  protobuf and the checker raise many types; all mean "not a graph"
        raise GraphError(f"not a valid ONNX model ({type(exc).__name__}: {str(exc)[:120]})") from None
    g = model.graph
    inits = {t.name for t in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1 or len(g.output) != 1:
        raise GraphError(f"has {len(inputs)} inputs and {len(g.output)} outputs; a baseline has one of each")
    inp, out = inputs[0], g.output[0]
    in_dims, out_dims = _dims(inp), _dims(out)
    if len(in_dims) != 4 or len(out_dims) != 4:
        raise GraphError(f"input of rank {len(in_dims)} and output of rank {len(out_dims)}: a baseline takes "
                         "and gives one NCHW frame (rank 4)")
    in_type, out_type = inp.type.tensor_type.elem_type, out.type.tensor_type.elem_type
    if in_type not in DTYPES or out_type != in_type:
        raise GraphError("input and output must both be float32 or both float16")
    channels = in_dims[1]
    if channels not in CHANNELS or out_dims[1] not in (None, channels):
        shown = [str(c) if c else "a dynamic number of" for c in (channels, out_dims[1])]
        raise GraphError(f"takes {shown[0]} channels and gives {shown[1]}: a baseline is RGB in and out (3) "
                         "or luma in and out (1)")
    if in_dims[0] not in (None, 1):
        raise GraphError(f"its batch is fixed at {in_dims[0]}; one frame a call (batch 1) is timed")
    assert channels is not None
    return GraphInfo(channels=channels, io_dtype=DTYPES[in_type], in_dims=in_dims)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@retry_transient
def put_graph(store: LatencyStore, data: bytes) -> str:
    """Store the graph's bytes unless they are there already; returns their sha256 (what a job names)."""
    sha = sha256_of(data)
    if store.dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    stmt = insert(graphs).on_conflict_do_nothing(index_elements=["sha256"])
    with store.engine.begin() as conn:
        conn.execute(stmt, {"sha256": sha, "data": data, "size": len(data), "stored_at": now_iso()})
    return sha


@retry_transient
def fetch_graph(store: LatencyStore, sha: str) -> bytes | None:
    """The stored bytes named ``sha`` (as stored: the caller checks them), or None."""
    with store.engine.connect() as conn:
        data = conn.execute(select(graphs.c.data).where(graphs.c.sha256 == sha)).scalar()
    return None if data is None else bytes(data)


def graph_job_spec(graph: OnnxGraph) -> str:
    """A graph job's spec: the hash of the stored bytes and the baseline's name (data, never the graph itself)."""
    return json.dumps({"onnx_sha256": graph.arch_id[len(GRAPH_ID_PREFIX):], "name": graph.name}, sort_keys=True)


def graph_of_job(store: LatencyStore, arch_id: str, spec_json: str, workload: Workload) -> OnnxGraph:
    """The graph a job names, fetched, its hash and content checked, fitting the job's workload; GraphError
    with the one-line reason otherwise."""
    try:
        spec = json.loads(spec_json)
        sha, name = str(spec["onnx_sha256"]), str(spec.get("name") or "baseline")
    except (ValueError, TypeError, KeyError):
        raise GraphError("the job's spec does not name a graph by its sha256") from None
    if not SHA256.fullmatch(sha) or arch_id != GRAPH_ID_PREFIX + sha:
        raise GraphError(f"the job names graph {arch_id[:20]!r} and hash {sha[:16]!r}: they must agree")
    data = fetch_graph(store, sha)
    if data is None:
        raise GraphError(f"no graph with sha256 {sha[:16]}... is stored in the latency database")
    if sha256_of(data) != sha:
        raise GraphError(f"the stored bytes of graph {sha[:16]}... do not match their sha256 "
                         f"({sha256_of(data)[:16]}...)")
    info = check_graph(data)
    if info.channels != workload.channels or info.io_dtype != workload.io_dtype:
        raise GraphError(f"the graph takes {info.channels} channels in {info.io_dtype}; the job's workload is "
                         f"{workload.channels} in {workload.io_dtype}")
    return OnnxGraph(data=data, channels=info.channels, scale=workload.scale, io_dtype=info.io_dtype, name=name[:64])
