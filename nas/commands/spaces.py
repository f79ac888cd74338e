"""``nas spaces``: list the registered search spaces, their dimensions and reference networks."""

from __future__ import annotations

import argparse
import json

from nas.commands import COMMANDS, flags


@COMMANDS.register("spaces")
def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("spaces", help="list search spaces and reference networks",
                       description="List the registered search spaces (tasks), what each one searches, "
                       "and its named reference networks (the classic ones and the field's 2021-2023 real-time "
                       "designs: every search starts from those that tile its input).")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'sr*'")
    flags.add_json(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from search_spaces import count, get_space, list_spaces

    out = {}
    for name in list_spaces(args.pattern):
        space = get_space(name)
        refs = {}
        modern = space.modern_references()
        for ref_name, spec in (space.references() | modern).items():
            c = count(spec, 136, 240)
            refs[ref_name] = {"arch_id": spec.arch_id, "summary": spec.summary(), "modern": ref_name in modern,
                              "macs_136x240": c.macs, "params": c.params}
        out[name] = {"version": space.version, "dimensions": space.dimensions(), "references": refs}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for name, info in out.items():
        print(f"{name} (space version {info['version']})")
        for dim, text in info["dimensions"].items():
            print(f"  {dim:<15} {text}")
        print("  references:")
        for ref_name, r in info["references"].items():
            print(f"    {ref_name:<13} {r['summary']}  ({r['macs_136x240'] / 1e6:.0f} MMAC at 136x240, "
                  f"{r['params']} params{', 2021-2023' if r['modern'] else ''})")
        print()
    return 0
