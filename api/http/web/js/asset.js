// An asset's page: the bytes (image shown, audio and video playable in place), its lineage
// graph, its recipe, provenance, decisions and reviews.

import { getJson, getText, mediaUrl } from "./api.js";
import { el, errorBox, shortDigest, time } from "./dom.js";
import { drawLineage } from "./lineage.js";

const PROVENANCE_FORMATS = ["markdown", "json", "tree", "prov-json", "prov-n", "prov-xml"];

function player(asset) {
  const src = mediaUrl(`assets/${asset.digest}/content`);
  const kind = (asset.media_type || "").split("/")[0];
  const label = `${asset.label || asset.layer} ${shortDigest(asset.digest)}`;
  if (kind === "video") {
    return el("video", { src, controls: true, preload: "metadata", "aria-label": label,
      width: asset.width, height: asset.height });
  }
  if (kind === "audio") {
    return el("audio", { src, controls: true, preload: "metadata", "aria-label": label });
  }
  if (kind === "image") {
    return el("img", { src, alt: label, width: asset.width, height: asset.height });
  }
  return el("a", { href: src, download: "" }, `Download (${asset.media_type})`);
}

function facts(asset) {
  const rows = [
    ["Digest", el("code", {}, asset.digest)],
    ["Media", asset.media_type],
    ["Size", `${asset.size} bytes`],
    asset.width ? ["Dimensions", `${asset.width}×${asset.height}`] : null,
    asset.duration ? ["Duration", `${asset.duration} s`] : null,
    ["Layer", asset.layer],
    asset.label ? ["Label", asset.label] : null,
    ["Recorded at position", String(asset.created_position)],
  ].filter(Boolean);
  return el("dl", { class: "facts" }, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

/** A JSON value as nested definition lists (objects) and lists (arrays). */
function tree(value) {
  if (Array.isArray(value)) {
    return value.length ? el("ol", {}, value.map((v) => el("li", {}, tree(v)))) : "[]";
  }
  if (value && typeof value === "object") {
    return el("dl", { class: "tree" }, Object.entries(value).flatMap(([k, v]) => [
      el("dt", {}, k), el("dd", {}, tree(v))]));
  }
  if (typeof value === "string" && value.startsWith("sha256:")) {
    return el("a", { href: `#/asset/${value}` }, el("code", {}, value));
  }
  return value === null ? "—" : String(value);
}

function decisions(details) {
  const items = [];
  if (details.selection) items.push(el("li", {}, "Selection: ", tree(details.selection)));
  if (details.final) items.push(el("li", {}, "Marked final: ", tree(details.final)));
  if (details.branches?.length) {
    items.push(el("li", {}, "Head of: ", details.branches.map((b) => [
      el("a", { href: `#/branch/${encodeURIComponent(b)}` }, b), " "])));
  }
  return items.length ? el("ul", {}, items) : el("p", {}, "No decisions about it yet.");
}

async function reviews(digest, latest) {
  const list = el("ol", { class: "reviews" });
  const audit = await getJson(`assets/${digest}/audit`);
  for (const event of audit.events) {
    if (event.type !== "review.recorded" || !(event.assets || []).includes(digest)) continue;
    list.append(el("li", {}, time(event.time), " ", event.actor || "", ": ", event.summary));
  }
  if (list.children.length) return list;
  return latest ? tree(latest) : el("p", {}, "No reviews.");
}

function provenance(digest) {
  const choose = el("select", { id: "prov-format", name: "format" },
    PROVENANCE_FORMATS.map((f) => el("option", { value: f }, f)));
  const out = el("pre", { class: "provenance", tabindex: "0", "aria-label": "Provenance" });
  const load = async () => {
    out.textContent = "Loading…";
    try {
      out.textContent = await getText(`assets/${digest}/provenance`, { format: choose.value });
    } catch (error) {
      out.replaceChildren(errorBox(error));
    }
  };
  choose.addEventListener("change", load);
  load();
  return [el("div", { class: "field" }, el("label", { for: "prov-format" }, "Format"), choose), out];
}

async function lineage(digest) {
  const graph = await getJson(`assets/${digest}/lineage`, { direction: "graph" });
  return el("div", { class: "lineage-frame" }, drawLineage(graph, digest));
}

function section(id, title, ...content) {
  return el("section", { id, "aria-labelledby": `${id}-title` },
    el("h3", { id: `${id}-title` }, title), ...content);
}

/** A section filled when its request answers; a failure shows there, not on the whole page. */
function later(id, title, make) {
  const box = section(id, title, el("p", { class: "loading" }, "Loading…"));
  make().then(
    (content) => box.replaceChildren(box.firstChild, content),
    (error) => box.replaceChildren(box.firstChild, errorBox(error)));
  return box;
}

export async function showAsset(main, ref) {
  const details = await getJson(`assets/${ref}`);
  const asset = details.asset;
  main.replaceChildren(
    el("h2", {}, `Asset ${shortDigest(asset.digest)}`),
    el("div", { class: "asset-top" }, el("figure", { class: "media" }, player(asset)),
      facts(asset)),
    later("lineage", "Lineage", () => lineage(asset.digest)),
    section("recipe", "Recipe", tree(details.recipe)),
    section("decisions", "Decisions", decisions(details)),
    later("reviews", "Reviews", () => reviews(asset.digest, details.review)),
    section("provenance", "Provenance", ...provenance(asset.digest)));
  document.title = `Strata · ${shortDigest(asset.digest)}`;
}
