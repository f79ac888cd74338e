"""A learned latency predictor per (device key, backend and version, builder, protocol, workload).

Fitted from the latency database's own rows: each measured architecture's layers become one
feature vector (``features``, the single place the network is read), a positive linear model over
additive costs (MACs and bytes per layer kind) gives a base estimate, and scikit-learn gradient
boosting learns the log ratio of the measured latency to that base. Five-fold cross-validation on
the fitted rows measures the predictor's own relative error (its 99th percentile is the screening
margin) and the spread of its log error (sigma, for spotting a measurement that disagrees with it).

latency_db knows nothing of Optuna or training; this module reads rows and specs only.
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from latency_db.contention import CONTENDED_CPUS
from latency_db.fingerprint import canonical, digest
from latency_db.paths import cache_dir
from latency_db.workload import Workload
from search_spaces import ArchSpec, count
from search_spaces.errors import UsageError

if TYPE_CHECKING:
    from latency_db.backends import Backend
    from latency_db.store import LatencyStore

MIN_FIT_ROWS = 20          # fewer measured rows than this: no predictor at all
SCREEN_MIN_ROWS = 100      # screening switches itself on only with at least this many rows ...
SCREEN_MAX_P99 = 0.25      # ... and a cross-validated 99th-percentile relative error at most this
LAYER_SLOTS = 12           # conv layers described one by one (in execution order); the rest only in sums
KINDS = (1, 2, 3, 5)       # conv kernel sizes (2: the strided 2x2 down conv of a level)
PREDICTOR_VERSION = 1      # bump when ``features`` or the model changes: saved predictors are refitted


class PredictorError(UsageError):
    """No predictor can be had (too few rows, none fitted); one line, for the user."""


@dataclass(frozen=True)
class FitRow:
    """One measured architecture: what the predictor learns from."""

    spec: ArchSpec
    workload: Workload
    latency_ms: float


def _conv_layers(spec: ArchSpec, height: int, width: int) -> list[tuple[int, int, int, int, int]]:
    """(cin, cout, kernel, out_h, out_w) of every conv in execution order (the fixed luma 1x1 included),
    read from the spec's plan (search_spaces.plan: the one walk of a topology)."""
    from search_spaces.plan import CONV, LUMA, plan

    return [(op.cin, op.cout, op.kernel, op.height, op.width) for op in plan(spec, height, width)
            if op.kind in (CONV, LUMA)]


def features(spec: ArchSpec, workload: Workload) -> dict[str, float]:
    """The feature vector of one network under one workload: whole-network counts (count()), per-kernel
    sums of MACs and bytes, width alignment, and the first LAYER_SLOTS conv layers one by one.
    The one place the predictor reads a network."""
    H, W, s = workload.height, workload.width, spec.scale
    n = count(spec, H, W, batch=workload.batch, bytes_per_element=workload.bytes_per_element)
    layers = _conv_layers(spec, H, W)
    feats: dict[str, float] = {
        "macs": n.macs / 1e6, "activation_mb": n.activation_bytes / 1e6, "weight_kb": n.weight_bytes / 1e3,
        "log_macs": math.log1p(n.macs), "log_activation_bytes": math.log1p(n.activation_bytes),
        "pixels": H * W * workload.batch / 1e3, "out_pixels": H * W * s * s * workload.batch / 1e3,
        "scale": s, "space_to_depth": spec.space_to_depth, "luma": float(spec.color == "luma"),
        "skip_add": float(spec.skip == "add"), "long_skip": float(spec.long_skip), "levels": len(spec.levels),
        "convs": len(layers),
    }
    for kind in ("nearest", "bilinear", "bicubic"):  # the classical base: its cost scales with output pixels
        feats[f"resize_{kind}_out_pixels"] = feats["out_pixels"] * (spec.upsample == kind)
    for k in KINDS:
        picked = [ly for ly in layers if ly[2] == k]
        feats[f"k{k}_layers"] = len(picked)
        feats[f"k{k}_macs"] = sum(ci * co * k * k * h * w for ci, co, _, h, w in picked) * workload.batch / 1e6
        feats[f"k{k}_out_mb"] = sum(co * h * w for _, co, _, h, w in picked) * workload.batch * 4 / 1e6
    for block in (8, 16):  # vector blocking: a width off the block pads every pixel's channels
        feats[f"macs_off_{block}"] = sum(ci * co * k * k * h * w for ci, co, k, h, w in layers
                                         if co % block or ci % block) * workload.batch / 1e6
    feats["max_width"] = max(co for _, co, _, _, _ in layers)
    for i in range(LAYER_SLOTS):
        ci, co, k, h, w = layers[i] if i < len(layers) else (0, 0, 0, 0, 0)
        feats |= {f"l{i}_cin": ci, f"l{i}_cout": co, f"l{i}_kernel": k, f"l{i}_pixels": h * w / 1e3}
    return feats


