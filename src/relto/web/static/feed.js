// The live feed: newest first, filters, and new items without reload (EventSource on /ui/api/stream).
import { api } from "./app.js";
import { bannerEl, field, h, iconEl, itemLink, needCollection, state } from "./dom.js";

const TYPES = ["", "report", "indicator", "sighting", "note", "location", "threat-actor", "relationship"];

export async function feedView(main) {
  if (needCollection(main)) return null;
  const collection = state.collection;
  const type = h("select", { id: "f-type" }, TYPES.map((t) => h("option", { value: t }, t || "any type")));
  const originator = h("input", { id: "f-originator", size: 5, maxlength: 3, placeholder: "GBR" });
  const text = h("input", { id: "f-text", type: "search", placeholder: "words" });
  const live = h("span", { class: "live", id: "live", role: "status" }, "connecting…");
  const list = h("ul", { class: "feed", id: "feed", "aria-live": "polite" });
  const form = h("form", { class: "toolbar", onsubmit: (e) => { e.preventDefault(); load(); } },
    field("Type", type), field("Originating nation", originator), field("Text", text),
    h("button", { type: "submit" }, "Filter"), live);
  main.replaceChildren(h("h2", {}, "Live feed"), form, list);

  const row = (item) => h("li", { "data-id": item.id, "data-type": item.type },
    iconEl(item.type),
    h("div", {}, bannerEl(item.banner), " ", h("span", { class: "title" }, itemLink(item, collection)),
      h("div", { class: "meta" }, `${item.type} · from ${item.originator} · ${item.modified || ""}`),
      item.summary ? h("div", { class: "summary" }, item.summary) : null));

  function query(ids) {
    const params = new URLSearchParams({ collection, limit: "100" });
    if (type.value) params.set("type", type.value);
    if (originator.value.trim()) params.set("originator", originator.value.trim());
    if (text.value.trim()) params.set("q", text.value.trim());
    if (ids) params.set("id", ids.join(","));
    return "feed?" + params;
  }

  async function load() {
    const { items } = await api(query());
    list.replaceChildren(...items.map(row));
    if (!items.length) list.replaceChildren(h("li", { class: "muted empty" }, "Nothing released to you here yet."));
  }

  // A stream event names what was released to us: fetch just those summaries (same filters) and put them on top.
  const pending = new Set();
  async function addNew() {
    const ids = [...pending];
    pending.clear();
    const { items } = await api(query(ids));
    for (const id of ids) list.querySelector(`li[data-id="${CSS.escape(id)}"]`)?.remove();
    list.querySelector("li.empty")?.remove();
    list.prepend(...items.map(row));
  }

  await load();
  let timer = null;
  const source = new EventSource("/ui/api/stream?collection=" + encodeURIComponent(collection));
  const fresh = (event) => {
    const id = JSON.parse(event.data).id;
    if (event.type === "deleted") { list.querySelector(`li[data-id="${CSS.escape(id)}"]`)?.remove(); return; }
    pending.add(id);
    clearTimeout(timer);
    timer = setTimeout(() => addNew().catch(() => load().catch(() => {})), 100);
  };
  source.addEventListener("open", () => { live.textContent = "live"; live.classList.add("on"); });
  source.addEventListener("object", fresh);
  source.addEventListener("deleted", fresh);
  source.addEventListener("closed", () => { live.textContent = "stream closed: sign in again"; source.close(); });
  source.addEventListener("error", () => { live.textContent = "reconnecting…"; live.classList.remove("on"); });
  return () => { source.close(); clearTimeout(timer); };
}
