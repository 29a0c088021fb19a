// The incidents view: one fault seen in two sources (an alert and complaints beside it), as
// the incident rules joined them. Open ones first; each shows its members and, for an
// operator, assign and close with a finding.

import { get, send } from "./api.js";
import { t, clock } from "./i18n.js";
import { h } from "./dom.js";

// Renders the incidents into `box`; `mayOperate` says whether the actions are offered and
// `toast(text, bad)` tells the operator how an action went.
export async function renderIncidents(box, mayOperate, toast) {
  let rows;
  try {
    rows = await get("/api/v1/incidents?limit=200");
  } catch (e) {
    box.replaceChildren(h("p", { class: "bad" }, e.message));
    return;
  }
  const order = { open: 0, assigned: 1, closed: 2 };
  rows.sort((a, b) => order[a.state] - order[b.state] || b.last_ms - a.last_ms);
  box.replaceChildren(
    h("p", { class: "muted" }, t("incidents_help")),
    rows.length
      ? h("ul", { class: "incidents" }, rows.map((i) => incidentItem(i, box, mayOperate, toast)))
      : h("p", { class: "muted" }, t("none")));
}

function incidentItem(i, box, mayOperate, toast) {
  const more = h("div", { class: "incident-members" });
  const item = h("li", { "data-incident-id": i.id, "data-state": i.state, class: i.state === "closed" ? "" : "inc-" + i.severity },
    h("b", {}, `${t("incident_" + i.rule.replace("incident.", "")) || i.rule}`),
    ` · ${i.subject} · ${t("state_" + i.state)} · ${i.office || t("no_office")}`,
    h("br"),
    h("small", {}, `${clock(i.opened_ms)} – ${clock(i.last_ms)}`, i.finding ? ` · ${t("finding")}: ${i.finding}` : ""),
    more);
  item.addEventListener("click", (ev) => {
    if (ev.target.closest("button, input")) return;
    showMembers(i, more, box, mayOperate, toast);
  });
  return item;
}

async function showMembers(i, more, box, mayOperate, toast) {
  const d = await get(`/api/v1/incidents/${encodeURIComponent(i.id)}`);
  const finding = h("input", { type: "text", id: "incident-finding", placeholder: t("finding") });
  const close = async () => {
    if (!finding.value.trim()) return;
    try {
      await send("POST", `/api/v1/incidents/${encodeURIComponent(i.id)}/close`, { finding: finding.value });
      toast(t("done"));
      renderIncidents(box, mayOperate, toast);
    } catch (e) {
      toast(e.message, true);
    }
  };
  more.replaceChildren(
    h("table", { class: "grid" },
      h("tr", {}, h("th", {}, t("kind")), h("th", {}, t("member")), h("th", {}, t("since")), h("th", {}, "")),
      d.members.map((m) => h("tr", { "data-member": m.member },
        h("td", {}, t("member_" + m.kind)),
        h("td", {}, m.kind === "alert" ? `${m.detail.rule} · ${m.detail.group}` : m.member),
        h("td", {}, clock(m.since_ms)),
        h("td", {}, m.detail.distance_m !== undefined && m.detail.distance_m !== null ? `${m.detail.distance_m} m` : "")))),
    mayOperate() && i.state !== "closed"
      ? h("div", { class: "actions" }, finding, h("button", { id: "incident-close", onclick: close }, t("close_incident")))
      : null);
}