# Additive cost terms for the positive linear base: time ~ sum of per-kind MACs, bytes and layer counts.
_BASE = (*(f"k{k}_macs" for k in KINDS), *(f"k{k}_out_mb" for k in KINDS), *(f"k{k}_layers" for k in KINDS),
         "activation_mb", "macs_off_16", "resize_nearest_out_pixels", "resize_bilinear_out_pixels",
         "resize_bicubic_out_pixels")


def _matrix(specs: list[ArchSpec], workloads: list[Workload]) -> tuple[Any, Any]:
    import numpy as np

    rows = [features(s, w) for s, w in zip(specs, workloads)]
    names = list(rows[0])
    full = np.array([[r[n] for n in names] for r in rows], dtype=float)
    base = np.array([[r[n] for n in _BASE] for r in rows], dtype=float)
    return full, base


class _Model:
    """Positive linear base over additive costs, times exp(gradient-boosted log correction)."""

    def __init__(self, seed: int) -> None:
        from sklearn.ensemble import GradientBoostingRegressor
        from sklearn.linear_model import LinearRegression

        self.base = LinearRegression(positive=True)
        self.boost = GradientBoostingRegressor(n_estimators=300, learning_rate=0.05, max_depth=3, subsample=0.8,
                                               min_samples_leaf=3, random_state=seed)

    def fit(self, full: Any, base: Any, y_ms: Any) -> _Model:
        import numpy as np

        self.base.fit(base, y_ms)
        b = np.maximum(self.base.predict(base), 1e-3)
        self.boost.fit(np.column_stack([full, np.log(b)]), np.log(y_ms / b))
        return self

    def predict(self, full: Any, base: Any) -> Any:
        import numpy as np

        b = np.maximum(self.base.predict(base), 1e-3)
        return b * np.exp(self.boost.predict(np.column_stack([full, np.log(b)])))


@dataclass
class Predictor:
    """A fitted predictor and what cross-validation measured of it on its own rows."""

    model: _Model
    n_rows: int
    cv_within_10: float        # share of out-of-fold predictions within +-10 %
    p99_rel_error: float       # 99th percentile of out-of-fold |pred / measured - 1|
    sigma_log: float           # standard deviation of out-of-fold log(pred / measured)
    cv_kendall: float
    scope: dict[str, Any] = field(default_factory=dict)  # what it is true for (device key, backend, ...)
    version: int = PREDICTOR_VERSION

    def predict(self, spec: ArchSpec, workload: Workload) -> float:
        """Predicted median latency in milliseconds."""
        return self.predict_many([spec], [workload])[0]

    def predict_many(self, specs: list[ArchSpec], workloads: list[Workload]) -> list[float]:
        full, base = _matrix(specs, workloads)
        return [float(v) for v in self.model.predict(full, base)]

    @property
    def screens(self) -> bool:
        """Whether it is trusted to screen by default: enough rows and a tight enough error tail."""
        return self.n_rows >= SCREEN_MIN_ROWS and self.p99_rel_error <= SCREEN_MAX_P99

    def over_budget(self, predicted_ms: float, budget_ms: float) -> bool:
        """Predicted over the budget by more than the 99th-percentile relative error: safe to skip."""
        return predicted_ms > budget_ms * (1.0 + self.p99_rel_error)

    def disagrees(self, predicted_ms: float, measured_ms: float) -> bool:
        """A measurement more than 3 sigmas (in log space) from the prediction: worth measuring again."""
        return abs(math.log(measured_ms / predicted_ms)) > 3.0 * self.sigma_log

    def summary(self) -> dict[str, Any]:
        return {"rows": self.n_rows, "cv_within_10": self.cv_within_10, "p99_rel_error": self.p99_rel_error,
                "sigma_log": self.sigma_log, "cv_kendall": self.cv_kendall, "screens": self.screens,
                "scope": self.scope}


