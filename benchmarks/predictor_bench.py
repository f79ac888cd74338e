"""Benchmark of the learned latency predictor (reports/predictor.md) on this machine with ONNX Runtime.

``collect`` measures random sr2x architectures at 135x240 (``--protocol``, default ``fast``: cpu-fast-v4, each
row settled by interleaved visits as ``nas`` settles a close call; ``fast-v1``: one block) into one latency
database: a training pool (seeds 0..N-1) and a held-out set (seeds 10000..); run it under the CPU
benchmark lock. ``evaluate`` fits the predictor on the first 50/100/200/400 training rows and prints,
per size, the share of held-out architectures predicted within +-10 % and Kendall's tau, beside
MACs alone (Spearman and Kendall of MACs against latency). Prints Markdown.

    flock /tmp/nas-cpu-bench.lock python benchmarks/predictor_bench.py collect --db bench/predictor/latency.db
    python benchmarks/predictor_bench.py evaluate --db bench/predictor/latency.db
    flock /tmp/nas-cpu-bench.lock python benchmarks/predictor_bench.py repeat --db bench/predictor/latency.db \
        --into bench/predictor/repeat.db

``collect`` and ``evaluate`` draw their architectures from the current sr2x space, so a database collected
under an older space version needs a new ``collect``. ``repeat`` needs no draw: it measures again, in a
fresh database, every architecture the first one stores, and prints how often two measurements of the same
net at different moments agree within +-10 % (the ceiling for any predictor judged against one of them).
Every other net is measured right after the predictor (fitted on the first database) predicted all of
them, so the ratios with and without that work just before show whether it slows the timing that follows.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

from latency_db import LatencyStore, get_backend, measure_or_get, workload_for
from latency_db.fingerprint import cpu_model, physical_cores
from latency_db.measure import settle_all
from search_spaces import ArchSpec, get_space

H, W = 135, 240
TEST_SEED0 = 10_000


def specs(first_seed: int, n: int) -> list[ArchSpec]:
    """``n`` distinct random sr2x architectures drawn from seeds ``first_seed``, ``first_seed + 1``, ..."""
    space, out, seen, seed = get_space("sr2x"), [], set(), first_seed
    while len(out) < n:
        spec = space.random_spec(random.Random(seed), (H, W))
        seed += 1
        if spec.arch_id not in seen:
            seen.add(spec.arch_id)
            out.append(spec)
    return out


def collect(args: argparse.Namespace) -> None:
    """Measure the training pool and the held-out set (cache hits for what is already stored)."""
    store = LatencyStore(args.db)
    backend = get_backend("onnxruntime", protocol=args.protocol)
    t0 = time.perf_counter()
    todo = specs(0, args.train) + specs(TEST_SEED0, args.test)
    results = timed(todo, backend, store)
    contended = sum(r.contended for r in results)
    print(f"measured {len(todo)} architectures ({backend.protocol.name}) in {time.perf_counter() - t0:.0f} s on "
          f"{cpu_model()} ({physical_cores()} cores); {contended} measured while other processes used > 0.25 CPU")


def timed(todo: list[ArchSpec], backend: object, store: LatencyStore) -> list:
    """Every spec measured (cache first); a windowed protocol's rows settled by interleaved visits."""
    items = [(spec, workload_for(spec, H, W, "fp32")) for spec in todo]
    if backend.protocol.windows is not None:
        return settle_all(items, backend, store)
    results = []
    for i, (spec, workload) in enumerate(items):
        results.append(measure_or_get(spec, workload, backend, store))
        if i % 25 == 0:
            print(f"{i}/{len(items)}", file=sys.stderr)
    return results


