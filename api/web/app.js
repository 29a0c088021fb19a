// The control-room page: live alert list (server-sent events), alert detail and actions,
// counter tiles with sparklines, the district map, rules and silences.

import { get, send, follow, setToken, takeTokenFromHash, token } from "./api.js";
import { t, translatePage, toggleLang, summary, age, clock } from "./i18n.js";
import { drawMap, areaIndex, deviceOf } from "./map.js";
import { h } from "./dom.js";
import { explainedList, whyItFired, whyNot } from "./explain.js";
import { renderIncidents } from "./incidents.js";

const RANK = { critical: 4, major: 3, minor: 2, info: 1 };
const FIELD_STATES = ["responded", "on_site", "done", "false_alarm"];
const SOUND_KEY = "citywatch.sound";

const state = {
  me: { name: null, role: null, auth: "writes" },
  alerts: new Map(),
  filters: { domain: "", severity: "", district: "", unit: "", state: "firing", area: null, device: null },
  map: null,
  areas: new Map(),
  tiles: null,
  open: null,
  connected: false,
  sound: localStorage.getItem(SOUND_KEY) !== "off",
  audio: null,
  tab: "map",
  rules: [],
};

const $ = (sel) => document.querySelector(sel);

function toast(message, bad) {
  const box = h("div", { class: "toast" + (bad ? " bad" : ""), role: "status" }, message);
  $("#toasts").append(box);
  setTimeout(() => box.remove(), 6000);
}

// ---- who is looking -------------------------------------------------------------------

function unitOfCaller() {
  const r = state.me.role || "";
  return r.startsWith("unit:") ? r.slice(5) : null;
}

function mayAct(alert) {
  if (state.me.auth === "off") return true;
  const r = state.me.role || "";
  if (r === "operator" || r === "admin") return true;
  const unit = unitOfCaller();
  return unit !== null && alert.labels && alert.labels.maintenance_unit === unit;
}

function mayOperate() {
  return state.me.auth === "off" || state.me.role === "operator" || state.me.role === "admin";
}

function mayAdmin() {
  return state.me.auth === "off" || state.me.role === "admin";
}

async function whoAmI() {
  try {
    state.me = await get("/api/v1/me");
  } catch (e) {
    // A token nobody issued: forget it and carry on without.
    if (e.status === 401 && token()) {
      setToken("");
      toast(e.message, true);
      state.me = await get("/api/v1/me").catch(() => state.me);
    }
  }
  document.body.classList.toggle("unit-view", unitOfCaller() !== null);
  const who = state.me.name ? `${state.me.name} · ${state.me.role}` : t("anonymous");
  $("#who").textContent = who;
  $("#login").textContent = token() ? t("logout") : t("login");
}

// ---- alerts -----------------------------------------------------------------------------

function fromRow(row) {
  return Object.assign({}, row.body, {
    id: row.id,
    rule: row.rule,
    severity: row.severity,
    state: row.state,
    version: row.version,
    since_ms: row.since_ms,
    resolved_ms: row.resolved_ms,
    suppressed: row.suppressed,
  });
}

// Found in a device's late backlog: how much later than it happened it was known.
function late(a) {
  return a.late_by_ms
    ? h("span", { class: "late", title: t("late_title") }, ` ${t("late")} ${age(a.late_by_ms)}`)
    : null;
}

function upsert(alert) {
  const old = state.alerts.get(alert.id);
  if (old && old.version > alert.version) return false;
  state.alerts.set(alert.id, alert);
  return true;
}

function onTransition(data) {
  const tr = JSON.parse(data);
  const alert = Object.assign({}, tr.body, { id: tr.alert_id, state: tr.state, version: tr.version });
  if (tr.state === "resolved" && !alert.resolved_ms) alert.resolved_ms = tr.at_ms;
  const isNew = !state.alerts.has(alert.id) || state.alerts.get(alert.id).state !== "firing";
  if (!upsert(alert)) return;
  if (tr.event === "firing" && isNew && alert.severity === "critical") beep();
  scheduleRender();
  scheduleTiles();
  if (state.open === alert.id) openDetail(alert.id);
}

async function loadAlerts() {
  const [firing, resolved] = await Promise.all([
    get("/api/v1/alerts?state=firing&limit=1000"),
    get("/api/v1/alerts?state=resolved&limit=200"),
  ]);
  for (const row of [...firing, ...resolved]) upsert(fromRow(row));
  scheduleRender();
}

