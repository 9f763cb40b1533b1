// One item: the banner top and bottom, its fields, related objects, versions and originator.
import { api } from "./app.js";
import { bannerEl, h, iconEl, itemLink } from "./dom.js";

const SKIP = new Set(["object_marking_refs", "granular_markings"]);

export async function itemView(main, [collection, id]) {
  const doc = await api("object?" + new URLSearchParams({ collection, id }));
  const obj = doc.object;
  const rows = Object.entries(obj).filter(([k]) => !SKIP.has(k)).map(([k, v]) =>
    h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, typeof v === "string" ? v : JSON.stringify(v, null, 1))));
  const related = doc.related.length
    ? h("ul", { id: "related" }, doc.related.map((r) => h("li", {}, iconEl(r.type), " ", bannerEl(r.banner), " ",
        itemLink(r, collection), h("span", { class: "muted small" }, ` (${r.via}, from ${r.originator})`))))
    : h("p", { class: "muted" }, "No related object released to you.");
  const versions = h("ol", { id: "versions" }, doc.versions.map((v) => h("li", {}, v.modified || "", " ", bannerEl(v.banner))));
  main.replaceChildren(
    h("div", { id: "banner-top" }, bannerEl(doc.banner, true)),
    h("h2", {}, iconEl(obj.type), " ", obj.name || obj.pattern || obj.type),
    h("p", { class: "muted" }, `${obj.type} · originator `, h("strong", { id: "originator" }, doc.originator), ` · ${obj.id}`),
    h("div", { class: "card" }, h("table", { class: "fields", id: "fields" }, rows)),
    h("div", { class: "columns" },
      h("section", { class: "card" }, h("h3", {}, "Related"), related),
      h("section", { class: "card" }, h("h3", {}, "Versions released to you"), versions)),
    h("div", { id: "banner-bottom" }, bannerEl(doc.banner, true)),
  );
  return null;
}