def evaluate(args: argparse.Namespace) -> None:
    """Fit on growing training prefixes and score on the held-out set."""
    from scipy.stats import kendalltau, spearmanr

    from latency_db.predictor import fit_predictor, rows_for_fit
    from search_spaces import count

    store = LatencyStore(args.db)
    backend = get_backend("onnxruntime", protocol=args.protocol)
    train_specs, test_specs = specs(0, args.train), specs(TEST_SEED0, args.test)
    for spec in train_specs + test_specs:  # rows measured before specs were stored with them
        store.put_spec(spec.arch_id, spec.canonical_json())
    workload = workload_for(train_specs[0], H, W, "fp32")
    rows = rows_for_fit(store, backend, workload, include_contended=args.include_contended)
    by_arch = {r.spec.arch_id: r for r in rows}
    train = [by_arch[s.arch_id] for s in train_specs if s.arch_id in by_arch]
    seen = {r.spec.arch_id for r in train}
    test = [by_arch[s.arch_id] for s in test_specs if s.arch_id in by_arch and s.arch_id not in seen]
    print(f"training pool {len(train)} of {len(train_specs)}, held-out {len(test)} of {len(test_specs)} (those also "
          f"in the training pool left out) "
          f"({'contended rows included' if args.include_contended else 'contended rows left out'})")
    truth = [r.latency_ms for r in test]
    macs = [count(r.spec, H, W).macs for r in test]
    print(f"held-out: {len(test)} architectures, latency {min(truth):.2f}..{max(truth):.2f} ms "
          f"(median {statistics.median(truth):.2f}); MACs alone: Spearman {spearmanr(macs, truth)[0]:.3f}, "
          f"Kendall {kendalltau(macs, truth)[0]:.3f}")
    print()
    print("| training rows | within +-10 % | within +-5 % | Kendall tau | Spearman | median abs rel error | "
          "p99 rel error (CV) | fit s |")
    print("|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        if n > len(train):
            break
        t = time.perf_counter()
        pred = fit_predictor(train[:n], seed=0)
        fit_s = time.perf_counter() - t
        guess = pred.predict_many([r.spec for r in test], [r.workload for r in test])
        rel = [abs(g / y - 1) for g, y in zip(guess, truth)]
        within10 = sum(e <= 0.10 for e in rel) / len(rel)
        within5 = sum(e <= 0.05 for e in rel) / len(rel)
        print(f"| {n} | {100 * within10:.1f} % | {100 * within5:.1f} % | {kendalltau(guess, truth)[0]:.3f} | "
              f"{spearmanr(guess, truth)[0]:.3f} | {100 * statistics.median(rel):.1f} % | "
              f"{100 * pred.p99_rel_error:.1f} % | {fit_s:.1f} |")
        last = (pred, guess)
    pred, guess = last
    print()
    print(f"Screening replay with the predictor fitted on {pred.n_rows} rows (margin = its CV p99 error "
          f"{100 * pred.p99_rel_error:.1f} %): the {len(test)} held-out architectures as the candidates of a random "
          "search, every one of them measured, at budgets on their latency quantiles.")
    print()
    print("| budget ms (quantile) | feasible | screened (measurements saved) | feasible wrongly screened |")
    print("|---|---|---|---|")
    ordered = sorted(truth)
    for q in (0.10, 0.25, 0.50):
        budget = ordered[int(q * (len(ordered) - 1))]
        screened = [i for i, g in enumerate(guess) if pred.over_budget(g, budget)]
        print(f"| {budget:.2f} ({q:.2f}) | {sum(t <= budget for t in truth)} | {len(screened)} | "
              f"{sum(truth[i] <= budget for i in screened)} |")


def repeat(args: argparse.Namespace) -> None:
    """Measure every stored architecture again in a fresh database; agreement between the two moments, and
    whether predicting just before a measurement changes it."""
    from scipy.stats import kendalltau

    from latency_db.predictor import fit_predictor, rows_for_fit

    first = LatencyStore(args.db)
    backend = get_backend("onnxruntime", protocol=args.protocol)
    probe = specs(0, 1)[0]
    rows = rows_for_fit(first, backend, workload_for(probe, H, W, "fp32"), include_contended=args.include_contended)
    pred = fit_predictor(rows, seed=0)
    every = [r.spec for r in rows]
    second = LatencyStore(args.into)
    t0, ratios = time.perf_counter(), {"plain": [], "after predict": []}
    if backend.protocol.windows is not None:  # settled by interleaved rounds: no per-net "just after predict" split
        again = [r.median_ms for r in timed(every, backend, second)]
    else:
        again = []
        for i, row in enumerate(rows):
            if i % 2:  # the predictor's work (scikit-learn, NumPy threads) right before the timing
                pred.predict_many(every, [row.workload] * len(every))
            again.append(measure_or_get(row.spec, row.workload, backend, second).median_ms)
    pairs = []
    for i, (row, ms) in enumerate(zip(rows, again)):
        if ms is None:
            continue
        group = "after predict" if i % 2 and backend.protocol.windows is None else "plain"
        ratios[group].append(ms / row.latency_ms)
        pairs.append((row.latency_ms, ms))
    ratios = {k: v for k, v in ratios.items() if v}
    every_ratio = [v for values in ratios.values() for v in values]
    print(f"{len(pairs)} architectures measured again on {cpu_model()} ({physical_cores()} cores) in "
          f"{time.perf_counter() - t0:.0f} s; load 1m {os.getloadavg()[0]:.2f}")
    print()
    print("| measurements | n | median ratio (again / first) | within +-10 % | within +-5 % | 5th-95th percentile |")
    print("|---|---|---|---|---|---|")
    for name, values in (("all", every_ratio), *ratios.items()):
        q = statistics.quantiles(values, n=20)
        print(f"| {name} | {len(values)} | {statistics.median(values):.3f} | "
              f"{100 * sum(abs(v - 1) <= 0.10 for v in values) / len(values):.1f} % | "
              f"{100 * sum(abs(v - 1) <= 0.05 for v in values) / len(values):.1f} % | {q[0]:.3f}-{q[-1]:.3f} |")
    med = statistics.median(every_ratio)
    print()
    print(f"Kendall tau between the two moments: {kendalltau([a for a, _ in pairs], [b for _, b in pairs])[0]:.3f}; "
          f"within +-10 % after dividing out the median ratio {med:.3f} (a uniform drift): "
          f"{100 * sum(abs(v / med - 1) <= 0.10 for v in every_ratio) / len(every_ratio):.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("collect", "evaluate", "repeat"))
    ap.add_argument("--into", help="repeat: the fresh database the second measurements go to")
    ap.add_argument("--db", required=True, help="latency database file for the benchmark's rows")
    ap.add_argument("--protocol", default="fast",
                    help="the CPU timing protocol (fast = cpu-fast-v4, fast-v2, fast-v1, ...)")
    ap.add_argument("--train", type=int, default=400)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--sizes", type=int, nargs="+", default=[50, 100, 200, 400])
    ap.add_argument("--include-contended", action="store_true",
                    help="also fit and score rows timed while other processes used > 0.25 CPU")
    args = ap.parse_args()
    os.environ.setdefault("NAS_CACHE_DIR", os.path.join(os.path.dirname(os.path.abspath(args.db)), "cache"))
    if args.action == "repeat" and not args.into:
        ap.error("repeat needs --into FILE, a fresh database for the second measurements")
    {"collect": collect, "evaluate": evaluate, "repeat": repeat}[args.action](args)


if __name__ == "__main__":
    main()
