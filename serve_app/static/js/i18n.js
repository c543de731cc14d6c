/* citysight operations map — Message catalogues, language choice and zone-labelled times.
 *
 * Every user-visible string goes through t(key, params). Catalogues are JSON files in
 * /static/i18n/<lang>.json (flat "area.name" keys, "{param}" placeholders, plural forms as
 * {"one": ..., "other": ...} chosen by Intl.PluralRules on params.n). A key missing from the
 * current language falls back to English, then to the key itself (never an empty string).
 * tests/serve_app/map/test_i18n_catalogues.py checks both catalogues have the same keys and
 * every key the page uses exists.
 *
 * Language, first match wins: the switch (localStorage), the city's default (ui.language in
 * the config, written into <html data-default-language> by the server, also in
 * /api/config/map), the browser's navigator.languages, English.
 */

export const LANGUAGES = ["zh-CN", "en"];
export const LANGUAGE_KEY = "citysight.language";
const FALLBACK = "en";

const catalogues = {};   // lang -> {key: message}
let current = FALLBACK;
const listeners = [];

/** The best supported language for a BCP 47 tag ("zh", "zh-Hans-CN" -> zh-CN), or null. */
export function matchLanguage(tag) {
  if (!tag) return null;
  const low = String(tag).toLowerCase();
  for (const l of LANGUAGES) if (l.toLowerCase() === low) return l;
  const base = low.split("-")[0];
  for (const l of LANGUAGES) if (l.toLowerCase().split("-")[0] === base) return l;
  return null;
}

/** The language to start with (see the module comment for the order). */
export function pickLanguage() {
  let stored = null;
  try { stored = localStorage.getItem(LANGUAGE_KEY); } catch (_) { /* storage disabled */ }
  const configured = document.documentElement.dataset.defaultLanguage;
  const candidates = [stored, configured && configured !== "auto" ? configured : null,
    ...(navigator.languages || [navigator.language])];
  for (const c of candidates) {
    const m = matchLanguage(c);
    if (m) return m;
  }
  return FALLBACK;
}

async function load(lang) {
  if (catalogues[lang]) return catalogues[lang];
  const res = await fetch(`/static/i18n/${lang}.json`);
  if (!res.ok) throw new Error(`catalogue ${lang}: ${res.status}`);
  catalogues[lang] = await res.json();
  return catalogues[lang];
}

/** The current language tag (one of LANGUAGES). */
export function language() { return current; }

function lookup(lang, key) {
  const cat = catalogues[lang];
  return cat && Object.prototype.hasOwnProperty.call(cat, key) ? cat[key] : undefined;
}

/**
 * The message ``key`` in the current language with ``{name}`` placeholders filled.
 *
 * @param {string} key Catalogue key, e.g. "detail.state".
 * @param {Object} [params] Values for the placeholders; ``n`` picks a plural form.
 * @returns {string} The message; English when the key is missing, the key when missing there too.
 */
export function t(key, params) {
  let msg = lookup(current, key);
  let lang = current;
  if (msg === undefined) { msg = lookup(FALLBACK, key); lang = FALLBACK; }
  if (msg === undefined) {
    if (catalogues[FALLBACK]) console.warn("i18n: no message for", key);
    return key;
  }
  if (msg && typeof msg === "object") {
    const n = params && typeof params.n === "number" ? params.n : 0;
    const form = new Intl.PluralRules(lang).select(n);
    msg = msg[form] !== undefined ? msg[form] : msg.other;
  }
  if (!params) return msg;
  return msg.replace(/\{(\w+)\}/g, (m, name) => (params[name] !== undefined && params[name] !== null
    ? String(params[name]) : m));
}

/** The translation of an enum value (``kind``, ``state``...), the raw value when unknown. */
export function tEnum(group, value) {
  if (value === undefined || value === null || value === "") return "";
  const key = `${group}.${value}`;
  return lookup(current, key) !== undefined || lookup(FALLBACK, key) !== undefined
    ? t(key) : String(value).replace(/_/g, " ");
}

/** Fill static markup: data-i18n (text), data-i18n-placeholder, data-i18n-title, data-i18n-alt. */
export function applyDom(root = document) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const attr of ["placeholder", "title", "alt", "aria-label"]) {
    const data = `i18n${attr === "aria-label" ? "Aria" : attr[0].toUpperCase() + attr.slice(1)}`;
    for (const el of root.querySelectorAll(`[data-i18n-${attr === "aria-label" ? "aria" : attr}]`)) {
      el.setAttribute(attr, t(el.dataset[data]));
    }
  }
  if (root === document) document.documentElement.lang = current;
}

