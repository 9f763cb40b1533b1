// Operator pages (admin tokens): tokens, communities, collections, peers, and the decision log.
import { api } from "./app.js";
import { field, h, state } from "./dom.js";

function table(id, headers, rows) {
  return h("table", { class: "list", id }, h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows));
}

function section(title, ...body) {
  return h("section", { class: "card" }, h("h3", {}, title), ...body);
}

function say(target, promise, done) {
  target.replaceChildren();
  promise.then((doc) => { if (done) done(doc); }).catch((e) => target.replaceChildren(h("span", { class: "error", role: "alert" }, e.message)));
}

export async function operatorView(main) {
  if (!state.me.admin) {
    main.replaceChildren(h("p", { class: "error" }, "The operator pages are for admin tokens."));
    return null;
  }
  const tokens = h("div"), communities = h("div"), collections = h("div"), peers = h("div"), log = h("div");
  main.replaceChildren(h("h2", {}, "Operator"), tokens, communities, collections, peers, log);
  await Promise.all([tokenPane(tokens), communityPane(communities), collectionPane(collections), peerPane(peers), logPane(log)]);
  return null;
}

async function tokenPane(pane) {
  const { tokens } = await api("admin/tokens");
  const out = h("div", { id: "token-out", role: "status" });
  const form = h("form", { class: "toolbar", id: "issue-form", onsubmit: (e) => {
    e.preventDefault();
    const f = e.target;
    say(out, api("admin/tokens", { nation: f.nation.value, clearance: f.clearance.value, name: f.tname.value,
      organisation: f.organisation.value, admin: f.admin.checked, can_write: f.can_write.checked }), (doc) => {
      tokenPane(pane).then(() => pane.querySelector("#token-out").replaceChildren(
        h("p", {}, "New token (shown once; hand it over privately):"), h("div", { class: "secret-once", id: "new-token" }, doc.token)));
    });
  } },
    field("Nation", h("input", { name: "nation", size: 5, maxlength: 3, required: true, id: "t-nation" })),
    field("Clearance", h("select", { name: "clearance", id: "t-clearance" }, state.me.levels.map((l) => h("option", { value: l }, l)))),
    field("Name", h("input", { name: "tname", id: "t-name" })),
    field("Organisation", h("input", { name: "organisation" })),
    h("label", {}, h("span", {}, h("input", { type: "checkbox", name: "can_write", checked: true }), " may publish")),
    h("label", {}, h("span", {}, h("input", { type: "checkbox", name: "admin" }), " admin")),
    h("button", { type: "submit", id: "t-issue" }, "Issue token"));
  const rows = tokens.map((t) => h("tr", { "data-key": t.key_id },
    h("td", {}, h("code", {}, t.key_id)), h("td", {}, t.nation), h("td", {}, t.clearance), h("td", {}, t.name),
    h("td", {}, t.kind || (t.admin ? "admin" : t.can_write ? "writer" : "reader")),
    h("td", {}, t.revoked ? `revoked ${t.revoked}` : "active"),
    h("td", {}, t.revoked ? "" : h("button", { type: "button", class: "secondary", "aria-label": `Revoke ${t.key_id}`,
      onclick: () => say(out, api("admin/tokens/revoke", { key_id: t.key_id }), () => tokenPane(pane)) }, "Revoke"))));
  pane.replaceChildren(section("Tokens", form, out, table("tokens", ["key id", "nation", "clearance", "name", "kind", "state", ""], rows)));
}

async function communityPane(pane) {
  const { communities } = await api("admin/communities");
  const out = h("div", { role: "status" });
  const act = (path) => (e) => {
    const f = e.target.form;
    say(out, api(path, { name: f.cname.value, nation: f.cnation.value, day: f.day.value }), () => communityPane(pane));
  };
  const form = h("form", { class: "toolbar", onsubmit: (e) => e.preventDefault() },
    field("Community", h("input", { name: "cname", required: true })),
    field("Nation", h("input", { name: "cnation", size: 5, maxlength: 3, required: true })),
    field("From / until (YYYY-MM-DD, default today)", h("input", { name: "day", type: "date" })),
    h("button", { type: "button", onclick: act("admin/communities/join") }, "Join"),
    h("button", { type: "button", class: "secondary", onclick: act("admin/communities/leave") }, "Leave"));
  const rows = communities.map((c) => h("tr", {}, h("td", {}, c.name),
    h("td", {}, c.members.filter((m) => !m.until).map((m) => m.nation).join(", "))));
  pane.replaceChildren(section("Communities", form, out, table("communities", ["name", "members now"], rows)));
}

