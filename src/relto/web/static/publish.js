// The publish form: the item, a point picked on the map, its markings (and a tearline), "view as", send.
import { api } from "./app.js";
import { baseMap } from "./map.js";
import { field, h, needCollection, state } from "./dom.js";

const NATIONS = ["USA", "GBR", "FRA", "DEU", "ITA", "ESP", "POL", "NLD", "NOR", "CAN", "AUS", "NZL", "KOR", "JPN", "UKR"];
const TLPS = ["", "clear", "green", "amber", "amber+strict", "red"];

function chips(name, values, checked) {
  return h("div", { class: "chips", role: "group", "aria-label": name },
    values.map((v) => h("label", {}, h("input", { type: "checkbox", name, value: v, checked: checked.includes(v) }), v)));
}

function picked(form, name) {
  return [...form.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);
}

export async function publishView(main) {
  if (needCollection(main)) return null;
  const me = state.me;
  const nations = [...new Set([me.nation, ...NATIONS])];
  const levels = me.levels.map((l) => h("option", { value: l }, l));
  const type = h("select", { name: "type", id: "p-type" },
    ["report", "indicator", "sighting", "note", "location", "threat-actor"].map((t) => h("option", { value: t }, t)));
  const lat = h("input", { name: "latitude", id: "p-lat", inputmode: "decimal", size: 9 });
  const lon = h("input", { name: "longitude", id: "p-lon", inputmode: "decimal", size: 9 });
  const tearOn = h("input", { type: "checkbox", id: "p-tear" });
  const form = h("form", { class: "grid", id: "publish-form", onsubmit: (e) => { e.preventDefault(); send(); } },
    field("Type", type),
    field("Name", h("input", { name: "name", id: "p-name" })),
    h("label", { class: "wide" }, "Description (note: its text)", h("textarea", { name: "description", id: "p-description" })),
    field("Pattern (indicator)", h("input", { name: "pattern", id: "p-pattern", placeholder: "[ipv4-addr:value = '198.51.100.7']" })),
    field("Sighting of (id)", h("input", { name: "sighting_of_ref", id: "p-sighting" })),
    field("Object ids it names (comma-separated)", h("input", { name: "object_refs", id: "p-refs" })),
    h("div", {}, h("span", {}, "Location (click the map) "), field("Latitude", lat), field("Longitude", lon)),
    h("div", { id: "pick-map", class: "wide", role: "region", "aria-label": "Pick a location" }),
    h("fieldset", { class: "wide" }, h("legend", {}, "Markings of the whole item"),
      field("Classification", h("select", { name: "classification", id: "p-class" }, levels.map((o) => o.cloneNode(true)))),
      h("p", { class: "small muted" }, "REL TO (nations and communities; your nation is always included)"),
      chips("rel_to", [...nations, ...me.communities], [me.nation]),
      field("TLP", h("select", { name: "tlp", id: "p-tlp" }, TLPS.map((t) => h("option", { value: t }, t || "none"))))),
    h("fieldset", { class: "wide" }, h("legend", {}, "Tearline: a narrower marking on the description"),
      h("label", {}, h("span", {}, tearOn, " mark the description narrower than the whole")),
      field("Classification", h("select", { name: "tear_class", id: "p-tear-class" }, levels)),
      h("p", { class: "small muted" }, "REL TO of the description"),
      chips("tear_rel_to", [...nations, ...me.communities], [me.nation])),
    h("fieldset", { class: "wide" }, h("legend", {}, "View as"),
      field("Nation", h("input", { id: "p-view-nation", size: 5, maxlength: 3, placeholder: "UKR" })),
      h("button", { type: "button", class: "secondary", id: "p-preview", onclick: () => preview() }, "Preview what they receive")),
    h("div", { class: "wide" }, h("button", { type: "submit", id: "p-send" }, "Publish")),
  );
  const result = h("div", { id: "publish-result", role: "status" });
  main.replaceChildren(h("h2", {}, "Publish"), form, result);
  form.elements.namedItem("classification").value = me.levels[Math.min(1, me.levels.length - 1)];
  const map = baseMap(document.getElementById("pick-map"));
  let marker = null;
  map.on("click", (e) => {
    lat.value = e.latlng.lat.toFixed(4);
    lon.value = e.latlng.lng.toFixed(4);
    if (marker) marker.remove();
    marker = window.L.circleMarker(e.latlng, { radius: 7, className: "relto-pick" }).addTo(map);
  });

  const el = (name) => form.elements.namedItem(name);
  function draft() {
    const refs = el("object_refs").value.split(",").map((s) => s.trim()).filter(Boolean);
    const doc = {
      collection: state.collection, type: type.value, name: el("name").value, description: el("description").value,
      pattern: el("pattern").value, sighting_of_ref: el("sighting_of_ref").value, object_refs: refs,
      latitude: lat.value, longitude: lon.value,
      classification: el("classification").value, rel_to: picked(form, "rel_to"), tlp: el("tlp").value || null,
    };
    if (tearOn.checked) doc.tearline = { classification: el("tear_class").value, rel_to: picked(form, "tear_rel_to") };
    return doc;
  }

  async function preview() {
    const nation = document.getElementById("p-view-nation").value.trim();
    result.replaceChildren(h("p", { class: "muted" }, "Previewing…"));
    try {
      const doc = await api("preview", { ...draft(), nation });
      result.replaceChildren(h("div", { class: "card preview", id: "preview" },
        h("h3", {}, `What ${doc.nation} (${doc.clearance}) would receive`),
        doc.objects.map((o) => h("div", { "data-released": String(o.released) },
          h("strong", {}, `${o.type}: `, o.released ? (o.reasons.length ? "cut" : "released") : "withheld"),
          o.reasons.length ? h("ul", { class: "small reasons" }, o.reasons.map((r) => h("li", {}, r))) : null,
          o.released ? h("pre", {}, JSON.stringify(o.object, null, 2)) : null)),
        doc.warnings.map((w) => h("p", { class: "small muted" }, w))));
    } catch (error) {
      result.replaceChildren(h("p", { class: "error", role: "alert" }, error.message));
    }
  }

  async function send() {
    result.replaceChildren(h("p", { class: "muted" }, "Publishing…"));
    try {
      const doc = await api("publish", draft());
      const st = doc.status;
      const ok = st.failure_count === 0;
      result.replaceChildren(h("div", { class: "card" },
        h("p", { class: ok ? "ok" : "error" }, ok ? `Published: ${st.success_count} object(s) stored.` : `${st.failure_count} refused.`),
        h("a", { href: `#/item/${encodeURIComponent(state.collection)}/${encodeURIComponent(doc.id)}` }, "Open the item"),
        (st.failures || []).map((f) => h("p", { class: "error" }, f.message)),
        doc.warnings.map((w) => h("p", { class: "small muted" }, w))));
    } catch (error) {
      result.replaceChildren(h("p", { class: "error", role: "alert" }, error.message));
    }
  }
  return () => map.remove();
}
