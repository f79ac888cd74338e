"""What a search does around each measurement: the latency predictor (screen, guide, second look) and
the CPU drift canary. Kept out of nas/search.py so that the search loop only calls four hooks.

``--predictor`` (default: screen, but only with a trusted predictor, see Predictor.screens):
  screen  a candidate predicted over the budget by more than the predictor's cross-validated 99th
          percentile relative error is recorded as predicted over budget, never measured nor trained;
  guide   screen, and the evolution sampler draws GUIDE_CHILDREN children and keeps the one
          predicted closest under the budget;
  off     every candidate is measured.
In screen and guide a measurement more than 3 predictor sigmas from its prediction is taken once more.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from nas.errors import NasError

if TYPE_CHECKING:
    from latency_db import Backend, LatencyStore, Workload
    from latency_db.predictor import Predictor
    from nas.target import Budget


class NoPredictorError(NasError):
    """Too few measured rows for this device, backend, protocol and workload (exit 1: measure first)."""


def get_predictor(store: LatencyStore, backend: Backend, workload: Workload, refit: bool = False) -> Predictor:
    """The predictor for this scope; too few rows is a one-line error."""
    from latency_db.predictor import PredictorError, predictor_for

    try:
        return predictor_for(store, backend, workload, refit=refit)
    except PredictorError as exc:
        raise NoPredictorError(f"no latency predictor for {backend.name} {backend.protocol.name} on "
                               f"{backend.fingerprint()['device']} at {workload.height}x{workload.width}: "
                               f"{exc}") from None


def describe(pred: Predictor) -> str:
    return (f"fitted on {pred.n_rows} rows; cross-validated: {100 * pred.cv_within_10:.1f} % within +-10 %, "
            f"p99 error {100 * pred.p99_rel_error:.1f} %, Kendall {pred.cv_kendall:.3f}; "
            f"screens by default: {'yes' if pred.screens else 'no'}")


PREDICTOR_MODES = ("off", "screen", "guide")
CANARY_EVERY = 10     # new CPU measurements between two canary readings
GUIDE_CHILDREN = 4    # children the guided sampler draws per trial


class LatencyGuard:
    """The predictor and the canary of one search."""

    def __init__(self, mode: str | None, backend: Any, store: Any, workload: Any, space: Any,
                 input_size: tuple[int, int], budget: Budget, say: Callable[[str], None]) -> None:
        from latency_db.canary import Canary
        from latency_db.predictor import PredictorError, predictor_for

        self.backend, self.store, self.workload, self.space = backend, store, workload, space
        self.input_size, self.budget, self.say = input_size, budget, say
        self.mode, self.predictor = mode or "screen", None
        self.screened = self.remeasured = 0
        self._rng = random.Random(0)
        if self.mode != "off":
            try:
                pred = predictor_for(store, backend, workload)
            except PredictorError as exc:
                if mode is not None:
                    raise NoPredictorError(f"--predictor {mode}: {exc}") from None
                say(f"predictor off (default screen needs a fitted predictor: {exc})")
                self.mode = "off"
            else:
                if mode is None and not pred.screens:
                    say(f"predictor off (not trusted to screen by default: {describe(pred)}); "
                        "--predictor screen forces it")
                    self.mode = "off"
                else:
                    self.predictor = pred
                    say(f"predictor {self.mode}: {describe(pred)}")
        self.canary = None if backend.is_gpu else Canary(backend, *input_size, store)
        self._since_canary = 0
        self._drifting = False

    # ------------------------------------------------------------------ canary
    def start(self) -> None:
        """Time the canary at the search's start (CPU backends)."""
        self._read_canary("search-start")

    def _read_canary(self, context: str) -> None:
        if self.canary is None:
            return
        reading = self.canary.read(context)
        warning = reading.warning()
        if warning and not self._drifting:
            self.say(warning)
        elif not warning and self._drifting:
            self.say(f"the drift canary is back within 10 % of its baseline ({reading.ratio:.2f}x)")
        self._drifting = warning is not None
        self._since_canary = 0

    def details(self) -> dict[str, Any]:
        """Stored with each new measurement: the latest canary ratio."""
        return {} if self.canary is None else self.canary.details()

    def canary_summary(self) -> dict[str, Any] | None:
        last = None if self.canary is None else self.canary.last
        return None if last is None else {"ratio": last.ratio, "baseline_ms": last.baseline_ms,
                                          "drifted": last.drifted, "readings": last.readings}

    # ------------------------------------------------------------------ predictor
    def predict(self, spec: Any) -> float | None:
        return None if self.predictor is None else self.predictor.predict(spec, self.workload)

    def screens_out(self, spec: Any, predicted: float | None) -> bool:
        """Predicted over the budget by more than the predictor's own p99 error, and not measured before
        (a stored latency costs nothing and beats a prediction): skip it."""
        from latency_db import latency_key

        if (predicted is None or self.predictor is None
                or not self.predictor.over_budget(predicted, self.budget.limit_ms)):
            return False
        if self.store.get(latency_key(spec, self.workload, self.backend)) is not None:
            return False
        self.screened += 1
        return True

    def after_measure(self, spec: Any, result: Any, predicted: float | None) -> Any:
        """Count the measurement for the canary; measure once more one that disagrees with its prediction.
        Returns the result to use."""
        from latency_db.measure import measure_again

        if result.cached or not result.ok:
            return result
        self._since_canary += 1
        if self._since_canary >= CANARY_EVERY:
            self._read_canary("periodic")
        if (predicted is not None and self.predictor is not None
                and self.predictor.disagrees(predicted, result.median_ms)):
            self.remeasured += 1
            return measure_again(spec, self.workload, self.backend, self.store, self.details())
        return result

    def guide(self) -> Callable[[list[dict[str, Any]]], int] | None:
        """For the evolution sampler in guide mode: the index of the child predicted closest under the budget
        (the least over it when none is under)."""
        if self.mode != "guide" or self.predictor is None:
            return None

        def pick(children: list[dict[str, Any]]) -> int:
            specs = [self.space.complete(c, self._rng, self.input_size)[0] for c in children]
            ms = self.predictor.predict_many(specs, [self.workload] * len(specs))
            under = [i for i, v in enumerate(ms) if self.budget.admits_ms(v)]
            return max(under, key=lambda i: ms[i]) if under else min(range(len(ms)), key=lambda i: ms[i])

        return pick
