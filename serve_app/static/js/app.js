/* citysight operations map — entry point: login, start-up, hooks for tests and the benchmark.
 *
 * Plain JS modules, no build step. State lives in a few Maps (core.js); every WebSocket
 * message updates only the DOM nodes and markers it concerns (no full re-render), and
 * messages are applied in batches once per animation frame so bursts stay cheap.
 * Modules: core (state, HTTP), map (base layer, cameras), alerts (list, markers, filters),
 * feed (WebSocket), detail (alert panel and actions), stats (statistics panel, CSV export).
 */

import { ensureAudio, rerenderAlerts, setupFilters, updateCounts, upsertAlert } from "./alerts.js";
import { TOKEN_KEY, api, departmentName, logout, state, t, tid } from "./core.js";
import { rerenderDetail, setupDetail } from "./detail.js";
import { connectWs, flush, handleMessage, rerenderWsStatus } from "./feed.js";
import { initI18n, language, onLanguageChange, setLanguage, setTimeZone } from "./i18n.js";
import { addCameras, addLayerControl, refreshCameras, setCameraHealth, setupMap, showCamera } from "./map.js";
import { setupStats } from "./stats.js";

// -- login -------------------------------------------------------------------------------

// Catalogue first: nothing dynamic is rendered before its language is known (the
// handlers below are attached at once, so an early click is not lost; they wait for it).
const i18nReady = initI18n().catch((err) => console.error("i18n", err)).then(setupLanguage);

async function login(token) {
  await i18nReady;
  state.token = token;
  const me = await api("/api/me");
  state.me = me;
  sessionStorage.setItem(TOKEN_KEY, token);
  // The map's settings first: department names and the city's zone label what follows.
  state.mapConfig = await api("/api/config/map");
  setTimeZone(state.mapConfig.timezone);
  for (const d of state.mapConfig.departments || []) state.departmentInfo.set(d.id, d);
  tid("login").hidden = true;
  const v = tid("viewer");
  v.hidden = false;
  renderViewer();
  v.dataset.role = me.role;
  tid("logout").hidden = false;
  await start();
}

function renderViewer() {
  const me = state.me;
  if (!me) return;
  tid("viewer").textContent = t("topbar.viewer", {
    name: me.name, role: me.role,
    department: me.department === "*" ? t("topbar.all_departments") : departmentName(me.department),
  });
}

function setupLanguage() {
  for (const sel of document.querySelectorAll(".lang-switch")) {
    sel.value = language();
    sel.addEventListener("change", () => setLanguage(sel.value));
  }
  onLanguageChange((lang) => {
    for (const sel of document.querySelectorAll(".lang-switch")) sel.value = lang;
    renderViewer();
    rerenderWsStatus();
    rerenderAlerts();
    rerenderDetail();
    addLayerControl();
  });
}

function setupLogin() {
  tid("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    ensureAudio();  // a user gesture: the only moment browsers allow creating audio
    tid("login-error").textContent = "";
    try {
      await login(tid("token-input").value.trim());
    } catch (err) {
      state.token = null;
      tid("login-error").textContent = err.status === 401 || err.status === 403
        ? t("login.rejected") : t("login.failed", { error: err.message });
    }
  });
  tid("logout").addEventListener("click", logout);
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) login(saved).catch(() => sessionStorage.removeItem(TOKEN_KEY));
}

// -- start -------------------------------------------------------------------------------

async function loadAlerts() {
  const list = await api("/api/alerts?limit=500");
  const alerts = Array.isArray(list) ? list : list.alerts || [];
  // Chunks of 100 with a yield between them keep main-thread tasks short on first load.
  for (let i = 0; i < alerts.length; i += 100) {
    for (const a of alerts.slice(i, i + 100)) upsertAlert(a);
    if (i + 100 < alerts.length) await new Promise((r) => setTimeout(r, 0));
  }
  updateCounts();
}

/** Every open critical alert in scope, however old (the listing above has the newest 500). */
async function loadOpenCritical() {
  let before = "";
  for (let page = 0; page < 20; page += 1) {  // at most 10,000: the counter stays bounded work
    const list = await api(`/api/alerts?severity=critical&state=raised,assigned,acknowledged&limit=500${before}`);
    for (const a of list) upsertAlert(a);
    if (list.length < 500) break;
    before = `&before=${encodeURIComponent(list[list.length - 1].id)}`;
  }
  updateCounts();
}

async function start() {
  await setupMap();
  setupStats();
  // Feed first, listing second: nothing raised in between is missed, and the listing's
  // copies never overwrite newer ones from the feed (upsertAlert compares updated_at).
  connectWs();
  await Promise.all([
    refreshCameras(),
    loadAlerts().catch((e) => console.warn("alerts", e)),
    loadOpenCritical().catch((e) => console.warn("open critical alerts", e)),
  ]);
  setInterval(refreshCameras, 30000);
  document.body.dataset.ready = "true";
  performance.mark("citysight-ready");
}

// Exposed for tests and the benchmark (measure message application without a server).
window.citysight = {
  state, handleMessage, flush, upsertAlert, setCameraHealth, addCameras, connectWs, showCamera,
};

setupLogin();
setupFilters();
setupDetail();
