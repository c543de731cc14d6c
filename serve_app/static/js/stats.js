/* citysight operations map — statistics panel: alerts per day (SVG bars) and a table by
 * township from GET /api/stats, plus the CSV export of the alert list (GET /api/alerts?format=csv).
 *
 * Everything is scoped on the server: a township officer's panel shows its township only.
 * The panel builds its own DOM (a button in the top bar and a floating section), so the
 * shared page needs no markup for it; its strings are "stats.*" messages of the catalogues
 * (i18n.js). Plain SVG, no chart library.
 */

import { api, state, tid } from "./core.js";
import { onLanguageChange, t } from "./i18n.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const OPEN = ["raised", "assigned", "acknowledged"];
const HANDLED = ["resolved", "feedback", "closed", "false_alarm"];

function el(tag, attrs = {}, text = "") {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v);
  if (text) n.textContent = text;
  return n;
}

function svg(tag, attrs = {}) {
  const n = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  return n;
}

/** "95 s", "12 min", "3.4 h" — a duration short enough for a table cell. */
export function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

const pct = (x) => (x === null || x === undefined ? "–" : `${Math.round(x * 100)} %`);
const sum = (o, keys) => keys.reduce((n, k) => n + (o[k] || 0), 0);

/** Bars per day: total height, with the false alarms drawn darker at the bottom. */
function drawChart(host, days) {
  host.replaceChildren();
  const w = 360, h = 120, pad = 18;
  const root = svg("svg", { viewBox: `0 0 ${w} ${h + pad}`, class: "stats-chart", role: "img",
    "data-testid": "stats-chart" });
  const max = Math.max(1, ...days.map((d) => d.total));
  const bw = (w - 8) / Math.max(1, days.length);
  days.forEach((d, i) => {
    const x = 4 + i * bw;
    const bh = (d.total / max) * (h - 14);
    const bar = svg("rect", { x: x + 1, y: h - bh, width: Math.max(1, bw - 2), height: bh,
      class: "bar", "data-testid": "stats-bar", "data-date": d.date, "data-total": d.total });
    const tip = svg("title");
    tip.textContent = t("stats.bar_title", { date: d.date, total: d.total, false_alarm: d.false_alarm });
    bar.appendChild(tip);
    root.appendChild(bar);
    if (d.false_alarm) {
      const fh = (d.false_alarm / max) * (h - 14);
      root.appendChild(svg("rect", { x: x + 1, y: h - fh, width: Math.max(1, bw - 2), height: fh,
        class: "bar-false" }));
    }
    if (d.total) {
      const label = svg("text", { x: x + bw / 2, y: h - bh - 2, class: "bar-n" });
      label.textContent = String(d.total);
      root.appendChild(label);
    }
    // Date labels: first, last and every ~7th day.
    if (i === 0 || i === days.length - 1 || (days.length > 10 && i % 7 === 0)) {
      const lab = svg("text", { x: x + bw / 2, y: h + 12, class: "day" });
      lab.textContent = d.date.slice(5);
      root.appendChild(lab);
    }
  });
  root.appendChild(svg("line", { x1: 0, y1: h, x2: w, y2: h, class: "axis" }));
  host.appendChild(root);
}

function drawTable(host, groups, overall) {
  host.replaceChildren();
  const table = el("table", { class: "stats-table", "data-testid": "stats-table" });
  const head = el("tr");
  for (const k of ["stats.area", "stats.total", "stats.open", "stats.handled", "stats.ack_median",
    "stats.ack_p90", "stats.resolve_median", "stats.breaches", "stats.reopen", "stats.precision"]) {
    head.appendChild(el("th", {}, t(k)));
  }
  table.appendChild(el("thead")).appendChild(head);
  const body = table.appendChild(el("tbody"));
  const row = (g, key, name) => {
    const tr = el("tr", { "data-testid": "stats-row", "data-key": key });
    const cells = [name, g.total, sum(g.by_state, OPEN), sum(g.by_state, HANDLED),
      fmtDuration(g.time_to_acknowledge_s.median), fmtDuration(g.time_to_acknowledge_s.p90),
      fmtDuration(g.time_to_resolve_s.median), g.sla_breaches, pct(g.reopen_rate), pct(g.precision)];
    cells.forEach((c, i) => tr.appendChild(el("td", i ? { class: "n" } : {}, String(c))));
    return tr;
  };
  for (const g of groups) body.appendChild(row(g, g.key, g.name));
  if (groups.length > 1) body.appendChild(row(overall, "*", t("stats.all"))).classList.add("total");
  host.appendChild(table);
}

async function fetchStats(days) {
  const to = Date.now() / 1000;
  const range = `from=${Math.floor(to - days * 86400)}&to=${Math.ceil(to)}`;
  try {
    return [await api(`/api/stats?group_by=jurisdiction&level=township&${range}`), true];
  } catch (err) {
    // No hierarchy (or none with townships): group by each alert's own jurisdiction.
    if (err.status !== 422) throw err;
    return [await api(`/api/stats?group_by=jurisdiction&${range}`), false];
  }
}

