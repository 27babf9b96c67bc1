# ruff: noqa: E501  (embedded HTML, CSS and JavaScript)
"""The dashboard page: one HTML page, its script and stylesheet, and the vendored chart library.

Everything is served by the monitor itself (``monitor.http``); the page loads nothing from outside
(the Content-Security-Policy says so: ``default-src 'self'``). It reads ``/dashboard.json`` once
and then follows ``/events`` (server-sent events, one snapshot per ``dashboard_interval_s``).
Read-only: there is no form and no button that changes anything; the kill switch is shown with
how to trip it (execution's signed ``kill`` command, operator key only). The newest
paper-versus-backtest report's backtest equity is drawn beside the paper equity (its own time
axis: a backtest of replayed bars runs on the bars' dates, the paper curve on the wall clock), and
every report is linked (served read-only by ``/reports/<period>/``).
"""

from __future__ import annotations

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'none'"
)

HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rltrader monitor</title>
<link rel="stylesheet" href="/static/uplot.css">
<link rel="stylesheet" href="/static/dashboard.css">
</head>
<body>
<header>
  <h1>rltrader monitor</h1>
  <span id="live" class="badge off">connecting</span>
  <span id="updated"></span>
</header>
<section class="cards">
  <div class="card"><h3>Equity</h3><p id="equity">-</p></div>
  <div class="card"><h3>Realised</h3><p id="realized">-</p></div>
  <div class="card"><h3>Unrealised</h3><p id="unrealized">-</p></div>
  <div class="card"><h3>Fees</h3><p id="fees">-</p></div>
  <div class="card"><h3>Drawdown</h3><p id="drawdown">-</p></div>
  <div class="card"><h3>Today</h3><p id="daily">-</p></div>
  <div class="card"><h3>Kill switch</h3><p id="killed">-</p></div>
  <div class="card"><h3>Broker</h3><p id="broker">-</p></div>
  <div class="card wide"><h3>Last fill</h3><p id="last-fill">-</p></div>
</section>
<p id="kill-how" class="note"></p>
<section id="alerts"><h2>Alerts</h2><div id="alerts-active"></div><table id="alerts-recent"></table></section>
<section class="grid">
  <div><h2>Equity (paper, this ledger)</h2><div id="equity-chart" class="chart"></div></div>
  <div><h2>Backtest of the same bars</h2><p id="comparison-note" class="note"></p>
    <div id="backtest-chart" class="chart"></div></div>
</section>
<section><h2>Drawdown (%)</h2><div id="drawdown-chart" class="chart"></div></section>
<section class="grid">
  <div><h2>Positions</h2><table id="positions"></table></div>
  <div><h2>Per model version</h2><p id="models-note" class="note"></p><table id="models"></table>
    <table id="instances"></table></div>