def fit_predictor(rows: list[FitRow], seed: int = 0, scope: dict[str, Any] | None = None) -> Predictor:
    """Fit on ``rows``; five-fold cross-validation first measures the error of this recipe on them."""
    import numpy as np
    from scipy.stats import kendalltau
    from sklearn.model_selection import KFold

    if len(rows) < MIN_FIT_ROWS:
        raise PredictorError(f"{len(rows)} measured rows match; a predictor needs at least {MIN_FIT_ROWS} "
                             "(run a search or nas latency on this device first)")
    full, base = _matrix([r.spec for r in rows], [r.workload for r in rows])
    y = np.array([r.latency_ms for r in rows], dtype=float)
    oof = np.empty_like(y)
    for train, test in KFold(n_splits=5, shuffle=True, random_state=seed).split(full):
        oof[test] = _Model(seed).fit(full[train], base[train], y[train]).predict(full[test], base[test])
    rel = np.abs(oof / y - 1.0)
    return Predictor(model=_Model(seed).fit(full, base, y), n_rows=len(rows),
                     cv_within_10=float(np.mean(rel <= 0.10)), p99_rel_error=float(np.quantile(rel, 0.99)),
                     sigma_log=float(np.std(np.log(oof / y))), cv_kendall=float(kendalltau(oof, y)[0]),
                     scope=scope or {})


# ---------------------------------------------------------------------- rows of the database
def scope_of(backend: Backend, workload: Workload) -> dict[str, Any]:
    """Everything a row must share with this backend and workload to be fitted on (the key minus arch_id)."""
    fp = backend.fingerprint()
    return {"device": fp["key"], "backend": backend.name, "backend_version": fp["backend_version"],
            "builder": backend.builder_settings(workload), "protocol": backend.protocol.name,
            "workload": workload.to_dict(), "precision": backend.precision(workload)}


def rows_for_fit(store: LatencyStore, backend: Backend, workload: Workload,
                 include_contended: bool = False) -> list[FitRow]:
    """The store's measured rows for exactly this device key, backend, builder, protocol and workload,
    whose spec is stored; rows timed beside other busy processes are left out unless asked for."""
    scope = scope_of(backend, workload)
    specs: dict[str, str] | None = None
    out = []
    candidates = store.rows_where(backend=backend.name, protocol=backend.protocol.name, status="ok",
                                  height=workload.height, width=workload.width, batch=workload.batch,
                                  scale=workload.scale, io_dtype=workload.io_dtype)
    for row in candidates:
        key = json.loads(row["key_json"])
        if (canonical(key["device"]) != canonical(scope["device"]) or key["backend_version"] != scope["backend_version"]
                or canonical(key["builder"]) != canonical(scope["builder"]) or key["workload"] != scope["workload"]
                or row["median_ms"] is None):
            continue
        others = json.loads(row["details_json"] or "{}").get("background_cpus")
        if not include_contended and (others or 0.0) > CONTENDED_CPUS:
            continue
        if specs is None:
            specs = store.specs()
        if row["arch_id"] in specs:
            out.append(FitRow(ArchSpec.from_json(specs[row["arch_id"]]), workload, float(row["median_ms"])))
    return out


def predictor_path(scope: dict[str, Any]) -> Path:
    """Where the predictor of this scope is saved (the user cache dir; never shared)."""
    return cache_dir() / "predictors" / f"{digest(scope)[:32]}.pkl"


def save(pred: Predictor) -> Path:
    path = predictor_path(pred.scope)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(pred))
    tmp.replace(path)
    return path


def load(scope: dict[str, Any]) -> Predictor | None:
    """The saved predictor of this scope, or None (absent, or written by another predictor version)."""
    path = predictor_path(scope)
    if not path.exists():
        return None
    pred = pickle.loads(path.read_bytes())  # our own cache file, written by ``save``
    return pred if getattr(pred, "version", None) == PREDICTOR_VERSION and pred.scope == scope else None


def predictor_for(store: LatencyStore, backend: Backend, workload: Workload, refit: bool = False) -> Predictor:
    """The predictor for this device, backend, protocol and workload: the saved one while the store holds
    no new rows for it, else fitted now and saved. Raises PredictorError when too few rows match."""
    scope = scope_of(backend, workload)
    rows = rows_for_fit(store, backend, workload)
    saved = None if refit else load(scope)
    if saved is not None and saved.n_rows == len(rows):
        return saved
    if len(rows) < MIN_FIT_ROWS:
        busy = len(rows_for_fit(store, backend, workload, include_contended=True)) - len(rows)
        raise PredictorError(f"{len(rows)} measured rows match ({busy} more were timed while other processes used "
                             f"more than {CONTENDED_CPUS} CPU and are left out); a predictor needs at least "
                             f"{MIN_FIT_ROWS}: measure on this device first, on a quiet machine")
    pred = fit_predictor(rows, scope=scope)
    save(pred)
    return pred