function matches(a) {
  const f = state.filters;
  const l = a.labels || {};
  if (f.state !== "all" && a.state !== f.state) return false;
  if (f.domain && l.domain !== f.domain) return false;
  if (f.severity && a.severity !== f.severity) return false;
  if (f.district && l.district !== f.district) return false;
  if (f.unit && l.maintenance_unit !== f.unit) return false;
  const device = deviceOf(l);
  if (f.device && device !== f.device) return false;
  if (f.area && state.areas.get(device) !== f.area) return false;
  return true;
}

function sorted() {
  return [...state.alerts.values()].filter(matches).sort((a, b) =>
    (a.state === "firing" ? 0 : 1) - (b.state === "firing" ? 0 : 1) ||
    (RANK[b.severity] || 0) - (RANK[a.severity] || 0) ||
    (b.since_ms || 0) - (a.since_ms || 0));
}

/** Names of devices by `kind:id`, from the map's reference data. */
const names = new Map();

function where(a) {
  const l = a.labels || {};
  const device = deviceOf(l);
  const name = device && names.get(device);
  return [l.building, l.elevator_id, name && name !== l.building ? name : null, l.kitchen_id,
    l.camera_id, l.market_id, l.stall_id, l.merchant_name || l.merchant_id, l.office]
    .filter(Boolean).join(" · ");
}

function badge(severity) {
  return h("span", { class: "sev sev-" + severity }, t(severity));
}

function renderList() {
  const list = $("#alerts");
  const rows = sorted();
  const now = Date.now();
  list.replaceChildren(...rows.slice(0, 300).map((a) => {
    const ops = a.ops || {};
    const status = a.state === "resolved" ? t("resolved")
      : ops.field_state ? t(ops.field_state)
      : ops.acked_ms ? t("acknowledged") : t("unacknowledged");
    return h("li", {
      class: `alert st-${a.state} sev-row-${a.severity}` + (ops.acked_ms ? " acked" : "") +
        (state.open === a.id ? " open" : ""),
      "data-alert-id": a.id,
      "data-rule": a.rule,
      "data-device": deviceOf(a.labels) || "",
      "data-state": a.state,
      tabindex: "0",
      onclick: () => openDetail(a.id),
      onkeydown: (e) => { if (e.key === "Enter") openDetail(a.id); },
    },
    badge(a.severity),
    h("span", { class: "what" }, summary(a), late(a)),
    h("span", { class: "where" }, where(a)),
    h("span", { class: "age", "data-since": a.since_ms || 0, "data-until": a.resolved_ms || "" },
      age((a.resolved_ms || now) - (a.since_ms || now))),
    h("span", { class: "status" }, status),
    a.state === "firing" && !ops.acked_ms && mayAct(a)
      ? h("button", { class: "quick-ack", onclick: (e) => { e.stopPropagation(); act(a.id, "ack", {}); } }, t("ack"))
      : null);
  }));
  if (!rows.length) list.append(h("li", { class: "empty" }, t("no_alerts")));
  $("#count").textContent = String(rows.length);
  renderFilterOptions();
  renderMap();
}

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    renderList();
  });
}

function tickAges() {
  const now = Date.now();
  for (const el of document.querySelectorAll(".age[data-since]")) {
    if (el.dataset.until) continue;
    el.textContent = age(now - Number(el.dataset.since));
  }
  $("#clock").textContent = new Date().toLocaleTimeString(undefined, { hour12: false });
}

function renderFilterOptions() {
  const fill = (id, values) => {
    const sel = $(id);
    const current = sel.value;
    const known = [...sel.options].map((o) => o.value).slice(1);
    const all = [...new Set([...known, ...values].filter(Boolean))].sort();
    if (all.length === known.length) return;
    sel.replaceChildren(h("option", { value: "" }, t("all")), ...all.map((v) => h("option", { value: v }, v)));
    sel.value = current;
  };
  const alerts = [...state.alerts.values()];
  const fromMap = state.map ? state.map.elevators : [];
  fill("#f-district", [...alerts.map((a) => a.labels && a.labels.district), ...fromMap.map((e) => e.district)]);
  fill("#f-unit", [...alerts.map((a) => a.labels && a.labels.maintenance_unit), ...fromMap.map((e) => e.unit)]);
  const chips = [];
  if (state.filters.area) chips.push(`${t("area")}: ${state.filters.area}`);
  if (state.filters.device) chips.push(`${t("device")}: ${state.filters.device}`);
  $("#picked").textContent = chips.join("  ");
}