async function refresh(panel) {
  const days = Number(panel.querySelector("[data-testid=stats-range]").value);
  const msg = panel.querySelector("[data-testid=stats-msg]");
  msg.textContent = "";
  try {
    const [body, townships] = await fetchStats(days);
    panel.querySelector("[data-role=by-area]").textContent =
      townships ? t("stats.by_township") : t("stats.by_jurisdiction");
    drawChart(panel.querySelector("[data-role=chart]"), body.by_day);
    drawTable(panel.querySelector("[data-role=table]"), body.groups, body.overall);
    if (!body.overall.total) msg.textContent = t("stats.none");
    panel.dataset.total = String(body.overall.total);
    panel.dataset.loaded = "true";
  } catch (err) {
    msg.textContent = t("stats.failed", { msg: err.message });
    panel.dataset.loaded = "error";
  }
}

/** Download the alert list as CSV (the same scope; the server audits the export). */
async function exportCsv(days) {
  const since = Math.floor(Date.now() / 1000 - days * 86400);
  const res = await api(`/api/alerts?format=csv&since=${since}`, { raw: true });
  const blob = await res.blob();
  const a = el("a", { href: URL.createObjectURL(blob),
    download: `citysight-alerts-${new Date().toISOString().slice(0, 10)}.csv` });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function buildPanel() {
  const panel = el("section", { class: "stats-panel", "data-testid": "stats-panel" });
  panel.hidden = true;
  const headRow = el("div", { class: "stats-head" });
  headRow.appendChild(el("h2", {}, t("stats.title")));
  const range = el("select", { "data-testid": "stats-range", "aria-label": t("stats.range") });
  for (const n of [7, 14, 30]) range.appendChild(el("option", { value: String(n) }, t("stats.days", { n })));
  headRow.appendChild(range);
  const csv = el("button", { type: "button", "data-testid": "stats-csv" }, t("stats.csv"));
  headRow.appendChild(csv);
  const close = el("button", { type: "button", class: "close", "data-testid": "stats-close",
    title: t("stats.close") }, "×");
  headRow.appendChild(close);
  panel.appendChild(headRow);
  panel.appendChild(el("h3", {}, t("stats.per_day")));
  panel.appendChild(el("div", { "data-role": "chart" }));
  panel.appendChild(el("h3", { "data-role": "by-area" }, t("stats.by_township")));
  panel.appendChild(el("div", { "data-role": "table", class: "stats-table-wrap" }));
  panel.appendChild(el("div", { class: "stats-msg", "data-testid": "stats-msg" }));
  range.addEventListener("change", () => refresh(panel));
  close.addEventListener("click", () => { panel.hidden = true; });
  csv.addEventListener("click", () => exportCsv(Number(range.value)).catch((err) => {
    panel.querySelector("[data-testid=stats-msg]").textContent = t("stats.failed", { msg: err.message });
  }));
  return panel;
}

/** Add the statistics button to the top bar and the panel to the page (once). */
export function setupStats() {
  if (tid("stats-toggle")) return;
  let panel = buildPanel();
  document.querySelector("main.layout").appendChild(panel);
  // A bar-chart icon and a label; phones show the icon only (the label stays as title).
  const button = el("button", { type: "button", class: "stats-toggle", "data-testid": "stats-toggle",
    title: t("stats.button"), "aria-label": t("stats.button") });
  const icon = svg("svg", { viewBox: "0 0 16 16", width: 16, height: 16, "aria-hidden": "true" });
  for (const [x, h] of [[2, 6], [7, 11], [12, 8]]) {
    icon.appendChild(svg("rect", { x, y: 15 - h, width: 3, height: h, fill: "currentColor" }));
  }
  const label = el("span", { class: "stats-label" }, t("stats.button"));
  button.append(icon, label);
  const bar = document.querySelector(".topbar");
  bar.insertBefore(button, bar.querySelector(".spacer"));
  button.addEventListener("click", () => {
    panel.hidden = !panel.hidden;
    if (!panel.hidden) refresh(panel);
  });
  state.stats = { refresh: () => refresh(panel) };
  // A language switch rebuilds the labels (and the table, whose headers are messages).
  onLanguageChange(() => {
    label.textContent = t("stats.button");
    button.title = t("stats.button");
    button.setAttribute("aria-label", t("stats.button"));
    const open = !panel.hidden;
    const fresh = buildPanel();
    fresh.hidden = !open;
    const days = panel.querySelector("[data-testid=stats-range]").value;
    fresh.querySelector("[data-testid=stats-range]").value = days;
    panel.replaceWith(fresh);
    panel = fresh;
    if (open) refresh(panel);
  });
}