</section>
<section><h2>Live versus shadow</h2><p id="shadow-note" class="note"></p>
<table id="shadow"></table></section>
<section><h2>Retraining</h2><p id="retrain-note" class="note"></p>
<table id="retrain"></table><table id="retrain-sessions"></table></section>
<section><h2>Recent fills</h2><p class="note">slippage: fill price versus the decision bar's
close, in basis points, positive = paid worse (blank when the ledger has no decision for it)</p>
<table id="fills"></table></section>
<section><h2>Recent orders</h2><table id="orders"></table></section>
<section class="grid">
  <div><h2>Data health</h2><table id="health"></table><table id="bars"></table></div>
  <div><h2>Latency (monitor's clock)</h2><table id="latency"></table>
    <h2>Execution</h2><table id="execution"></table></div>
</section>
<section><h2>Paper versus backtest reports</h2><ul id="reports"></ul></section>
<footer>read-only &middot; charts: uPlot (MIT), served by this monitor &middot;
<a href="/reports">/reports</a> &middot; <a href="/metrics">/metrics</a> &middot; <a href="/dashboard.json">/dashboard.json</a></footer>
<script src="/static/uplot.js"></script>
<script src="/static/dashboard.js"></script>
</body>
</html>
"""

CSS = """
body { font: 14px system-ui, sans-serif; margin: 0 1.5em 2em; color: #1d2530; background: #f6f7f9; }
header { display: flex; align-items: baseline; gap: 1em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.05em; margin: 1.2em 0 .4em; } h3 { margin: 0; font-size: .8em;
  color: #5a6675; font-weight: 600; text-transform: uppercase; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(140px, 1fr)); gap: .6em; }
.card { background: #fff; border: 1px solid #dde2e8; border-radius: 6px; padding: .5em .8em; }
.card.wide { grid-column: span 2; } .card p { font-size: 1.3em; margin: .2em 0 0; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 1.5em; }
table { border-collapse: collapse; background: #fff; font-variant-numeric: tabular-nums; margin-bottom: .5em; }
th, td { border: 1px solid #dde2e8; padding: 2px 8px; text-align: right; }
th { background: #eef1f5; } td:first-child, th:first-child { text-align: left; }
.chart { background: #fff; border: 1px solid #dde2e8; border-radius: 6px; min-height: 240px; }
.badge { padding: 2px 8px; border-radius: 10px; font-size: .85em; color: #fff; background: #2e7d32; }
.badge.off, .bad { background: #c62828; color: #fff; } .ok { color: #2e7d32; }
.alert { background: #c62828; color: #fff; padding: .3em .7em; border-radius: 4px; margin: .2em 0; }
.note { color: #5a6675; font-size: .9em; margin: .2em 0; } #updated { color: #5a6675; }
footer { margin-top: 2em; color: #5a6675; }
"""

JS = r"""
"use strict";
const $ = (id) => document.getElementById(id);
const fmt = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x)) ? "" :
  Number(x).toLocaleString("en-US", {minimumFractionDigits: d, maximumFractionDigits: d});
const text = (x) => (x === null || x === undefined) ? "" : String(x);
const time = (ns) => ns ? new Date(ns / 1e6).toISOString().replace("T", " ").slice(0, 19) : "";

function table(id, header, rows) {
  const t = $(id);
  t.replaceChildren();
  const head = t.insertRow();
  for (const h of header) { const th = document.createElement("th"); th.textContent = h; head.appendChild(th); }
  for (const row of rows) {
    const tr = t.insertRow();
    for (const cell of row) { tr.insertCell().textContent = text(cell); }
  }
}

let equityChart = null, drawdownChart = null, backtestChart = null;
function inked(ctx) {  // drawn (non-transparent) pixels, sampled: lets a test see the chart rendered
  const {width, height} = ctx.canvas;
  const px = ctx.getImageData(0, 0, width, height).data;
  let n = 0;
  for (let i = 3; i < px.length; i += 16) { if (px[i] !== 0) n++; }
  return n;
}
function chart(el, label, color, data, old) {
  const width = Math.max(300, el.clientWidth - 10);
  if (old) { old.setData(data); if (old.width !== width) old.setSize({width, height: 240}); return old; }
  return new uPlot({
    width, height: 240, series: [{}, {label, stroke: color, width: 2, fill: color + "22"}],
    axes: [{}, {size: 80}], scales: {x: {time: true}},
    hooks: {draw: [u => { el.dataset.pixels = String(inked(u.ctx)); }]},
  }, data, el);
}

function render(s) {
  $("equity").textContent = fmt(s.equity);
  $("realized").textContent = fmt(s.realized);
  $("unrealized").textContent = fmt(s.unrealized);
  $("fees").textContent = fmt(s.fees);
  $("drawdown").textContent = fmt(s.drawdown_pct) + " %";
  $("daily").textContent = fmt(s.daily_pnl);
  const ex = s.execution;
  $("killed").textContent = !ex.known ? "unknown" : (ex.killed ? "ON" : "off");
  $("killed").className = ex.known && ex.killed ? "bad" : "ok";
  $("broker").textContent = !ex.known ? "unknown" : (ex.broker_connected ? "connected" : "DOWN");
  $("broker").className = ex.known && !ex.broker_connected ? "bad" : "ok";
  $("updated").textContent = "updated " + new Date(s.ts * 1000).toISOString().slice(11, 19) + " UTC";

  const active = $("alerts-active");
  active.replaceChildren();
  for (const a of s.alerts.active) {
    const div = document.createElement("div"); div.className = "alert";
    div.textContent = a.alert + ": " + a.message; active.appendChild(div);
  }
  table("alerts-recent", ["time", "alert", "state", "message"],
    s.alerts.recent.map(a => [new Date(a.ts * 1000).toISOString().slice(0, 19), a.alert, a.state, a.message]));

  const lf = s.last_fill;
  $("last-fill").textContent = lf ? [lf.side, fmt(lf.quantity, 0), lf.symbol, "@", fmt(lf.price, 4)].join(" ") : "none yet";
  document.body.dataset.lastFill = lf ? lf.exec_id : "";
  $("kill-how").textContent = "Kill switch: " + ex.kill_switch_how;

  const cmp = s.comparison;
  $("comparison-note").textContent = cmp.note;
  if (cmp.backtest && cmp.backtest.t.length) {
    const bt = cmp.backtest, el = $("backtest-chart");
    const data = bt.paper ? [bt.t, bt.equity, bt.paper] : [bt.t, bt.equity];
    if (backtestChart && backtestChart.series.length !== data.length) { backtestChart.destroy(); backtestChart = null; }
    if (backtestChart) { backtestChart.setData(data); } else {
      const series = [{}, {label: "backtest", stroke: "#6a1b9a", width: 2}];
      if (bt.paper) series.push({label: "paper (report)", stroke: "#1565c0", width: 2});
      backtestChart = new uPlot({width: Math.max(300, el.clientWidth - 10), height: 240, series,
        axes: [{}, {size: 80}], scales: {x: {time: true}},
        hooks: {draw: [u => { el.dataset.pixels = String(inked(u.ctx)); }]}}, data, el);
    }
  }
  const list = $("reports");
  list.replaceChildren();
  if (!cmp.reports.length) { const li = document.createElement("li"); li.textContent = "no comparison yet: run make compare"; list.appendChild(li); }
  for (const r of cmp.reports) {
    const li = document.createElement("li");
    li.appendChild(document.createTextNode(r.period + " "));
    for (const [label, href] of [["report", r.html], ["json", r.json]]) {
      if (!href) continue;
      const a = document.createElement("a"); a.href = href; a.textContent = label; li.appendChild(a);
      li.appendChild(document.createTextNode(" "));
    }
    list.appendChild(li);
  }

  const c = s.curve;
  if (c.t.length) {
    equityChart = chart($("equity-chart"), "equity", "#1565c0", [c.t, c.equity], equityChart);
    drawdownChart = chart($("drawdown-chart"), "drawdown %", "#c62828", [c.t, c.drawdown_pct], drawdownChart);
  }
  table("positions", ["symbol", "quantity", "avg cost", "last", "unrealised", "realised"],
    s.positions.map(p => [p.symbol, fmt(p.quantity, 0), fmt(p.avg_cost, 4), fmt(p.last_price, 4),
      fmt(p.unrealized), fmt(p.realized)]));
  $("models-note").textContent = s.models.note;
  table("models", ["version", "signals", "fills", "notional", "fees", "realised", "net", "avg slip bps"],
    s.models.versions.map(v => [v.version, v.signals, v.fills, fmt(v.notional), fmt(v.fees),
      fmt(v.realized), fmt(v.net_realized), fmt(v.avg_slippage_bps, 1)]));
  table("instances", ["inference", "serving", "requested", "accepted", "reason"],
    s.models.instances.map(m => [m.instance, m.serving_version, m.requested_version, m.accepted, m.reason]));
  $("shadow-note").textContent = s.models.shadow.note;
  table("shadow", ["role", "version", "decisions", "marked", "return %", "bars with live", "shadow same bars %", "live same bars %"],
    s.models.shadow.rows.map(r => [r.role, r.version, r.decisions, r.marked, fmt(r.return_pct, 3),
      r.bars_with_live, fmt(r.shadow_on_same_bars_pct, 3), fmt(r.live_on_same_bars_pct, 3)]));
  const rt = s.retrain;
  $("retrain-note").textContent = rt.note + " (source: " + rt.source + (rt.schedule.every ? "; schedule " + rt.schedule.every + ", next " + text(rt.schedule.next_due) : "") + ")";
  table("retrain", ["record", "state", "started", "candidate", "live", "gate", "val Sharpe model / B&H / MA", "sessions", "shadow vs live %", "outcome", "why"],
    rt.rows.map(r => [r.id, r.state, r.started_at, r.candidate, r.live,
      text(r.gate.verdict) + (r.gate.folds ? " (" + r.gate.folds + " folds)" : ""),
      [r.gate.model, r.gate.buy_and_hold, r.gate.ma_crossover].map(v => fmt(v, 3)).join(" / "),
      r.sessions_done + " / " + text(r.sessions_needed),
      r.decision ? fmt(r.decision.shadow_pct, 3) + " vs " + fmt(r.decision.live_pct, 3) + " (margin " + fmt(r.decision.margin_pct, 2) + ")" : "",
      r.outcome, r.why]));
  const open = rt.rows.length ? rt.rows[0] : null;
  table("retrain-sessions", ["session (" + (open ? text(open.id) : "none") + ")", "bars", "shadow %", "live %"],
    open ? open.sessions.map(x => [x.session, x.bars, fmt(x.shadow_pct, 3), fmt(x.live_pct, 3)]) : []);
  table("fills", ["time", "symbol", "side", "qty", "price", "decision close", "slip bps", "fee", "model", "order"],
    s.fills.map(f => [time(f.ts_event), f.symbol, f.side, fmt(f.quantity, 0), fmt(f.price, 4),
      fmt(f.bar_close, 4), fmt(f.slippage_bps, 1), fmt(f.commission), f.model_version || "", f.order_ref]));
  table("orders", ["time", "symbol", "order", "status", "side", "qty", "bar", "reason"],
    s.orders.map(o => [time(o.ts_event), o.symbol, o.order_ref, o.status, o.side, fmt(o.quantity, 0),
      o.bar_seq, o.reason]));
  const h = s.health;
  const count = (m) => Object.entries(m || {}).map(([k, v]) => k + ": " + v).join(", ") || "0";
  table("health", ["what", "value"], [
    ["last bar age (s)", fmt(h.last_bar_age_s, 1)], ["sequence gaps", h.gaps],
    ["malformed frames", h.malformed], ["duplicates", h.duplicates],
    ["refused on the bus", count(h.bus_refused)], ["refused / flagged", count(h.refused)],
    ["quarantined fills", count(h.quarantined)], ["exec-id conflicts", h.conflicts],
    ["quarantined bars (marketdata)", h.quarantined_bars === null ? (h.marketdata_heard ? "not reported" : "marketdata not heard") : count(typeof h.quarantined_bars === "object" ? h.quarantined_bars : {all: h.quarantined_bars})],
    ["marketdata epoch", h.epoch === null ? "unknown" : h.epoch],
    ["reconnects", count(h.reconnects)]]);
  table("bars", ["symbol", "last close", "age (s)"], h.bars.map(b => [b.symbol, fmt(b.close, 4), fmt(b.age_s, 1)]));
  table("latency", ["stage", "n", "p50 ms", "p95 ms", "max ms"],
    Object.entries(h.latency).map(([k, v]) => [k, v.count, fmt(v.p50_ms, 1), fmt(v.p95_ms, 1), fmt(v.max_ms, 1)]));
  table("execution", ["what", "value"], ex.known ? [
    ["source", ex.source], ["age (s)", fmt(ex.age_s, 1)], ["broker", ex.broker], ["paper", ex.paper],
    ["kill switch", ex.killed], ["broker connected", ex.broker_connected], ["halted day", ex.halted_day],
    ["reduce only", ex.reduce_only], ["dead man", ex.dead_man], ["trading blocked", ex.trading_blocked]]
    : [["status", "not heard from execution yet"]]);
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
  document.body.dataset.equity = String(s.equity);
}

fetch("/dashboard.json").then(r => r.json()).then(render).catch(() => {});
const source = new EventSource("/events");
source.addEventListener("snapshot", (e) => {
  $("live").textContent = "live"; $("live").className = "badge";
  render(JSON.parse(e.data));
});
source.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = "badge off"; };
"""
