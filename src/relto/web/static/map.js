// The map: a world outline (no tile server), markers for locations and what references them.
import { api } from "./app.js";
import { bannerEl, h, itemLink, needCollection, state } from "./dom.js";

let world = null;

export async function worldLayer() {
  if (!world) {
    const answer = await fetch("/ui/static/vendor/world-atlas/countries-110m.json", { credentials: "same-origin" });
    const topo = await answer.json();
    world = window.topojson.feature(topo, topo.objects.countries);
    world.features = world.features.filter((f) => f.properties.name !== "Antarctica");
    for (const f of world.features) unwrap(f.geometry);
  }
  return window.L.geoJSON(world, {
    pane: "world",
    style: { color: "#7a8794", weight: 0.6, fillColor: "#f4f1e8", fillOpacity: 1 },
    interactive: false,
  });
}

// Rings that cross the antimeridian jump by ~360 degrees from one point to the next: make them continuous,
// or Leaflet draws a band across the whole map.
function unwrap(geometry) {
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
  for (const polygon of polygons) {
    for (const ring of polygon) {
      for (let i = 1; i < ring.length; i++) {
        const jump = ring[i][0] - ring[i - 1][0];
        if (jump > 180) ring[i][0] -= 360;
        else if (jump < -180) ring[i][0] += 360;
      }
    }
  }
}

export function baseMap(element) {
  const map = window.L.map(element, { worldCopyJump: true, minZoom: 1, maxZoom: 10, attributionControl: false });
  map.createPane("world"); // below the markers' pane, whenever the outline arrives
  map.setView([30, 15], 2);
  worldLayer().then((layer) => layer.addTo(map));
  return map;
}

export async function mapView(main) {
  if (needCollection(main)) return null;
  const collection = state.collection;
  const element = h("div", { id: "map", role: "region", "aria-label": "Map of released locations" });
  const listing = h("ul", { id: "map-list" });
  main.replaceChildren(h("h2", {}, "Map"), element, h("h3", {}, "Locations"), listing);
  const map = baseMap(element);
  const { items } = await api("feed?" + new URLSearchParams({ collection, limit: "500" }));
  const byId = new Map(items.map((i) => [i.id, i]));
  const referencing = new Map();
  for (const item of items) {
    const ends = item.relationship ? [item.relationship[0], item.relationship[2]] : [];
    for (const ref of [...item.refs, ...ends]) {
      if (!referencing.has(ref)) referencing.set(ref, []);
      referencing.get(ref).push(item);
    }
  }
  for (const item of items.filter((i) => i.location)) {
    const others = (referencing.get(item.id) || [])
      .flatMap((i) => (i.relationship ? [byId.get(i.relationship[0]), i] : [i]))
      .filter((i) => i && i.id !== item.id);
    const popup = h("div", { class: "popup" }, bannerEl(item.banner), h("div", {}, itemLink(item, collection)),
      others.length ? h("ul", {}, [...new Set(others)].map((o) => h("li", {}, `${o.type}: `, itemLink(o, collection)))) : null);
    window.L.circleMarker(item.location, { radius: 7, color: "#1d3557", fillColor: "#e76f51", fillOpacity: 0.9, className: "relto-marker" })
      .bindPopup(popup).addTo(map);
    listing.append(h("li", {}, itemLink(item, collection), ` (${item.location[0].toFixed(2)}, ${item.location[1].toFixed(2)}) `, bannerEl(item.banner)));
  }
  if (!listing.children.length) listing.append(h("li", { class: "muted" }, "No location released to you in this collection."));
  return () => map.remove();
}