// ---- actions ----------------------------------------------------------------------------

async function act(id, action, body) {
  try {
    await send("POST", `/api/v1/alerts/${encodeURIComponent(id)}/${action}`, body);
    toast(t("done_ok"));
  } catch (e) {
    toast(e.status === 401 ? `${t("need_token")}: ${e.message}` : e.message, true);
  }
  if (state.open === id) openDetail(id);
}

async function silenceFor(a) {
  const matchers = [`rule=${a.rule}`];
  for (const [k, v] of Object.entries(a.group_labels || {})) matchers.push(`${k}=${v}`);
  try {
    await send("POST", "/api/v1/silences", {
      matchers,
      ends_ms: Date.now() + 2 * 3600 * 1000,
      author: state.me.name || "control-room",
      reason: "control room: " + (summary(a) || a.rule),
    });
    toast(t("done_ok"));
    if (state.tab === "silences") renderSilences();
  } catch (e) {
    toast(e.message, true);
  }
}

// ---- detail -----------------------------------------------------------------------------

async function openDetail(id) {
  state.open = id;
  const pane = $("#detail");
  let d;
  try {
    d = await get(`/api/v1/alerts/${encodeURIComponent(id)}`);
  } catch (e) {
    toast(e.message, true);
    return;
  }
  if (state.open !== id) return;
  const a = fromRow(d.alert);
  upsert(a);
  const ops = a.ops || {};
  const labels = Object.entries(a.labels || {}).sort();
  const can = mayAct(a);
  const firing = a.state === "firing";
  const elevator = (a.labels || {}).domain === "elevator";
  const assignTo = h("input", { id: "assign-to", placeholder: t("assign_to") });
  const commentText = h("input", { id: "comment-text", placeholder: t("comment_text") });
  const evidence = a.evidence && a.evidence.snapshot;
  // Only http(s) addresses become links: a snapshot id is shown as text, and nothing from a
  // device can become a javascript: link.
  const evidenceLink = evidence && /^https?:\/\//i.test(evidence);
  const why = h("div", { id: "why" });
  whyItFired(id, why);
  pane.replaceChildren(...[
    h("div", { class: "detail-head" },
      badge(a.severity),
      h("h2", {}, summary(a)),
      h("button", { class: "close", onclick: closeDetail, "aria-label": t("close") }, "×")),
    h("p", { class: "muted" }, `${a.rule} · ${a.id}`),
    h("dl", { class: "facts" },
      h("dt", {}, t("state")), h("dd", { "data-field": "state" }, a.state === "firing" ? t("firing") : t("resolved")),
      h("dt", {}, t("value")), h("dd", {}, String(a.value)),
      h("dt", {}, t("since")), h("dd", {}, clock(a.since_ms)),
      a.late_by_ms ? [h("dt", {}, t("late_by")), h("dd", { "data-field": "late_by" }, age(a.late_by_ms))] : null,
      h("dt", {}, t("acknowledged")), h("dd", { "data-field": "acked" }, ops.acked_by ? `${ops.acked_by} ${clock(ops.acked_ms)}` : t("none")),
      h("dt", {}, t("assignee")), h("dd", {}, ops.assignee || t("none")),
      elevator ? [h("dt", {}, t("field_state")), h("dd", { "data-field": "field_state" }, ops.field_state ? t(ops.field_state) : t("none"))] : null,
      h("dt", {}, t("escalation_step")), h("dd", {}, String(ops.escalation_step || 0)),
      a.suppressed ? [h("dt", {}, t("suppressed")), h("dd", {}, a.suppressed)] : null,
      d.incidents && d.incidents.length ? [h("dt", {}, t("in_incident")), h("dd", { "data-field": "incidents" },
        d.incidents.map((id) => h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); showTab("incidents"); } }, id)))] : null,
      evidence ? [h("dt", {}, t("evidence")), h("dd", { "data-field": "evidence" }, evidenceLink
        ? h("a", { href: evidence, target: "_blank", rel: "noopener noreferrer" }, evidence)
        : evidence, " ", clock(a.evidence.ts))] : null),
    can && firing ? h("div", { class: "actions" },
      h("button", { id: "do-ack", disabled: !!ops.acked_ms, onclick: () => act(a.id, "ack", {}) }, t("ack")),
      elevator ? FIELD_STATES.map((s) => h("button", { "data-field-state": s, onclick: () => act(a.id, "state", { state: s }) }, t(s))) : null,
      h("button", { onclick: () => act(a.id, "false_positive", {}) }, t("false_positive")),
      h("button", { onclick: () => act(a.id, "resolve", {}) }, t("resolve")),
      mayOperate() ? h("button", { onclick: () => silenceFor(a) }, t("silence")) : null) : null,
    can ? h("div", { class: "actions" },
      assignTo, h("button", { onclick: () => assignTo.value && act(a.id, "assign", { to: assignTo.value }) }, t("assign")),
      commentText, h("button", { onclick: () => commentText.value && act(a.id, "comment", { text: commentText.value }) }, t("comment"))) : null,
    h("h3", {}, t("labels")),
    h("table", { class: "kv" }, labels.map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)))),
    h("h3", {}, t("history")),
    h("table", { class: "grid" },
      h("tr", {}, h("th", {}, t("at")), h("th", {}, t("event")), h("th", {}, t("state")), h("th", {}, "")),
      d.transitions.map((tr) => h("tr", {},
        h("td", {}, clock(tr.body && tr.body.event && tr.body.event.wall_ms || tr.at_ms)),
        h("td", {}, tr.event),
        h("td", {}, tr.state),
        h("td", {}, describe(tr.body && tr.body.event))))),
    h("h3", {}, t("notifications")),
    h("table", { class: "grid", id: "notifications" },
      h("tr", {}, h("th", {}, t("receiver")), h("th", {}, "v"), h("th", {}, t("state")), h("th", {}, t("attempts")), h("th", {}, "")),
      d.notifications.map((n) => h("tr", {},
        h("td", {}, `${n.receiver_id} (${n.kind})`),
        h("td", {}, String(n.version)),
        h("td", { class: "n-" + n.status }, t(n.status)),
        h("td", {}, String(n.attempts)),
        h("td", {}, n.last_error || "")))),
    why,
    d.escalations.length ? [h("h3", {}, t("escalations")),
      h("table", { class: "grid" }, d.escalations.map((e) => h("tr", {},
        h("td", {}, String(e.step + 1)), h("td", {}, e.status), h("td", {}, clock(e.due_ms)),
        h("td", {}, e.policy))))] : null,
  ].flat().filter(Boolean));
  document.body.classList.add("detail-open");
  renderList();
}

