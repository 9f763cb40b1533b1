// Small DOM helpers: elements are built with textContent only (no HTML strings, so nothing is injected).
export const state = { me: null, collections: [], collection: "" };

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function bannerEl(banner, full = false) {
  const cls = "banner c-" + banner.classification.replace(/\s+/g, "-") + (full ? " full" : "");
  const el = h("span", { class: cls, "data-banner": banner.text }, banner.text);
  if (banner.tlp) el.append(h("span", { class: "tlp t-" + banner.tlp }, "TLP:" + banner.tlp));
  return el;
}

const ICONS = { report: "RPT", indicator: "IND", sighting: "SGT", note: "NOTE", location: "LOC",
  "threat-actor": "TA", relationship: "REL", identity: "ID", malware: "MAL", "attack-pattern": "AP" };

export function iconEl(type) {
  return h("span", { class: "icon t-" + type, title: type, "aria-hidden": "true" }, ICONS[type] || type.slice(0, 3).toUpperCase());
}

export function itemLink(item, collection) {
  return h("a", { href: `#/item/${encodeURIComponent(collection)}/${encodeURIComponent(item.id)}` }, item.title);
}

export function needCollection(main) {
  if (state.collection) return false;
  main.replaceChildren(h("p", {}, "There is no collection on this node yet: an operator adds one on the Operator page."));
  return true;
}

export function field(label, control) {
  return h("label", {}, label, control);
}
