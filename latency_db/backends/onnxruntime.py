"""ONNX Runtime on the CPU: intra-op threads = physical cores, sequential, full graph optimization."""

from __future__ import annotations

from typing import Any

from latency_db.backends.base import BuildError, HostSession, Session
from latency_db.backends.cpu import CpuBackend
from latency_db.candidates import Candidate
from latency_db.fingerprint import library_version
from latency_db.workload import Workload


class _OrtSession(HostSession):
    def __init__(self, sess: Any, feed: dict[str, Any]) -> None:
        self.sess, self.feed = sess, feed
        self.details = {"providers": sess.get_providers()}

    def run_once(self) -> None:
        self.sess.run(None, self.feed)


class OnnxRuntimeBackend(CpuBackend):
    name = "onnxruntime"
    library = "onnxruntime"

    def builder_settings(self, workload: Workload) -> dict[str, Any]:
        return {"provider": "CPUExecutionProvider", "graph_optimization": "ORT_ENABLE_ALL",
                "execution_mode": "sequential", "intra_op_threads": self.threads, "inter_op_threads": 1,
                "exporter": f"torch {library_version('torch')}"}

    def _open(self, spec: Candidate, workload: Workload) -> Session:
        import numpy as np
        import onnxruntime as ort

        graph = self.graph(spec, workload)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            sess = ort.InferenceSession(graph, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise BuildError(f"ONNX Runtime session build failed: {exc}") from exc
        dtype = np.float16 if workload.io_dtype == "fp16" else np.float32
        x = np.random.default_rng(0).random(workload.shape, dtype=np.float32).astype(dtype)
        return _OrtSession(sess, {sess.get_inputs()[0].name: x})
