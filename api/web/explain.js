// Explanations: a rule's expressions part by part (the traced tree the server computes), and
// why an alert fired (GET /api/v1/alerts/{id}/explain): the events its rule had matched when
// it started, a window's items, the rule over the deciding event.

import { get } from "./api.js";
import { t, clock } from "./i18n.js";
import { h } from "./dom.js";

// One sub-expression and, below it, its parts.
export function tracedItem(x) {
  const o = x.outcome;
  const shown = o.is === "value" ? h("b", {}, " = " + o.value)
    : h("span", { class: o.is === "failed" ? "bad" : "muted" }, " · " + t(o.is === "failed" ? "fails" : "not_evaluated"));
  return h("li", { "data-outcome": o.is }, h("code", {}, x.text), shown,
    x.parts && x.parts.length ? h("ul", {}, x.parts.map(tracedItem)) : null);
}

// Each expression of an explanation, part by part, and the reference rows it read.
export function explainedList(x) {
  return [...x.expressions.map((e) => h("div", { class: "explained", "data-role": e.role },
    h("h4", {}, e.role),
    e.traced ? h("ul", { class: "trace" }, tracedItem(e.traced))
      : h("p", { class: "muted" }, `${e.source} (${e.interpreted})`))),
  h("div", { class: "explained", "data-role": "reference" }, h("h4", {}, "ref"),
    h("pre", {}, JSON.stringify(x.reference, null, 1)))];
}

// The latest episode's cause, in `box` (left empty for an alert that keeps none).
export async function whyItFired(id, box) {
  let x;
  try {
    x = await get(`/api/v1/alerts/${encodeURIComponent(id)}/explain?limit=1`);
  } catch (e) {
    box.replaceChildren(h("p", { class: "bad" }, e.message));
    return;
  }
  const e = x.episodes[0];
  if (!e) return;
  const events = e.events.map((ev) => h("tr", {},
    h("td", {}, clock(ev.time_ms)), h("td", {}, ev.topic),
    h("td", {}, h("code", {}, JSON.stringify(ev.payload)))));
  const items = e.items.map(([at, v]) => h("tr", {}, h("td", {}, clock(at)), h("td", {}, v === null ? "·" : String(v))));
  box.replaceChildren(...[
    h("h3", {}, t("why_fired")),
    h("p", { class: "muted", "data-field": "period" },
      e.raw_since_ms !== null && e.for_ms ? `${t("held_since")} ${clock(e.raw_since_ms)} (for ${e.for_ms / 1000} s)` : null,
      e.last_seen_ms !== null ? `${t("last_heard")} ${clock(e.last_seen_ms)}` : null,
      e.earlier ? ` · ${e.earlier} ${t("earlier_not_kept")}` : null),
    events.length ? h("table", { class: "grid", id: "why-events" }, events) : null,
    items.length ? h("table", { class: "grid", id: "why-items" }, items) : null,
    e.condition ? h("ul", { class: "trace" }, tracedItem(e.condition)) : null,
    e.deciding ? h("div", { id: "why-deciding" }, explainedList(e.deciding)) : null,
    e.ended ? h("p", { class: "muted", "data-field": "ended" },
      `${t("ended")} ${clock(e.ended.at_ms)} · ${t("ended_by_" + e.ended.by)}: ${e.ended.why}`) : null,
  ].filter(Boolean));
}

// Why a rule did not fire for a group (GET /api/v1/rules/{id}/explain?group=&at=): the group's
// events read back from the input log, each judged, the last part by part, and a verdict.
export function whyNot(rules) {
  const pick = h("select", { id: "why-not-rule" }, rules.map((r) => h("option", { value: r.id }, r.id)));
  const group = h("input", { id: "why-not-group", placeholder: "E0042" });
  const at = h("input", { id: "why-not-at", type: "datetime-local", step: "1" });
  const out = h("div", { id: "why-not-result" });
  const run = async () => {
    const q = new URLSearchParams({ group: group.value });
    if (at.value) q.set("at", String(new Date(at.value).getTime()));
    try {
      const x = await get(`/api/v1/rules/${encodeURIComponent(pick.value)}/explain?${q}`);
      out.replaceChildren(...[
        h("p", { id: "why-not-verdict" }, x.verdict),
        x.events.length ? h("table", { class: "grid" }, x.events.map((e) => h("tr", { "data-holds": String(e.holds) },
          h("td", {}, clock(e.time_ms)), h("td", {}, e.topic), h("td", {}, e.holds ? "✓" : "✗")))) : null,
        x.last ? explainedList(x.last) : null,
      ].flat().filter(Boolean));
    } catch (e) {
      out.replaceChildren(h("p", { class: "bad" }, e.message));
    }
  };
  return [h("h3", {}, t("why_not")), pick, group, at,
    h("button", { id: "why-not-run", onclick: run }, t("explain")), out];
}
