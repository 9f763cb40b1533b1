// The shell: session-aware fetch helpers, the current collection, and a hash router over the views.
import { feedView } from "./feed.js";
import { mapView } from "./map.js";
import { itemView } from "./item.js";
import { publishView } from "./publish.js";
import { operatorView } from "./operator.js";
import { h, state } from "./dom.js";

const csrf = document.querySelector('meta[name="csrf-token"]').content;

export async function api(path, body) {
  const options = { credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.headers["X-CSRF-Token"] = csrf;
    options.body = JSON.stringify(body);
  }
  const answer = await fetch("/ui/api/" + path, options);
  if (answer.status === 401) {
    window.location.assign("/");
    throw new Error("signed out");
  }
  const doc = await answer.json().catch(() => ({}));
  if (!answer.ok) throw new Error(doc.description || doc.title || "HTTP " + answer.status);
  return doc;
}

const views = { feed: feedView, map: mapView, item: itemView, publish: publishView, operator: operatorView };
let cleanup = null;

async function route() {
  const [name, ...args] = (window.location.hash.replace(/^#\/?/, "") || "feed").split("/");
  const view = views[name] || feedView;
  if (cleanup) cleanup();
  cleanup = null;
  const main = document.getElementById("view");
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  for (const link of document.querySelectorAll(".top nav a")) {
    link.toggleAttribute("aria-current", link.getAttribute("href") === "#/" + name);
    if (link.getAttribute("href") === "#/" + name) link.setAttribute("aria-current", "page");
  }
  try {
    cleanup = (await view(main, args.map(decodeURIComponent))) || null;
  } catch (error) {
    main.replaceChildren(h("p", { class: "error", role: "alert" }, String(error.message || error)));
  }
}

async function start() {
  state.me = await api("me");
  document.getElementById("who").textContent =
    `${state.me.nation} · ${state.me.clearance}${state.me.admin ? " · admin" : ""}`;
  document.getElementById("nav-operator").hidden = !state.me.admin;
  document.getElementById("nav-publish").hidden = !state.me.can_write;
  const { collections } = await api("collections");
  state.collections = collections;
  const select = document.getElementById("collection");
  const saved = localStorage.getItem("relto.collection");
  for (const c of collections) select.append(h("option", { value: c.id }, c.title));
  if (collections.some((c) => c.id === saved)) select.value = saved;
  state.collection = select.value;
  select.addEventListener("change", () => {
    state.collection = select.value;
    localStorage.setItem("relto.collection", select.value);
    route();
  });
  document.getElementById("logout").addEventListener("click", async () => {
    if (cleanup) cleanup(); // close the live stream first: it would only be refused once signed out
    cleanup = null;
    await fetch("/ui/logout", { method: "POST", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin" });
    window.location.assign("/");
  });
  window.addEventListener("hashchange", route);
  await route();
}

start();