async function collectionPane(pane) {
  const out = h("div", { role: "status" });
  const form = h("form", { class: "toolbar", onsubmit: (e) => {
    e.preventDefault();
    say(out, api("admin/collections", { title: e.target.elements.namedItem("ctitle").value, description: e.target.elements.namedItem("cdescription").value }),
      () => window.location.reload());
  } },
    field("Title", h("input", { name: "ctitle", required: true })), field("Description", h("input", { name: "cdescription" })),
    h("button", { type: "submit" }, "Add collection"));
  const rows = state.collections.map((c) => h("tr", {}, h("td", {}, c.title), h("td", {}, h("code", {}, c.id))));
  pane.replaceChildren(section("Collections", form, out, table("collections", ["title", "id"], rows)));
}

async function peerPane(pane) {
  const { peers } = await api("admin/peers");
  const out = h("div", { role: "status" });
  const form = h("form", { class: "toolbar", onsubmit: (e) => {
    e.preventDefault();
    const f = e.target;
    say(out, api("admin/peers", { name: f.pname.value, url: f.url.value, token: f.ptoken.value,
      fingerprint: f.fingerprint.value, speaks_for: f.speaks_for.value }), (doc) => {
      peerPane(pane).then(() => { if (doc.warning) pane.querySelector("[role=status]").append(h("p", { class: "muted" }, doc.warning)); });
    });
  } },
    field("Name", h("input", { name: "pname", required: true })), field("URL", h("input", { name: "url", required: true })),
    field("Its token for us", h("input", { name: "ptoken", type: "password", required: true, autocomplete: "off" })),
    field("Fingerprint", h("input", { name: "fingerprint" })), field("Speaks for", h("input", { name: "speaks_for" })),
    h("button", { type: "submit" }, "Add peer"));
  const rows = peers.map((p) => h("tr", {}, h("td", {}, p.name), h("td", {}, p.url), h("td", {}, p.state),
    h("td", {}, String(p.lag_seconds)), h("td", {}, String(p.received)), h("td", {}, p.last_error),
    h("td", {}, h("button", { type: "button", class: "secondary",
      onclick: () => say(out, api("admin/peers/remove", { name: p.name }), () => peerPane(pane)) }, "Remove"))));
  pane.replaceChildren(section("Peers", form, out, table("peers", ["name", "url", "state", "lag s", "received", "last error", ""], rows)));
}

async function logPane(pane) {
  const body = h("tbody");
  const out = h("div", { role: "status", id: "verify-out" });
  async function load(f) {
    const params = new URLSearchParams({ limit: "100" });
    for (const key of ["nation", "path", "object", "since", "until"]) if (f && f[key].value) params.set(key, f[key].value);
    const { records } = await api("admin/decisions?" + params);
    body.replaceChildren(...records.map((r) => h("tr", {}, h("td", {}, String(r.seq)), h("td", {}, r.at), h("td", {}, r.nation),
      h("td", {}, r.path), h("td", {}, String((r.items || []).length)),
      h("td", {}, (r.items || []).slice(0, 2).map((i) => (Array.isArray(i) ? i[0] : i.id || JSON.stringify(i))).join(", ")))));
  }
  const form = h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); load(e.target).catch((x) => say(out, Promise.reject(x))); } },
    field("Nation", h("input", { name: "nation", size: 5 })), field("Path", h("input", { name: "path", size: 12 })),
    field("Object id", h("input", { name: "object" })), field("Since", h("input", { name: "since", type: "date" })),
    field("Until", h("input", { name: "until", type: "date" })), h("button", { type: "submit" }, "Show"),
    h("button", { type: "button", class: "secondary", id: "verify", onclick: () => say(out, api("admin/decisions/verify"), (d) =>
      out.replaceChildren(h("p", { class: d.ok ? "ok" : "error" }, d.line))) }, "Verify the chain"));
  pane.replaceChildren(section("Decision log (newest first)", form, out,
    h("table", { class: "list", id: "decisions" }, h("thead", {}, h("tr", {}, ["seq", "time", "nation", "path", "items", "ids"].map((x) => h("th", { scope: "col" }, x)))), body)));
  await load(null);
}