function describe(ev) {
  if (!ev) return "";
  return Object.entries(ev)
    .filter(([k, v]) => !["kind", "at_ms", "wall_ms"].includes(k) && v !== null && v !== undefined)
    .map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`)
    .join(", ");
}

function closeDetail() {
  state.open = null;
  document.body.classList.remove("detail-open");
  renderList();
}

// ---- tiles ------------------------------------------------------------------------------

const TILES = [
  { key: "elevators", spark: "elevators.online", values: [
    ["online", (x) => x.online, "elevators.online"],
    ["offline", (x) => x.offline, "elevators.offline"],
    ["in_fault", (x) => x.in_fault, "elevators.in_fault"],
    ["trapped", (x) => x.trapped, "elevators.trapped"]] },
  { key: "markets", spark: "markets.turnover_hour_yuan", values: [
    ["turnover_hour", (x) => "¥" + Math.round(x.turnover_hour_yuan).toLocaleString(), "markets.turnover_hour_yuan"],
    ["sales_hour", (x) => x.sales_hour, "markets.sales_hour"],
    ["tests_today", (x) => x.tests_today, "markets.tests_today"],
    ["failed_tests", (x) => x.failed_tests_today, "markets.failed_tests_today"],
    ["on_hold", (x) => x.stalls_on_hold, "markets.stalls_on_hold"]] },
  { key: "cameras", spark: "cameras.coverage", values: [
    ["online", (x) => `${x.online}/${x.registered}`, "cameras.online"],
    ["coverage", (x) => Math.round(x.coverage * 100) + "%", "cameras.coverage"]],
    extra: (x) => x.by_venue_type.map((v) => `${v.venue_type} ${v.online}/${v.registered}`).join(" · ") },
  { key: "complaints", spark: "complaints.received_today", values: [
    ["received_today", (x) => x.received_today, "complaints.received_today"],
    ["open", (x) => x.open, "complaints.open"],
    ["near_deadline", (x) => x.near_deadline, "complaints.near_deadline"],
    ["overdue", (x) => x.overdue, "complaints.overdue"],
    ["group_risk", (x) => x.group_risk, "complaints.group_risk"]],
    extra: (x) => `${t("on_time_rate")} ${x.on_time_rate === null ? "—" : Math.round(x.on_time_rate * 100) + "%"} · ${t("duplicates_today")} ${x.duplicates_today}` },
  { key: "alerts", spark: "alerts.firing", values: [
    ["firing", (x) => x.firing, "alerts.firing"],
    ["unacknowledged", (x) => x.unacknowledged, "alerts.unacknowledged"]] },
];

function sparkline(values) {
  const NS = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("viewBox", "0 0 120 28");
  svg.setAttribute("class", "spark");
  svg.setAttribute("preserveAspectRatio", "none");
  if (values && values.length > 1) {
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const pts = values.map((v, i) =>
      `${((i / (values.length - 1)) * 120).toFixed(1)},${(26 - ((v - lo) / (hi - lo || 1)) * 24).toFixed(1)}`);
    const line = document.createElementNS(NS, "polyline");
    line.setAttribute("points", pts.join(" "));
    svg.append(line);
  }
  return svg;
}

let tilesQueued = null;
/** Alert changes move the alert tiles: read them again soon, at most once a second. */
function scheduleTiles() {
  if (tilesQueued) return;
  tilesQueued = setTimeout(() => {
    tilesQueued = null;
    loadTiles();
  }, 1000);
}

async function loadTiles() {
  if (unitOfCaller() !== null) return;
  try {
    state.tiles = await get("/api/v1/tiles");
  } catch (e) {
    return;
  }
  const { now, history } = state.tiles;
  $("#tiles").replaceChildren(...TILES.map((tile) => {
    const x = now[tile.key];
    return h("section", { class: "tile", "data-tile": tile.key },
      h("h3", {}, t(tile.key)),
      h("div", { class: "values" }, tile.values.map(([word, f, series]) =>
        h("div", { class: "v" + ((word === "trapped" || word === "overdue") && x[word] > 0 ? " hot" : "") },
          h("b", { "data-series": series }, String(f(x))), h("small", {}, t(word))))),
      tile.extra ? h("div", { class: "extra" }, tile.extra(x)) : null,
      sparkline(history.series[tile.spark]));
  }));
}

// ---- map --------------------------------------------------------------------------------

async function loadMap() {
  try {
    state.map = await get("/api/v1/map");
    state.areas = areaIndex(state.map);
    for (const [kind, list] of [["elevator", state.map.elevators], ["kitchen", state.map.kitchens],
      ["market", state.map.markets]])
      for (const d of list) names.set(kind + ":" + d.id, d.name);
  } catch (e) {
    state.map = null;
  }
  scheduleRender();
}

function renderMap() {
  if (!state.map || state.tab !== "map") return;
  const firing = [...state.alerts.values()].filter((a) => a.state === "firing");
  drawMap($("#map"), state.map, firing, state.filters, (pick) => {
    Object.assign(state.filters, pick);
    scheduleRender();
  });
}

// ---- rules and silences -------------------------------------------------------------------

async function renderRules() {
  const box = $("#rules");
  const rules = await getInto(box, "/api/v1/rules");
  if (!rules) return;
  state.rules = rules;
  const admin = mayAdmin();
  const source = h("textarea", { id: "rule-source", rows: "10", spellcheck: "false",
    placeholder: '[[rule]]\nid = "…"' });
  const result = h("div", { id: "rule-result" });
  box.replaceChildren(
    admin ? null : h("p", { class: "muted" }, t("rules_readonly")),
    h("table", { class: "grid" }, state.rules.map((r) => h("tr", { "data-rule-id": r.id },
      h("td", {}, badge(r.severity)),
      h("td", {}, h("b", {}, r.id), h("br"), h("small", {}, r.description), thresholdList(r)),
      h("td", {}, admin
        ? h("button", { class: "toggle" + (r.enabled ? " on" : ""), onclick: () => toggleRule(r) },
          r.enabled ? t("enabled") : t("disabled"))
        : (r.enabled ? t("enabled") : t("disabled"))),
      h("td", {}, admin
        ? h("button", { class: "edit", onclick: () => editRule(r.id, source, result) }, t("edit"))
        : null)))),
    // Explaining and checking rules need a token of any role: the page offers them only with one.
    ...(token() ? [...whyNot(state.rules), ...tryRule(state.rules),
      h("h3", {}, admin ? t("edit_rule") : t("validate")),
      source,
      h("button", { id: "rule-validate", onclick: () => validateRule(source, result) }, t("validate")),
      admin ? h("button", { id: "rule-apply", onclick: () => applyRule(source, result) }, t("apply")) : null,
      result] : []));
}

// What a rule in force makes of one message (`{"topic", "payload"}`), part by part: the
// server evaluates it as the dataflow does (POST /api/v1/rules/{id}/explain).
function tryRule(rules) {
  const pick = h("select", { id: "explain-rule" }, rules.map((r) => h("option", { value: r.id }, r.id)));
  const message = h("textarea", { id: "explain-event", rows: "4", spellcheck: "false",
    placeholder: '{"topic": "cw/v1/elevator/E0001/status", "payload": {"ts": …}}' });
  const out = h("div", { id: "explain-result" });
  const run = async () => {
    try {
      const event = JSON.parse(message.value);
      const x = await send("POST", `/api/v1/rules/${encodeURIComponent(pick.value)}/explain`, { event });
      out.replaceChildren(...explainedList(x));
    } catch (e) {
      out.replaceChildren(h("p", { class: "bad" }, e.message));
    }
  };
  return [h("h3", {}, t("try_rule")), pick, message,
    h("button", { id: "explain-run", onclick: run }, t("explain")), out];
}

// The parts of a rule an operator reads to know when it fires, as written in its file.
function thresholdList(r) {
  return h("dl", { class: "thresholds" }, (r.thresholds || []).flatMap((x) => [
    h("dt", {}, x.key), h("dd", { "data-threshold": x.key }, h("code", {}, x.value))]));
}

async function editRule(id, source, result) {
  try {
    const rule = await get(`/api/v1/rules/${encodeURIComponent(id)}`);
    source.value = rule.toml;
    source.dataset.ruleId = id;
    // Applied against this version: a change someone made meanwhile is not overwritten.
    source.dataset.ruleVersion = rule.version;
    result.replaceChildren(h("p", { class: "muted" },
      `${id} · ${t("version")} ${rule.version}` + (rule.changed_by ? ` · ${rule.changed_by}` : "")));
    source.focus();
  } catch (e) {
    result.replaceChildren(h("p", { class: "bad" }, e.message));
  }
}

// The server's validation of a rule file: the rules it defines, or each error with its line.
async function validateRule(source, result) {
  try {
    const r = await fetch("/api/v1/rules/validate", { method: "POST", body: source.value,
      headers: token() ? { Authorization: "Bearer " + token() } : {} });
    const v = await r.json();
    showValidation(v, result);
    return v;
  } catch (e) {
    result.replaceChildren(h("p", { class: "bad" }, e.message));
    return { valid: false };
  }
}

function showValidation(v, result) {
  result.replaceChildren(v.valid
    ? h("p", { class: "good" }, `${t("valid")}: ${v.rules.join(", ")}`)
    : h("ul", { class: "bad" }, ((v.errors) || [{ line: 0, column: 0, message: (v.error || {}).message }])
      .map((e) => h("li", {}, `${e.line}:${e.column} ${e.message}`))));
}

// Validated first; applied only if the text defines exactly one rule (the one it replaces).
async function applyRule(source, result) {
  const v = await validateRule(source, result);
  if (!v.valid) return;
  if (v.rules.length !== 1) {
    result.replaceChildren(h("p", { class: "bad" }, t("one_rule")));
    return;
  }
  const id = v.rules[0];
  const against = source.dataset.ruleId === id && source.dataset.ruleVersion
    ? `?version=${encodeURIComponent(source.dataset.ruleVersion)}` : "";
  try {
    const r = await fetch(`/api/v1/rules/${encodeURIComponent(id)}${against}`, { method: "PUT", body: source.value,
      headers: { Authorization: "Bearer " + token() } });
    const answer = await r.json();
    if (!r.ok) {
      showValidation(answer.errors ? answer : { valid: false, error: answer.error }, result);
      return;
    }
    const rule = await get(`/api/v1/rules/${encodeURIComponent(id)}`);
    await renderRules();
    const fresh = $("#rule-source");
    fresh.value = source.value;
    fresh.dataset.ruleId = id;
    fresh.dataset.ruleVersion = rule.version;
    $("#rule-result").replaceChildren(h("p", { class: "good", id: "rule-applied" },
      `${t("applied")}: ${id} · ${t("version")} ${rule.version}`));
  } catch (e) {
    result.replaceChildren(h("p", { class: "bad" }, e.message));
  }
}

async function toggleRule(r) {
  try {
    await send("PUT", `/api/v1/rules/${encodeURIComponent(r.id)}/enabled`, { enabled: !r.enabled });
  } catch (e) {
    toast(e.message, true);
  }
  renderRules();
}

// Reads `path`; on failure shows why in `box` and gives null.
async function getInto(box, path) {
  try {
    return await get(path);
  } catch (e) {
    box.replaceChildren(h("p", { class: "bad" }, e.message));
    return null;
  }
}

async function renderSilences() {
  const box = $("#silences");
  const rows = await getInto(box, "/api/v1/silences");
  if (!rows) return;
  box.replaceChildren(rows.length
    ? h("table", { class: "grid" },
      h("tr", {}, h("th", {}, t("matchers")), h("th", {}, t("ends")), h("th", {}, t("author")), h("th", {}, "")),
      rows.map((s) => h("tr", {},
        h("td", {}, (s.matchers || []).join(", ")),
        h("td", {}, clock(s.ends_ms)),
        h("td", {}, `${s.author}: ${s.reason || ""}`),
        h("td", {}, mayOperate() ? h("button", { onclick: async () => {
          try { await send("DELETE", `/api/v1/silences/${encodeURIComponent(s.id)}`); } catch (e) { toast(e.message, true); }
          renderSilences();
        } }, t("expire")) : null))))
    : h("p", { class: "muted" }, t("none")));
}

// ---- complaints due soon -----------------------------------------------------------------

// Open complaints shown whose time limit runs out within this many working days (or has run
// out): 2 unless the operator picks a wider horizon.
const DUE_SOON_CHOICES = [2, 5, 10];

// The complaints due soon, by the office that handles them, soonest first: what each office
// must decide before its legal time limit (7 working days to accept, 45 to mediate, 15 for a
// report).
async function renderComplaints() {
  const box = $("#complaints");
  const page = await getInto(box, "/api/v1/complaints?state=open&limit=1000");
  if (!page) return;
  const within = state.dueWithin || DUE_SOON_CHOICES[0];
  const soon = page.items.filter((c) => c.due_ms !== null && c.working_days_left <= within);
  const offices = new Map();
  for (const c of soon) {
    const office = c.office || "";
    if (!offices.has(office)) offices.set(office, []);
    offices.get(office).push(c);
  }
  const pick = h("select", { id: "due-within", onchange: () => {
    state.dueWithin = Number(pick.value);
    renderComplaints();
  } }, DUE_SOON_CHOICES.map((n) => h("option", { value: String(n) }, t("days_left").replace("{n}", `≤ ${n}`))));
  pick.value = String(within);
  box.replaceChildren(
    h("p", { class: "muted" }, t("due_soon_help"), " ", pick),
    ...(soon.length ? [...offices].map(([office, items]) => h("section", { class: "office", "data-office": office },
      h("h3", {}, `${office || t("no_office")} · ${items.length}`),
      h("ul", { class: "due" }, items.map((c) => h("li", {
        "data-complaint-id": c.complaint_id, class: c.overdue ? "bad" : "" },
        h("b", {}, c.complaint_id), ` ${t("kind_" + c.kind)} · ${c.merchant_name} · ${t("state_" + c.state)}`,
        h("br"),
        h("small", {}, `${t("due")} ${lastDay(c.due_ms)} · `,
          h("span", { "data-field": "days-left" }, c.overdue
            ? t("overdue_by").replace("{n}", -c.working_days_left)
            : t("days_left").replace("{n}", c.working_days_left)))))))) : [h("p", { class: "muted" }, t("none"))]));
}

// The last day of a time limit that runs out at `ms` (the start of the next local day in
// China, wherever the browser is).
function lastDay(ms) {
  return new Date(ms - 1).toLocaleDateString(undefined, { timeZone: "Asia/Shanghai" });
}

function showTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll("[data-tab]")) b.classList.toggle("on", b.dataset.tab === tab);
  for (const p of document.querySelectorAll(".pane")) p.hidden = p.id !== "pane-" + tab;
  if (tab === "map") renderMap();
  if (tab === "rules") renderRules();
  if (tab === "silences") renderSilences();
  if (tab === "complaints") renderComplaints();
  if (tab === "incidents") showIncidents();
}

function showIncidents() {
  renderIncidents($("#incidents"), mayOperate, toast);
}

// ---- sound ------------------------------------------------------------------------------

function beep() {
  if (!state.sound || !state.audio) return;
  const ctx = state.audio;
  const o = ctx.createOscillator();
  const g = ctx.createGain();
  o.type = "square";
  o.frequency.value = 880;
  g.gain.setValueAtTime(0.15, ctx.currentTime);
  g.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + 0.6);
  o.connect(g).connect(ctx.destination);
  o.start();
  o.stop(ctx.currentTime + 0.6);
  document.body.classList.add("flash");
  setTimeout(() => document.body.classList.remove("flash"), 1200);
}

function renderSound() {
  const b = $("#sound");
  b.textContent = state.sound ? t("sound_on") : t("sound_off");
  b.setAttribute("aria-pressed", String(state.sound));
}

// ---- start ------------------------------------------------------------------------------

function wire() {
  // Browsers allow sound only after a gesture: the first click anywhere unlocks it.
  document.addEventListener("pointerdown", () => {
    if (!state.audio && window.AudioContext) state.audio = new AudioContext();
  }, { once: true });
  $("#sound").addEventListener("click", () => {
    state.sound = !state.sound;
    localStorage.setItem(SOUND_KEY, state.sound ? "on" : "off");
    renderSound();
  });
  $("#lang").addEventListener("click", () => {
    toggleLang();
    translatePage();
    renderSound();
    whoAmI();
    loadTiles();
    renderList();
    if (state.open) openDetail(state.open);
    if (state.tab !== "map") showTab(state.tab);
  });
  $("#login").addEventListener("click", async () => {
    if (token()) setToken("");
    else {
      const v = prompt(t("token_prompt"));
      if (!v) return;
      setToken(v);
    }
    location.reload();
  });
  for (const [id, key] of [["#f-domain", "domain"], ["#f-severity", "severity"], ["#f-district", "district"],
    ["#f-unit", "unit"], ["#f-state", "state"]]) {
    $(id).addEventListener("change", (e) => {
      state.filters[key] = e.target.value;
      scheduleRender();
    });
  }
  $("#clear").addEventListener("click", () => {
    Object.assign(state.filters, { domain: "", severity: "", district: "", unit: "", state: "firing", area: null, device: null });
    for (const id of ["#f-domain", "#f-severity", "#f-district", "#f-unit"]) $(id).value = "";
    $("#f-state").value = "firing";
    scheduleRender();
  });
  for (const b of document.querySelectorAll("[data-tab]")) b.addEventListener("click", () => showTab(b.dataset.tab));
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDetail(); });
}

async function start() {
  takeTokenFromHash();
  translatePage();
  renderSound();
  wire();
  await whoAmI();
  // Follow first, then read the current list: a transition between the two is not lost, and
  // versions keep the newer of both.
  follow("/api/v1/alerts/stream", (name, data) => {
    if (name === "alert") onTransition(data);
    else if (name === "incident") { if (state.tab === "incidents") showIncidents(); }
    else if (name === "error") loadAlerts().catch(() => {});
  }, (connected, err) => {
    state.connected = connected;
    const s = $("#conn");
    s.className = connected ? "conn on" : "conn off";
    s.textContent = connected ? t("connected") : err ? err.message : t("disconnected");
    if (connected) loadAlerts().catch((e) => toast(e.message, true));
  });
  await Promise.all([loadMap(), loadTiles()]);
  showTab("map");
  setInterval(tickAges, 1000);
  setInterval(loadTiles, 5000);
  setInterval(() => { if (state.tab === "complaints") renderComplaints(); }, 30000);
  document.body.classList.add("ready");
}

start();
