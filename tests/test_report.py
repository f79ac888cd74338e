"""`nas report`: the HTML is one offline file that renders in a real browser, and run-dir text
cannot inject markup. Browser tests use Debian's Chromium (/usr/bin/chromium) through playwright."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from nas.cli import main
from nas.report import layer_table, load_run, pareto_figure, pareto_front, render_html
from search_spaces import count, get_space

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Viewport centre and trial number of the trained, non-winner point (searched or reference) farthest from
# any other marker.
PICK_POINT = """() => {
  const gd = document.getElementById('pareto');
  gd.scrollIntoView({block: 'center'});
  const D = JSON.parse(document.getElementById('nas-data').textContent);
  const traces = Array.from(gd.querySelectorAll('.scatterlayer .trace'));
  const centre = p => { const b = p.getBoundingClientRect(); return [b.x + b.width / 2, b.y + b.height / 2]; };
  const all = traces.flatMap(t => Array.from(t.querySelectorAll('.points path')).map(centre));
  let best = null;
  traces.forEach(g => {
   const t = gd.data[g.__data__[0].trace.index];  // plotly binds each trace's calcdata to its <g>
   if (!(t.name.startsWith('trained candidates') || t.name === 'reference nets')) return;
   Array.from(g.querySelectorAll('.points path')).forEach((p, i) => {
    const trial = t.customdata[i];
    if (trial === D.winner) return;
    const [x, y] = centre(p);
    const d = Math.min(...all.map(([u, v]) => (u === x && v === y) ? Infinity : Math.hypot(u - x, v - y)));
    if (!best || d > best.d) best = {x: x, y: y, trial: trial, d: d};
   });
  });
  return best;
}"""
HOSTILE = "</script><script>alert('x')</script><img src=x onerror=alert(1)>&amp;\u2028"


class Tags(HTMLParser):
    """Collects start tags with their attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse(page: str) -> list[tuple[str, dict[str, str | None]]]:
    p = Tags()
    p.feed(page)
    return p.tags


