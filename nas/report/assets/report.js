(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("nas-data").textContent);
  var CFG = {displaylogo: false, responsive: true};
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function fmt(v, d) { return (v === null || v === undefined) ? "n/a" : Number(v).toFixed(d); }
  function si(v) {
    if (v === null || v === undefined) return "n/a";
    var u = [[1e9, "G"], [1e6, "M"], [1e3, "k"]];
    for (var i = 0; i < u.length; i++) if (Math.abs(v) >= u[i][0]) return (v / u[i][0]).toPrecision(3) + " " + u[i][1];
    return String(v);
  }
  function show(number) {
    var t = D.trials[String(number)];
    if (!t) return;
    var a = D.archs[t.arch_id] || {layers: [], samples: [], loss: [], val: []};
    var box = document.getElementById("details");
    box.textContent = "";
    var title = "Trial " + t.number + (t.reference ? " (reference " + t.reference + ")" : "") +
      (t.number === D.winner ? " (winner)" : "");
    box.appendChild(el("h3", title));
    box.appendChild(el("p", t.summary, "l"));
    var facts = "latency " + fmt(t.latency_ms, 3) + " ms median, " + fmt(t.latency_p90_ms, 3) + " ms p90, CoV " +
      (t.latency_cov === null ? "n/a" : (100 * t.latency_cov).toFixed(1) + " %") + (a.unstable ? " (unstable)" : "") +
      "; " + si(t.macs) + "MAC, " + si(t.params) + " params; " +
      (t.stopped_at !== null ? "stopped by the pruner at step " + t.stopped_at + ", gain there " +
        fmt(t.psnr_gain_db, 3) + " dB over bicubic (not a candidate for the winner)" :
       t.psnr_gain_db !== null ? "gain " + fmt(t.psnr_gain_db, 3) + " dB over bicubic" +
        (t.train_s !== null ? ", trained in " + fmt(t.train_s, 1) + " s" : "") +
        (a.reparam ? ", trained re-parameterized (" + a.reparam + " blocks, collapsed to plain convs)" : "") +
        (a.moved === false ? " (training did not move: a training failure)" : "")
       : (t.over_budget ? "over budget: never trained" : "not trained")) +
      (t.error ? "; error: " + t.error : "") + "; arch id " + t.arch_id;
    box.appendChild(el("p", facts, "note"));
    var cols = el("div", null, "cols");
    var left = el("div"), right = el("div");
    cols.appendChild(left); cols.appendChild(right);
    box.appendChild(cols);
    left.appendChild(el("h3", "Layers" + (D.input ? " (input " + D.input[0] + "x" + D.input[1] + ")" : "")));
    if (a.layers.length) {
      var tb = el("table", null, "layers"), hr = el("tr");
      ["stage", "op", "in ch", "out ch", "output CxHxW", "MACs", "params"].forEach(function (h) { hr.appendChild(el("th", h)); });
      tb.appendChild(hr);
      a.layers.forEach(function (r) {
        var tr = el("tr");
        tr.appendChild(el("td", r.stage, "l")); tr.appendChild(el("td", r.op, "l"));
        tr.appendChild(el("td", r["in"])); tr.appendChild(el("td", r.out)); tr.appendChild(el("td", r.shape));
        tr.appendChild(el("td", r.macs ? si(r.macs) : "")); tr.appendChild(el("td", r.params ? r.params : ""));
        tb.appendChild(tr);
      });
      left.appendChild(tb);
    } else {
      left.appendChild(el("p", "No valid arch.json for this trial.", "note"));
    }
    var h = el("div", null, "plot"); h.id = "detail-hist"; right.appendChild(h);
    var c = el("div", null, "plot"); c.id = "detail-curve"; right.appendChild(c);
    if (a.samples.length) {
      var sorted = a.samples.slice().sort(function (x, y) { return x - y; });
      var cut = 3 * sorted[Math.floor(sorted.length / 2)];
      var shown = a.samples.filter(function (v) { return v <= cut; });
      var off = a.samples.length - shown.length;
      Plotly.newPlot(h, [{type: "histogram", x: shown, marker: {color: "#0072B2"}, name: "samples"}],
        {title: {text: "Latency samples (" + a.samples.length + (off ? ", " + off + " above 3x median not shown" : "") + ")" +
         (D.budget_ms ? ", budget " + fmt(D.budget_ms, 3) + " ms" : "")},
         xaxis: {title: {text: "ms per frame"}}, yaxis: {title: {text: "count"}}, margin: {t: 40, r: 10, b: 45, l: 50},
         bargap: 0.05}, CFG);
    } else {
      h.appendChild(el("p", "No latency samples stored for this trial.", "note"));
    }
    if (a.loss.length || a.val.length) {
      var tr = [];
      if (a.loss.length) tr.push({type: "scatter", mode: "lines", name: "training loss", line: {color: "#0072B2"},
        x: a.loss.map(function (p) { return p[0]; }), y: a.loss.map(function (p) { return p[1]; })});
      if (a.val.length) tr.push({type: "scatter", mode: "lines+markers", name: "validation gain (dB)", yaxis: "y2",
        line: {color: "#D55E00"}, x: a.val.map(function (p) { return p[0]; }), y: a.val.map(function (p) { return p[1]; })});
      var stop = t.stopped_at === null ? [] : [{type: "line", xref: "x", yref: "paper", x0: t.stopped_at,
        x1: t.stopped_at, y0: 0, y1: 1, line: {color: "#8c8c8c", dash: "dash"}}];
      Plotly.newPlot(c, tr, {title: {text: t.stopped_at === null ? "Training curve" :
        "Training curve (stopped at step " + t.stopped_at + ")"}, shapes: stop, margin: {t: 40, r: 70, b: 45, l: 55},
        xaxis: {title: {text: "step"}}, yaxis: {title: {text: "loss"}, type: "log"},
        yaxis2: {title: {text: "gain over bicubic (dB)"}, overlaying: "y", side: "right", showgrid: false,
                 tickformat: ".2f", nticks: 5},
        legend: {orientation: "h", y: -0.25}}, CFG);
    } else {
      c.appendChild(el("p", t.over_budget ? "Over budget: never trained, so no training curve." :
        "No training curve stored for this trial.", "note"));
    }
  }
  ["pareto", "stability", "progress", "roofline"].forEach(function (id) {
    var gd = document.getElementById(id);
    if (gd && gd.on) gd.on("plotly_click", function (ev) {
      var p = ev && ev.points && ev.points[0];
      if (p && p.customdata !== undefined && p.customdata !== null) {
        show(p.customdata);
        document.getElementById("details").scrollIntoView({behavior: "smooth", block: "nearest"});
      }
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll("#top-table tr[data-trial]"), function (tr) {
    tr.addEventListener("click", function () { show(Number(tr.getAttribute("data-trial"))); });
  });
  if (D.winner !== null) show(D.winner);
  window.nasShowTrial = show;
})();
