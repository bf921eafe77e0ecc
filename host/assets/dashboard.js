// The dashboard page's script: polls /status and draws it with uPlot.
// Each chart container gets data-points (the number of non-zero values it
// drew) after every refresh, and <body> counts refreshes in data-refreshes,
// so a headless browser (tests/dashboard.rs) can tell a drawn page from an
// empty one. Nothing here talks to anything but /status on this origin.
"use strict";
(function () {
  var REFRESH_MS = 3000;
  var HEIGHT = 240;
  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
    "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
  var charts = {};
  var refreshes = 0;

  function $(id) { return document.getElementById(id); }
  function setText(id, v) { $(id).textContent = v; }
  function num(x, digits) {
    return x === null || x === undefined ? "-" : Number(x).toFixed(digits);
  }
  function pct(x) { return x === null || x === undefined ? "-" : (100 * x).toFixed(1) + "%"; }
  function short(h) { return h.length > 14 ? h.slice(0, 6) + "\u2026" + h.slice(-5) : h; }
  function color(i) { return COLORS[i % COLORS.length]; }
  function sum(o) { var n = 0; for (var k in o) { n += o[k]; } return n; }
  function duration(s) {
    if (s < 120) { return s.toFixed(0) + " s"; }
    if (s < 7200) { return (s / 60).toFixed(0) + " min"; }
    if (s < 172800) { return (s / 3600).toFixed(1) + " h"; }
    return (s / 86400).toFixed(1) + " d";
  }

  function width(el) { return Math.max(el.clientWidth - 4, 280); }

  // Draws `data` in container `id`; builds the chart again only when `key`
  // (its series and categories) changed since the last refresh.
  function draw(id, key, opts, data) {
    var el = $(id);
    var c = charts[id];
    var points = 0;
    for (var s = 1; s < data.length; s++) {
      for (var i = 0; i < data[s].length; i++) { if (data[s][i]) { points++; } }
    }
    el.dataset.points = String(points);
    if (data[0].length === 0) {
      if (c) { c.u.destroy(); delete charts[id]; }
      el.innerHTML = "";
      var p = document.createElement("p");
      p.className = "empty";
      p.textContent = "nothing yet";
      el.appendChild(p);
      return;
    }
    if (!c || c.key !== key) {
      if (c) { c.u.destroy(); }
      el.innerHTML = "";
      opts.width = width(el);
      opts.height = HEIGHT;
      charts[id] = { key: key, u: new uPlot(opts, data, el) };
    } else {
      c.u.setData(data);
    }
  }

  // Options of a bar chart over named categories.
  function barOpts(labels, series, yLabel, rotate) {
    var idx = labels.map(function (_, i) { return i; });
    return {
      legend: { show: series.length > 1 },
      scales: { x: { time: false, range: [-0.5, labels.length - 0.5] }, y: { range: function (u, lo, hi) { return [0, hi > 0 ? hi * 1.1 : 1]; } } },
      axes: [
        { splits: function () { return idx; }, values: function (u, splits) { return splits.map(function (i) { return labels[i] === undefined ? "" : labels[i]; }); },
          rotate: rotate ? -50 : 0, size: rotate ? 150 : 40, grid: { show: false } },
        { label: yLabel }
      ],
      series: [{ label: "" }].concat(series)
    };
  }

  function bars(label, fill, size) {
    return { label: label, fill: fill, stroke: fill, width: 0, points: { show: false },
      paths: uPlot.paths.bars({ size: [size, 80] }) };
  }

  function rateChart(st) {
    var rows = st.validators;
    var n = rows.length ? rows[0].rate.length : 0;
    var xs = [];
    for (var i = 0; i < n; i++) { xs.push(st.rate_last_slot_start - (n - 1 - i) * st.rate_slot_s); }
    var data = [xs];
    var series = [{}];
    rows.forEach(function (r, k) {
      data.push(r.rate);
      series.push({ label: short(r.hotkey), stroke: color(k), width: 2, points: { show: false } });
    });
    draw("chart-rate", rows.map(function (r) { return r.hotkey; }).join(","), {
      series: series,
      scales: { y: { range: function (u, lo, hi) { return [0, hi > 0 ? hi * 1.1 : 1]; } } },
      axes: [{}, { label: "req/s" }]
    }, data);
  }

  function latencyChart(st) {
    var rows = st.validators;
    var labels = rows.map(function (r) { return short(r.hotkey); });
    var data = [labels.map(function (_, i) { return i; }),
      rows.map(function (r) { return r.p99_ms; }),
      rows.map(function (r) { return r.p50_ms; })];
    draw("chart-latency", labels.join(","), barOpts(labels,
      [bars("p99", "#9ecae1", 0.7), bars("p50", "#1f77b4", 0.4)], "ms", false), data);
  }

  function refusalsChart(st) {
    var reasons = Object.keys(st.refused).sort();
    draw("chart-refusals", reasons.join(","), barOpts(reasons, [bars("refused", "#d62728", 0.6)], "requests", reasons.length > 4),
      [reasons.map(function (_, i) { return i; }), reasons.map(function (r) { return st.refused[r]; })]);
  }

  function confidenceChart(st) {
    var bins = st.confidence_bins;
    var n = bins.length;
    var labels = bins.map(function (_, i) { return (i / n).toFixed(1) + "-" + ((i + 1) / n).toFixed(1); });
    var any = bins.some(function (b) { return b > 0; });
    draw("chart-confidence", "conf", barOpts(labels, [bars("predictions", "#2ca02c", 0.8)], "predictions", false),
      any ? [labels.map(function (_, i) { return i; }), bins] : [[]]);
  }

  function driftChart(st) {
    var d = st.drift;
    if (!d) { draw("chart-drift", "", {}, [[]]); return; }
    var labels = d.features.map(function (f) { return f.feature; });
    var warn = labels.map(function () { return d.psi_warn; });
    var opts = barOpts(labels, [bars("PSI", "#9467bd", 0.7),
      { label: "warning (" + d.psi_warn + ")", stroke: "#d62728", width: 2, dash: [6, 4], points: { show: false } }], "PSI", true);
    opts.scales.y.range = function (u, lo, hi) { return [0, Math.max(hi, d.psi_warn) * 1.15]; };
    var live = d.requests > 0;
    draw("chart-drift", labels.join(","), opts,
      live ? [labels.map(function (_, i) { return i; }), d.features.map(function (f) { return f.psi; }), warn] : [[]]);
  }

  function table(st) {
    var body = $("validators").tBodies[0];
    body.innerHTML = "";
    st.validators.forEach(function (r, k) {
      var tr = document.createElement("tr");
      tr.dataset.hotkey = r.hotkey;
      var protocols = Object.keys(r.protocols).filter(function (p) { return r.protocols[p] > 0; }).join(", ");
      var refused = Object.keys(r.refused).map(function (x) { return x + " " + r.refused[x]; }).join(", ");
      var cells = [r.hotkey, num(r.stake, 0), protocols, r.requests, r.answered,
        sum(r.refused) + (refused ? " (" + refused + ")" : ""), num(r.p50_ms, 3), num(r.p99_ms, 3),
        pct(r.positive_share), num(r.mean_confidence, 3), r.last_seen_s === null ? "-" : duration(r.last_seen_s) + " ago"];
      cells.forEach(function (c, i) {
        var td = document.createElement("td");
        if (i === 0) {
          var sw = document.createElement("span");
          sw.className = "swatch";
          sw.style.background = color(k);
          td.appendChild(sw);
          var code = document.createElement("code");
          code.textContent = c;
          td.appendChild(code);
        } else {
          td.textContent = String(c);
        }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  function cards(st) {
    setText("version", "v" + st.version);
    setText("hotkey", st.hotkey);
    setText("uptime", duration(st.uptime_s));
    setText("verified-total", String(st.verified_answered));
    setText("model-sha", st.model.sha256);
    setText("model-source", st.model.source);
    setText("model-reloads", st.model.reloads_ok + " ok, " + st.model.reloads_rejected + " rejected");
    var sh = st.shadow;
    setText("shadow", sh ? short(sh.sha256) + ": agreement " + pct(sh.agreement) + " over " + sh.requests + " requests" : "none loaded");
    setText("kernel", st.kernel);
    setText("weights", st.weights);
    setText("callers", st.allow_all ? "everyone with a valid signature" : st.validators_listed + " on the validators file");
    setText("inflight", String(st.inflight));
    setText("predictions", String(st.predictions));
    setText("positive-share", pct(st.positive_share));
    setText("latency", num(st.latency_ms.p50, 3) + " / " + num(st.latency_ms.p90, 3) + " / " + num(st.latency_ms.p99, 3) + " ms");
    setText("refused-total", String(sum(st.refused)));
  }

  function render(st) {
    cards(st);
    table(st);
    rateChart(st);
    latencyChart(st);
    refusalsChart(st);
    confidenceChart(st);
    driftChart(st);
  }

  function refresh() {
    fetch("/status", { cache: "no-store" })
      .then(function (r) {
        if (!r.ok) { throw new Error("/status answered " + r.status); }
        return r.json();
      })
      .then(function (st) {
        render(st);
        refreshes++;
        document.body.dataset.refreshes = String(refreshes);
        setText("updated", "updated " + new Date(st.time * 1000).toLocaleTimeString());
        setText("error", "");
        delete document.body.dataset.error;
      })
      .catch(function (e) {
        setText("error", String(e.message || e));
        document.body.dataset.error = String(e.message || e);
      })
      .then(function () { setTimeout(refresh, REFRESH_MS); });
  }

  window.addEventListener("resize", function () {
    for (var id in charts) { charts[id].u.setSize({ width: width($(id)), height: HEIGHT }); }
  });
  refresh();
})();
