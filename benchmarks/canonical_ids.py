"""One id per network: how many arch_ids name a network that another arch_id already names.

Draws every space at random (a seeded ``random.Random``, no Optuna, nothing measured or trained) at the
search's input sizes and groups the draws by network identity (``search_spaces.plan.identity``: the plan's
ops and shapes, the base's resize kind, the colour). An arch_id is redundant when another arch_id of the
same draws has its identity. "before" counts the ids as they were before normalization (``stated_id``:
the sha256 of the spec as drawn, the arch_id nas gave it until issue #25), "after" the canonical arch_ids.
Counts only: they depend on the seeds, never on the CPU.

Usage: .venv/bin/python benchmarks/canonical_ids.py [--draws 3000]
"""

from __future__ import annotations

import argparse
import random
import zlib
from collections import defaultdict

from search_spaces import get_space, list_spaces
from search_spaces.plan import identity

SIZES = ((135, 240), (136, 240))       # the CPU default input size, and an even one (space-to-depth, levels)
SAME_RES_SIZES = ((540, 960),)         # denoise / enhance also at the GPU default input size


def redundant(ids_by_network: dict[tuple[object, ...], set[str]]) -> int:
    """Ids beyond the first of each network."""
    return sum(len(ids) - 1 for ids in ids_by_network.values())


def measure(name: str, size: tuple[int, int], draws: int) -> dict[str, int]:
    space = get_space(name)
    rng = random.Random(zlib.crc32(f"{name}-{size[0]}x{size[1]}".encode()))
    before: dict[tuple[object, ...], set[str]] = defaultdict(set)
    after: dict[tuple[object, ...], set[str]] = defaultdict(set)
    causes = {"skip": 0, "split": 0}
    for _ in range(draws):
        spec, params = space.complete({}, rng, size)  # every choice drawn from rng, and kept
        network = identity(spec, *size)
        before[network].add(spec.stated_id)
        after[network].add(spec.arch_id)
        causes["skip"] += params["skip"] != spec.skip                 # skip 'add' with nothing to add
        causes["split"] += params.get("n_tail", 0) != len(spec.tail)  # a tail without levels
    return {"networks": len(before), "ids_before": sum(map(len, before.values())),
            "redundant_before": redundant(before), "ids_after": sum(map(len, after.values())),
            "redundant_after": redundant(after), **causes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=3000, help="random draws per space and input size")
    args = parser.parse_args()
    print(f"{args.draws} draws per space and size; redundant = arch_ids whose network another arch_id names")
    print("non-canonical draws: skip 'add' with nothing to add / a tail without levels (moved into the head)")
    print(f"{'space':8} {'size':8} {'networks':>8} {'ids before':>10} {'redundant before':>17} "
          f"{'ids after':>9} {'redundant after':>15} {'non-canonical draws: skip / tail':>33}")
    for name in list_spaces():
        sizes = SIZES + (SAME_RES_SIZES if get_space(name).scale == 1 else ())
        for size in sizes:
            r = measure(name, size, args.draws)
            share = 100 * r["redundant_before"] / r["ids_before"]
            print(f"{name:8} {size[0]}x{size[1]:<4} {r['networks']:>8} {r['ids_before']:>10} "
                  f"{r['redundant_before']:>8} ({share:4.1f} %) {r['ids_after']:>9} {r['redundant_after']:>15} "
                  f"{r['skip']:>26} / {r['split']:>4}")


if __name__ == "__main__":
    main()
