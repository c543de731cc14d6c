/* citysight field report page: sign in, photograph, send the position, follow own reports. */

import { applyDom, fmtDateTime, initI18n, t, tEnum } from "./i18n.js";

export { t };

const TOKEN_KEY = "citysight.report.token";
const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
const st = { token: null, me: null, timer: null, config: null };

async function api(path, opts = {}) {
  const headers = { Authorization: `Bearer ${st.token}` };
  const res = await fetch(path, { method: opts.method || "GET", headers, body: opts.body });
  if (!res.ok) {
    let detail = res.statusText;
    try { detail = (await res.json()).detail || detail; } catch (_) { /* not JSON */ }
    if (detail && typeof detail === "object") detail = detail.message || JSON.stringify(detail);
    const err = new Error(String(detail));
    err.status = res.status;
    throw err;
  }
  return res.json();
}

function say(el, text, kind = "") {
  el.textContent = text;
  el.className = `msg ${kind}`;
}

async function signIn(token) {
  st.token = token;
  const me = await api("/api/me");
  if (!(me.scopes || []).includes("reports:write")) {
    const err = new Error(t("report.signin.noscope"));
    err.noscope = true;
    throw err;
  }
  st.me = me;
  st.config = await api("/api/reports/config");
  sessionStorage.setItem(TOKEN_KEY, token);
  const kind = $("report-kind");
  kind.innerHTML = "";
  for (const k of st.config.kinds) {
    const o = document.createElement("option");
    o.value = k;
    o.textContent = tEnum("kind", k);
    kind.appendChild(o);
  }
  $("report-login").hidden = true;
  $("report-form").hidden = false;
  $("report-mine").hidden = false;
  $("report-logout").hidden = false;
  $("report-viewer").hidden = false;
  $("report-viewer").textContent = me.name;
  locate();
  await refresh();
  st.timer = setInterval(() => refresh().catch(() => {}), 15000);
}

function locate() {
  const msg = $("report-geo-status");
  if (!("geolocation" in navigator)) { msg.textContent = t("report.geo.none"); return; }
  msg.textContent = t("report.geo.asking");
  navigator.geolocation.getCurrentPosition(
    (pos) => {
      $("report-lat").value = pos.coords.latitude.toFixed(6);
      $("report-lon").value = pos.coords.longitude.toFixed(6);
      msg.textContent = t("report.geo.ok", { acc: Math.round(pos.coords.accuracy || 0) });
      msg.dataset.state = "ok";
    },
    (err) => {
      msg.textContent = t("report.geo.denied", { why: err.message || err.code });
      msg.dataset.state = "manual";
    },
    { enableHighAccuracy: true, timeout: 15000, maximumAge: 30000 },
  );
}

function showThumbs() {
  const box = $("report-thumbs");
  for (const img of box.querySelectorAll("img")) URL.revokeObjectURL(img.src);
  box.innerHTML = "";
  for (const f of $("report-photo").files) {
    const img = document.createElement("img");
    img.alt = f.name;
    img.src = URL.createObjectURL(f);
    box.appendChild(img);
  }
}

async function send(ev) {
  ev.preventDefault();
  const msg = $("report-msg");
  const files = $("report-photo").files;
  if (!files.length) { say(msg, t("report.need.photo"), "bad"); return; }
  if ($("report-lat").value === "" || $("report-lon").value === "") {
    say(msg, t("report.need.where"), "bad");
    return;
  }
  const body = new FormData();
  for (const f of files) body.append("photos", f, f.name);
  body.append("latitude", $("report-lat").value);
  body.append("longitude", $("report-lon").value);
  body.append("kind", $("report-kind").value);
  body.append("note", $("report-note").value);
  const btn = $("report-send");
  btn.disabled = true;
  say(msg, t("report.sending"));
  try {
    const res = await api("/api/reports", { method: "POST", body });
    say(msg, t(res.created ? "report.sent.new" : "report.sent.joined", { id: res.alert_id }), "ok");
    msg.dataset.alertId = res.alert_id;
    $("report-photo").value = "";
    $("report-note").value = "";
    showThumbs();
    await refresh();
  } catch (err) {
    say(msg, t("report.failed", { detail: err.message }), "bad");
  } finally {
    btn.disabled = false;
  }
}

async function refresh() {
  const rows = await api("/api/reports?mine=1");
  const ul = $("report-list");
  ul.innerHTML = "";
  $("report-empty").hidden = rows.length > 0;
  for (const r of rows) {
    const li = document.createElement("li");
    li.dataset.testid = "report-item";
    li.dataset.alertId = r.alert_id;
    li.innerHTML = "<span class='kind'></span><span class='state'></span><time></time><span class='sub'></span>";
    li.querySelector(".kind").textContent = tEnum("kind", r.kind);
    const s = li.querySelector(".state");
    s.textContent = r.outcome
      ? `${tEnum("state", r.state)} · ${tEnum("outcome", r.outcome)}` : tEnum("state", r.state);
    s.dataset.state = r.state;
    s.dataset.testid = "report-state";
    li.querySelector("time").textContent = fmtDateTime(r.reported_at);
    li.querySelector(".sub").textContent = r.raised_by_me ? t("report.by.me") : t("report.joined");
    ul.appendChild(li);
  }
}

function setup() {
  $("report-login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const token = $("report-token").value.trim();
    try {
      await signIn(token);
    } catch (err) {
      st.token = null;
      say($("report-login-msg"), err.noscope ? err.message : t("report.signin.bad", { detail: err.message }), "bad");
    }
  });
  $("report-form").addEventListener("submit", send);
  $("report-photo").addEventListener("change", showThumbs);
  $("report-locate").addEventListener("click", locate);
  $("report-logout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved).catch(() => sessionStorage.removeItem(TOKEN_KEY));
}

// The catalogue first (the page's static text, then every message), then the page.
initI18n().then(() => { applyDom(); setup(); });
