"""The latency database's tables (SQLAlchemy Core), versioned by ``SCHEMA_VERSION`` in ``nas_meta``.

Tables may be added without a version bump (``LatencyStore`` creates missing ones); changing a column
of an existing table needs one, and a database of another version is never modified.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Integer, LargeBinary, MetaData, String, Table, Text

SCHEMA_VERSION = 1

metadata = MetaData()

meta = Table("nas_meta", metadata, Column("name", String(64), primary_key=True), Column("value", Text))

latency = Table(
    "latency", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("key_json", Text, nullable=False),
    Column("arch_id", String(80), nullable=False, index=True),
    Column("summary", Text),
    Column("backend", String(32), nullable=False),
    Column("backend_version", String(64), nullable=False),
    Column("device", Text, nullable=False),
    Column("protocol", String(64), nullable=False),
    Column("batch", Integer, nullable=False),
    Column("channels", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("width", Integer, nullable=False),
    Column("scale", Integer, nullable=False),
    Column("io_dtype", String(8), nullable=False),
    Column("precision", String(8), nullable=False),
    Column("status", String(8), nullable=False),  # 'ok' or 'error'
    Column("error", Text),
    Column("median_ms", Float),
    Column("p10_ms", Float),
    Column("p90_ms", Float),
    Column("p99_ms", Float),
    Column("mean_ms", Float),
    Column("cov", Float),
    Column("n_samples", Integer, nullable=False),
    Column("samples_json", Text, nullable=False),
    Column("unstable", Boolean, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("build_s", Float),
    Column("roofline_ms", Float),
    Column("host", String(255)),
    Column("measured_at", String(40), nullable=False),
    Column("fingerprint_json", Text, nullable=False),  # full fingerprint incl. UUID and telemetry
    Column("details_json", Text, nullable=False),      # e.g. cuda_graph, launches_per_sample
)

device_peaks = Table(
    "device_peaks", metadata,
    Column("device_hash", String(64), primary_key=True),
    Column("device", Text, nullable=False),
    Column("peak_gflops", Float, nullable=False),
    Column("bandwidth_gbs", Float, nullable=False),
    Column("measured_at", String(40), nullable=False),
)

# The architecture behind each arch_id (ArchSpec canonical JSON), so a predictor can be fitted from the
# rows alone. Added after schema version 1 without changing it: an older nas ignores the table, and a
# database without it gets it on first open.
arch_specs = Table(
    "arch_specs", metadata,
    Column("arch_id", String(80), primary_key=True),
    Column("spec_json", Text, nullable=False),
)

# The drift canary's history (latency_db/canary.py): one fixed network timed again and again per scope
# (device key, backend and version, builder, protocol, workload). Additive, like arch_specs.
canary_runs = Table(
    "canary_runs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope_hash", String(64), nullable=False, index=True),
    Column("scope_json", Text, nullable=False),
    Column("canary", String(32), nullable=False),
    Column("median_ms", Float, nullable=False),
    Column("cov", Float, nullable=False),
    Column("background_cpus", Float),
    Column("context", String(64), nullable=False),
    Column("host", String(255)),
    Column("measured_at", String(40), nullable=False),
)

# Latency agents and their measurement jobs (latency_db/jobs.py, docs/agents.md): an agent on a target device
# registers here and claims the jobs of its name; a search submits jobs and reads their rows back. Additive, like
# arch_specs. Times are seconds since the epoch on the database server's clock, so that machines whose clocks
# disagree still agree on leases and heartbeats.
agents = Table(
    "nas_agents", metadata,
    Column("agent_id", String(36), primary_key=True),
    Column("name", String(128), nullable=False, index=True),
    Column("host", String(255)),
    Column("pid", Integer),
    Column("device", Text, nullable=False),             # the device's short name
    Column("key_json", Text, nullable=False),           # the latency key's fields other than arch and workload
    Column("fingerprint_json", Text, nullable=False),
    Column("backend", String(32), nullable=False),
    Column("backend_version", String(64), nullable=False),
    Column("protocol", String(64), nullable=False),
    Column("io_dtype", String(8), nullable=False),
    Column("lease_s", Float, nullable=False),           # a beat older than this: the agent is gone
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("stopped_at", Float),
    Column("jobs_done", Integer, nullable=False),
    Column("jobs_failed", Integer, nullable=False),
)

jobs = Table(
    "nas_jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("target", String(128), nullable=False, index=True),  # the agents' name
    Column("protocol", String(64), nullable=False),             # only an agent timing with it claims the job
    Column("kind", String(8), nullable=False),                  # measure (cache first), refine (one more visit), graph
    Column("arch_id", String(80), nullable=False),
    Column("spec_json", Text, nullable=False),                  # the validated spec, or a graph's hash: never code
    Column("workload_json", Text, nullable=False),
    Column("state", String(8), nullable=False, index=True),     # pending, running, done, failed
    Column("agent_id", String(36)),
    Column("attempts", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("claimed_at", Float),
    Column("expires_at", Float),                                # the claim's lease
    Column("finished_at", Float),
    Column("key_json", Text),                                   # the latency row's key, when one was stored
    Column("error", Text),                                      # one line, for a failed job
    Column("requested_by", String(255)),
)

# The user's ONNX graphs (``--baseline``) that agents measure (latency_db/graph_store.py): the file's bytes once,
# keyed by their sha256; a graph job names the hash. Additive, like arch_specs.
graphs = Table(
    "nas_graphs", metadata,
    Column("sha256", String(64), primary_key=True),
    Column("data", LargeBinary, nullable=False),         # the ONNX protobuf as the user gave it: data, never code
    Column("size", Integer, nullable=False),
    Column("stored_at", String(40), nullable=False),
)

ROW_COLUMNS = tuple(c.name for c in latency.columns if c.name != "id")
