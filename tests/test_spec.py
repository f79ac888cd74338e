"""ArchSpec: canonical JSON, stable arch_id, strict validation that names the field."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import search_spaces as ss
from search_spaces import ArchSpec, SpecError

ESPCN = ss.get_space("sr2x").references()["espcn"]


@pytest.mark.parametrize("name", ss.list_spaces())
def test_json_round_trip_is_exact(name: str) -> None:
    space = ss.get_space(name)
    for seed in range(20):
        spec = space.random_spec(seed, (32, 48))
        again = ArchSpec.from_json(spec.to_json())
        assert again == spec
        assert again.canonical_json() == spec.canonical_json()
        assert again.arch_id == spec.arch_id


def test_arch_id_is_stable_across_processes() -> None:
    specs = [ESPCN, ss.get_space("denoise").random_spec(7, (32, 48))]
    code = (
        "import sys, search_spaces as ss\n"
        "for line in sys.stdin: print(ss.ArchSpec.from_json(line).arch_id)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], input="\n".join(s.to_json(indent=None) for s in specs),
        capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123", "PATH": ""},
    ).stdout.split()
    assert out == [s.arch_id for s in specs]


def test_arch_id_differs_between_specs_and_ignores_key_order() -> None:
    ids = {ss.get_space("sr2x").random_spec(seed).arch_id for seed in range(50)}
    specs = {ss.get_space("sr2x").random_spec(seed).canonical_json() for seed in range(50)}
    assert len(ids) == len(specs)
    shuffled = dict(reversed(list(ESPCN.to_dict().items())))
    assert ArchSpec.from_dict(shuffled).arch_id == ESPCN.arch_id
    assert len(ESPCN.arch_id) == 64


def _with(path: str, value: object) -> dict:
    data = json.loads(ESPCN.to_json())
    node = data
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    last = keys[-1]
    if value is KeyError:
        del node[last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return data


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (_with("head.0.width", 12), "head[0].width"),
        (_with("head.1.width", 0), "head[1].width"),
        (_with("head.0.op", "gelu"), "head[0].op"),
        (_with("head.0.kernel", 7), "head[0].kernel"),
        (_with("head", -2), "head"),
        (_with("head", []), "head"),
        (_with("space_to_depth", -2), "space_to_depth"),
        (_with("levels", -1), "levels"),
        (_with("schema_version", 99), "schema_version"),
        (_with("schema_version", KeyError), "schema_version"),
        (_with("activation", "gelu"), "activation"),
        (_with("head.0.norm", "batch"), "head[0].norm"),
        (_with("head.0.width", "64"), "head[0].width"),
        (_with("head.0.width", 64.0), "head[0].width"),
        (_with("head.0.width", True), "head[0].width"),
        (_with("scale", "two"), "scale"),
        (_with("scale", 5), "scale"),
        (_with("upsample", "lanczos"), "upsample"),
        (_with("upsample", ["bicubic"]), "upsample"),
        (_with("color", "yuv"), "color"),
        (_with("skip", "concat"), "skip"),
        (_with("output_kernel", None), "output_kernel"),
        (_with("space", "classify"), "space"),
        (_with("long_skip", "yes"), "long_skip"),
        (_with("long_skip", True), "long_skip"),           # espcn: 64 wide first, 32 into the output conv
        (_with("upsample", "none") | {"color": "luma"}, "color"),  # no base: nothing carries the chroma
    ],
)
def test_invalid_json_is_rejected_naming_the_field(data: dict, field: str) -> None:
    with pytest.raises(SpecError) as info:
        ArchSpec.from_dict(data)
    assert f"'{field}'" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"head": NaN}', "", "null"])
def test_malformed_json_is_rejected(text: str) -> None:
    with pytest.raises(SpecError):
        ArchSpec.from_json(text)


def test_hostile_strings_are_rejected() -> None:
    for field in ("upsample", "color", "skip", "space"):
        bad = _with(field, 'bilinear"; import os; os.system("rm -rf /")  #\n')
        with pytest.raises(SpecError, match=f"'{field}'"):
            ArchSpec.from_dict(bad)


def test_arch_ids_of_specs_without_the_new_fields_are_unchanged() -> None:
    """Space version 2 added ``long_skip``: a spec without it serializes as before, so every latency row
    and training stored for it stays its own (ids computed with the code before the field existed)."""
    tiny = ss.get_space("sr2x").references()["tiny"]
    assert "long_skip" not in tiny.canonical_json()
    assert tiny.arch_id == "5ed82611dd68f1513b5d131741d5c1b224267804ae6c0b8b2f9f200047723945"
    assert ss.get_space("denoise").references()["unet_small"].arch_id == \
        "699adb803bc139fb25eb4e261a3f0ed69db2749122810959e6b300ecc202040f"
    sesr = ss.get_space("sr2x").modern_references()["sesr_m5"]
    assert json.loads(sesr.canonical_json())["long_skip"] is True
    assert ArchSpec.from_json(sesr.to_json()) == sesr


def test_spec_is_frozen_and_hashable() -> None:
    with pytest.raises(AttributeError):
        ESPCN.scale = 3  # type: ignore[misc]
    assert len({ESPCN, ArchSpec.from_json(ESPCN.to_json())}) == 1


def test_load_spec_names_the_file(tmp_path) -> None:
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(_with("head.0.width", 12)))
    with pytest.raises(SpecError, match=r"arch\.json.*head\[0\]\.width"):
        ss.load_spec(str(path))
    with pytest.raises(SpecError, match="cannot read"):
        ss.load_spec(str(tmp_path / "missing.json"))