def expected_points(run_dir: Path) -> dict[str, int]:
    """Points the Pareto chart must show, counted from trials.csv alone."""
    with open(run_dir / "trials.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    has_lat = [r for r in rows if r["latency_ms"] != ""]
    gain = [r for r in has_lat if r["psnr_gain_db"] != "" and r["trained"] == "True"]
    untrained = [r for r in has_lat if r["psnr_gain_db"] == ""]
    return {
        "trained candidates": sum(r["reference"] == "" for r in gain),
        "reference nets": sum(r["reference"] != "" for r in gain),
        "over budget": sum(r["over_budget"] == "True" and r["reference"] == "" for r in untrained),
        "reference nets over budget": sum(r["over_budget"] == "True" and r["reference"] != "" for r in untrained),
        "failed": sum(r["over_budget"] != "True" for r in untrained),
    }


# ---------------------------------------------------------------------- pure functions
def test_pareto_front_keeps_only_undominated_points() -> None:
    pts = [(1.0, 0.5), (2.0, 0.4), (0.5, 0.1), (3.0, 0.9), (1.0, 0.2)]
    assert pareto_front(pts) == [2, 0, 3]


@pytest.mark.parametrize("seed", range(12))
def test_layer_table_adds_up_to_the_spec_counts(seed: int) -> None:
    space = get_space("sr2x")
    specs = [space.random_spec(seed, (32, 48)), *space.references().values()]
    for spec in specs:
        rows = layer_table(spec, 32, 48)
        c = count(spec, 32, 48)
        assert sum(r["macs"] for r in rows) == c.macs, spec.summary()
        assert sum(r["params"] for r in rows) == c.params, spec.summary()
        assert rows[-1]["shape"] == "3x64x96"


# ---------------------------------------------------------------------- hostile input, bad input
def _hostile_run(root: Path) -> Path:
    """A run dir whose every free-text field carries markup, plus an arch id that walks out of archs/."""
    run = root / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps({
        "config": {"task": HOSTILE, "budget_ms": 1.0, "budget_stat": HOSTILE},
        "argv": ["nas", HOSTILE], "backend": HOSTILE, "device": {"name": HOSTILE, HOSTILE: 1},
        "versions": {"torch": HOSTILE}, "workload": {"height": 32, "width": 48},
        "summary": {"n_trials": 3, "best": {"trial": 0}}}))
    secret = root / "outside"
    secret.mkdir()
    (secret / "latency.json").write_text(json.dumps({"samples_ms": [123456.789]}))
    traversal = "../../outside"
    cols = ["number", "state", "arch_id", "reference", "summary", "latency_ms", "latency_p90_ms", "over_budget",
            "trained", "psnr_gain_db", "macs", "params", "error"]
    rows = [[0, "COMPLETE", "a" * 64, "", HOSTILE, 0.5, 0.6, "False", "True", 0.3, 1000, 10, ""],
            [1, "COMPLETE", "b" * 64, HOSTILE, HOSTILE, 0.7, 0.8, "False", "True", 0.1, 2000, 20, HOSTILE],
            [2, "PRUNED", traversal, "", HOSTILE, 2.0, 2.5, "True", "False", "", 5000, 50, HOSTILE]]
    with open(run / "trials.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        w.writerows(rows)
    return run


def test_hostile_strings_cannot_inject_html(tmp_path: Path) -> None:
    run = load_run(_hostile_run(tmp_path))
    page = render_html(run, crops={"error": HOSTILE})
    tags = parse(page)
    # Exactly our scripts: plotly.js, four figures, the data block, the click handler.
    assert [t for t, _ in tags].count("script") == 7
    assert not [t for t, _ in tags if t == "img"]
    assert not [a for _, attrs in tags for a in attrs if a.startswith("on")]
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(&#x27;x&#x27;)" in page  # shown as text in the header
    # The data block round-trips the text exactly (so the click handler shows it as text).
    data = re.search(r'<script type="application/json" id="nas-data">(.*?)</script>', page, re.DOTALL)
    assert data is not None
    decoded = json.loads(data.group(1))
    assert decoded["trials"]["1"]["reference"] == HOSTILE.strip()  # CSV text fields are stripped
    assert decoded["trials"]["0"]["summary"] == HOSTILE.strip()
    # The arch id that walks out of archs/ is refused, not read.
    assert "123456.789" not in page
    assert any("not a plain identifier" in p for p in run.problems)


def test_stability_is_shown_per_trial_and_against_latency(tmp_path: Path) -> None:
    from nas.report import stability_figure

    run_dir = _hostile_run(tmp_path)
    with open(run_dir / "trials.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row, shift in zip(rows, ("41.5", "87.3", "")):
        row["shift_consistency_db"] = shift
    with open(run_dir / "trials.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    run = load_run(run_dir)
    fig = stability_figure(run)
    assert [t.name for t in fig.data] == ["shift consistency"]   # no clip: no temporal PSNR trace
    assert list(fig.data[0].x) == [0.5, 0.7] and list(fig.data[0].y) == [41.5, 87.3]
    page = render_html(run, crops={"error": "none"})
    assert "<td>41.5</td>" in page and "<td>87.3</td>" in page        # the top-candidates table


def test_the_report_shows_stopped_trials_apart_with_their_rung(tmp_path: Path) -> None:
    """A stopped trial is off the Pareto front and the best-so-far line, drawn as stopped, and its curve's rung
    reaches the page's data."""
    from nas.report import progress_figure
    from nas.report.page import details_data
    from nas.rundir import RunDirWriter, TrialRow

    full = TrialRow(number=0, state="COMPLETE", arch_id="a" * 64, latency_ms=0.5, trained=True, psnr_gain_db=0.3)
    stopped = TrialRow(number=1, state="PRUNED", arch_id="b" * 64, latency_ms=0.4, trained=True, stopped_at=100,
                       psnr_gain_db=0.5)
    writer = RunDirWriter(tmp_path)
    writer.create()
    writer.write_run_json({"study": "s", "config": {"budget_ms": 1.0}, "workload": {"height": 32, "width": 48},
                           "summary": {"n_trials": 2, "n_stopped": 1}})
    writer.write_trials([full, stopped])
    (writer.arch_dir("b" * 64) / "train.json").write_text(json.dumps({"val_curve": [[100, 0.5]], "stopped_at": 100}))
    run = load_run(tmp_path)
    assert run.candidates().number.tolist() == [0] and run.stopped().number.tolist() == [1]
    pareto = {t.name: t for t in pareto_figure(run).data}
    assert list(pareto["Pareto front"].x) == [0.5]  # the stopped trial is faster and higher, but not on the front
    assert list(pareto["stopped at a rung, gain there (1)"].customdata) == [1]
    best_so_far = next(t for t in progress_figure(run).data if t.name == "best so far")
    assert max(best_so_far.y) == pytest.approx(0.3, abs=1e-9)  # the stopped trial's 0.5 dB at a rung is not a result
    data = details_data(run)
    assert data["trials"]["1"]["stopped_at"] == 100 and data["archs"]["b" * 64]["val"] == [[100, 0.5]]
    assert "stopped at a rung (pruner)" in render_html(run, crops={"error": "none"})


@pytest.mark.parametrize("breakage", ["no dir", "no trials.csv", "bad run.json", "missing column", "bad number"])
def test_malformed_run_dir_is_a_one_line_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     breakage: str) -> None:
    run = _hostile_run(tmp_path)
    if breakage == "no dir":
        run = tmp_path / "nope"
    elif breakage == "no trials.csv":
        (run / "trials.csv").unlink()
    elif breakage == "bad run.json":
        (run / "run.json").write_text("{not json")
    elif breakage == "missing column":
        (run / "trials.csv").write_text("number,arch_id\n0,abc\n")
    else:
        text = (run / "trials.csv").read_text().replace("\n1,", "\none,")
        (run / "trials.csv").write_text(text)
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("nas report: error: ") and err.count("\n") == 1, err
    assert not (run / "report.html").exists()


def test_png_without_kaleido_warns_and_still_writes_html(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    run = _hostile_run(tmp_path)
    monkeypatch.setitem(sys.modules, "kaleido", None)  # import kaleido -> ImportError, installed or not
    assert main(["report", str(run), "--png"]) == 0
    out = capsys.readouterr()
    assert "no PNG written: kaleido is not installed" in out.err
    assert out.out.strip() == str(run / "report.html")
    assert (run / "report.html").stat().st_size > 1_000_000
    assert not (run / "pareto.png").exists()


# ---------------------------------------------------------------------- the tiny search's report
@pytest.fixture(scope="module")
def tiny_report(tiny_run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of the session's tiny search, regenerated by `nas report` on a copy of its run dir."""
    run = tmp_path_factory.mktemp("report") / "run"
    shutil.copytree(tiny_run_dir, run)
    (run / "report.html").unlink(missing_ok=True)
    assert main(["report", str(run)]) == 0
    return run


def test_report_is_one_file_with_no_external_reference(tiny_report: Path) -> None:
    from plotly.offline import get_plotlyjs

    page = (tiny_report / "report.html").read_text(encoding="utf-8")
    bundle = get_plotlyjs()
    assert page.count(bundle) == 1  # plotly.js inline, once
    # plotly.js itself names URLs (map tiles, docs) it never loads for these charts; nothing else may.
    rest = page.replace(bundle, "")
    assert not re.search(r"https?:|//cdn|mathjax|@import|@font-face", rest, re.IGNORECASE)
    for tag, attrs in parse(rest):
        for name in ("src", "href"):
            assert attrs.get(name) is None or attrs[name].startswith("data:image/png;base64,"), (tag, attrs)
        assert tag != "link"


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt install chromium)")
def test_report_renders_offline_in_chromium(tiny_report: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    expected = expected_points(tiny_report)
    url = (tiny_report / "report.html").as_uri()
    requests: list[str] = []
    errors: list[str] = []
    shot = ARTIFACTS / "report.png"
    shot.parent.mkdir(exist_ok=True)

    def route(r: object) -> None:
        requests.append(r.request.url)
        r.continue_() if r.request.url == url else r.abort()

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.route("**/*", route)
            page.goto(url, wait_until="load")
            page.wait_for_selector("#pareto .scatterlayer .trace .points path")
            traces = page.evaluate("document.getElementById('pareto').data.map(t => [t.name, (t.x || []).length])")
            svg_points = page.evaluate("document.querySelectorAll('#pareto .scatterlayer .trace .points path').length")
            crops = page.evaluate("document.querySelectorAll('.crops img').length")
            # A real mouse click on the trained candidate farthest from any other marker opens its details.
            target = page.evaluate(PICK_POINT)
            clicked = None
            if target is not None:
                page.mouse.move(target["x"], target["y"])
                page.mouse.click(target["x"], target["y"])
                page.wait_for_function("t => document.querySelector('#details h3').textContent.startsWith(t)",
                                       arg=f"Trial {target['trial']}", timeout=5000)
                clicked = page.inner_text("#details h3")
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    print(f"report screenshot: {shot}")

    assert requests == [url], f"the page tried to load {requests}"
    assert errors == [], errors
    by_name = {name.split(" (")[0].split(",")[0]: n for name, n in traces}
    assert by_name["trained candidates"] == expected["trained candidates"]
    assert by_name.get("reference nets", 0) == expected["reference nets"]
    assert by_name.get("over budget", 0) == expected["over budget"]
    assert by_name.get("reference nets over budget", 0) == expected["reference nets over budget"]
    assert by_name.get("failed", 0) == expected["failed"]
    n_trained = expected["trained candidates"] + expected["reference nets"]
    winner = 1 if n_trained else 0
    assert svg_points == sum(expected.values()) + winner
    assert crops == (3 if winner else 0)
    if n_trained > 1:
        assert clicked is not None and clicked.startswith(f"Trial {target['trial']}"), clicked


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (apt install chromium)")
def test_every_reference_is_named_with_no_label_over_another(tmp_path: Path) -> None:
    """Many reference nets at nearly the same latency, trained or over the budget (fsrcnn was once printed
    over espcn): in Chromium every name is drawn and no two labels' boxes intersect."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright Python package")
    from nas.rundir import RunDirWriter, TrialRow

    names = ["tiny", "espcn", "fsrcnn", "fsrcnn_small", "ecbsr_m4c8", "ecbsr_m4c16", "abpn", "quicksrnet_s",
             "quicksrnet_m", "sesr_m5", "bicubic_pp"]
    rows = []
    for i, name in enumerate(names):
        trained = i % 2 == 0
        latency = 3.0 + 0.04 * i if trained else 11.6 + 0.05 * i
        rows.append(TrialRow(number=i, state="COMPLETE" if trained else "PRUNED", arch_id=f"{i:064x}", reference=name,
                             summary=name, latency_ms=latency, latency_p90_ms=latency * 1.05, over_budget=not trained,
                             trained=trained, psnr_gain_db=0.50 + 0.01 * i if trained else None))
    rows.append(TrialRow(number=len(names), state="COMPLETE", arch_id="f" * 64, latency_ms=2.5, latency_p90_ms=2.6,
                         trained=True, psnr_gain_db=0.7))
    writer = RunDirWriter(tmp_path / "run")
    writer.check("s")
    writer.create()
    writer.write_trials(rows)
    writer.write_run_json({"study": "s", "config": {"budget_ms": 4.0, "task": "sr2x"}, "summary": None})
    page = tmp_path / "run" / "report.html"
    page.write_text(render_html(load_run(tmp_path / "run"), crops={"error": "no crops in this test"}), encoding="utf-8")

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1300, "height": 900})
            tab.goto(page.as_uri(), wait_until="load")
            tab.wait_for_selector("#pareto .annotation-text")
            boxes = tab.evaluate("""() => Array.from(document.querySelectorAll('#pareto .annotation-text'))
                .map(e => { const b = e.getBoundingClientRect(); """
                                 "return [e.textContent, b.left, b.right, b.top, b.bottom]; })")
        finally:
            browser.close()
    labels = [b for b in boxes if b[0] in names]
    assert sorted(b[0] for b in labels) == sorted(names)
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            apart = a[2] <= b[1] or b[2] <= a[1] or a[4] <= b[3] or b[4] <= a[3]
            assert apart, f"labels {a[0]!r} and {b[0]!r} overlap: {a[1:]} vs {b[1:]}"


def test_the_report_says_which_trials_trained_re_parameterized(tmp_path: Path) -> None:
    from nas.rundir import RunDirWriter, TrialRow

    rows = [TrialRow(number=n, state="COMPLETE", arch_id=f"{n:064x}", latency_ms=1.0 + n, trained=True,
                     psnr_gain_db=0.5) for n in range(2)]
    writer = RunDirWriter(tmp_path / "run")
    writer.check("s")
    writer.create()
    writer.write_trials(rows)
    writer.write_run_json({"study": "s", "config": {"budget_ms": 4.0}, "summary": None})
    for row, kind in zip(rows, ("linear", "none")):
        folder = writer.arch_dir(row.arch_id)
        (folder / "train.json").write_text(json.dumps({"train_config": {"reparam": kind}}))
    page = render_html(load_run(tmp_path / "run"), crops={"error": "none"})
    data = json.loads(re.search(r'<script type="application/json" id="nas-data">(.*?)</script>', page,
                                re.DOTALL).group(1))
    assert data["archs"][rows[0].arch_id]["reparam"] == "linear"
    assert data["archs"][rows[1].arch_id]["reparam"] is None
    assert "trained re-parameterized (linear)" in page and "trained plain" in page