/** Call ``fn(lang)`` after every language change (to re-render dynamic text). */
export function onLanguageChange(fn) { listeners.push(fn); }

/** Switch language (loads its catalogue), persist the choice, re-render. */
export async function setLanguage(lang, { persist = true } = {}) {
  const m = matchLanguage(lang) || FALLBACK;
  await Promise.all([load(FALLBACK), load(m)]);
  current = m;
  if (persist) {
    try { localStorage.setItem(LANGUAGE_KEY, m); } catch (_) { /* storage disabled */ }
  }
  setTimeZone(zone);
  applyDom();
  document.body.dataset.language = m;
  for (const fn of listeners) {
    try { fn(m); } catch (err) { console.error("language change", err); }
  }
}

/** Load the starting language's catalogue (call once, before rendering anything). */
export async function initI18n() {
  await setLanguage(pickLanguage(), { persist: false });
}

// -- times --------------------------------------------------------------------------------

// Times are shown in the city's zone (site.timezone from /api/config/map), not the
// browser's, and labelled with it: an operator elsewhere sees what the street sees.
let zone = null;
let zoneLabel = "";
let TIME_FMT = null;
let DATETIME_FMT = null;
let OFFSET_FMT = null;

/** The zone's offset at ``at``, e.g. "UTC+8" (from Intl's "GMT+8"; "UTC" for zero). */
export function offsetLabel(timeZone, at = new Date()) {
  try {
    const fmt = timeZone === zone && OFFSET_FMT ? OFFSET_FMT
      : new Intl.DateTimeFormat("en-US", { timeZone: timeZone || undefined, timeZoneName: "shortOffset" });
    const name = (fmt.formatToParts(at).find((p) => p.type === "timeZoneName") || {}).value || "";
    return name === "GMT" ? "UTC" : name.replace(/^GMT/, "UTC");
  } catch (_) {
    return "";
  }
}

// The label of each time is its own offset (a zone with summer time has two in a year).
function labelOf(d) {
  return zoneLabel ? offsetLabel(zone, d) || zoneLabel : "";
}

/** Show times in this IANA zone (null or unknown: the browser's own). */
export function setTimeZone(timeZone) {
  const base = { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
  let tz = timeZone || undefined;
  try {
    new Intl.DateTimeFormat("en", { timeZone: tz });
  } catch (err) {
    console.warn("unknown time zone", timeZone, err);
    tz = undefined;
  }
  zone = tz || null;
  OFFSET_FMT = null;
  zoneLabel = offsetLabel(tz);
  OFFSET_FMT = new Intl.DateTimeFormat("en-US", { timeZone: tz, timeZoneName: "shortOffset" });
  TIME_FMT = new Intl.DateTimeFormat(current, { ...base, timeZone: tz });
  DATETIME_FMT = new Intl.DateTimeFormat(current, { year: "numeric", month: "short", day: "numeric", ...base, timeZone: tz });
  const el = document.querySelector('[data-testid="time-zone"]');
  if (el) {
    el.textContent = zoneLabel;
    el.title = t("topbar.zone", { zone: zone || Intl.DateTimeFormat().resolvedOptions().timeZone, offset: zoneLabel });
  }
}

/** The label of the zone times are shown in, e.g. "UTC+8". */
export function timeZoneLabel() { return zoneLabel; }

function valid(iso) {
  if (!iso) return null;
  const d = new Date(typeof iso === "number" ? iso * 1000 : iso);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** "14:03:22 UTC+8" (the zone label only when ``withZone``). */
export function fmtTime(iso, { withZone = true } = {}) {
  const d = valid(iso);
  if (!d) return "";
  if (!TIME_FMT) setTimeZone(zone);
  return withZone && zoneLabel ? `${TIME_FMT.format(d)} ${labelOf(d)}` : TIME_FMT.format(d);
}

/** Date and time with the zone label, e.g. "2026年12月1日 14:03:22 UTC+8". */
export function fmtDateTime(iso) {
  const d = valid(iso);
  if (!d) return "";
  if (!DATETIME_FMT) setTimeZone(zone);
  return zoneLabel ? `${DATETIME_FMT.format(d)} ${labelOf(d)}` : DATETIME_FMT.format(d);
}

// One global for code that is not a module (and for helpers' pages adopting the catalogue).
window.citysightI18n = { t, tEnum, language, setLanguage, onLanguageChange, fmtTime, fmtDateTime, setTimeZone };
