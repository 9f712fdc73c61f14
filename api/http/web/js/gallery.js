// The gallery: assets newest first with thumbnails, filters and search kept in the address
// (so a filtered page can be bookmarked), paged.

import { getJson, mediaUrl } from "./api.js";
import { el, errorBox, shortDigest, time } from "./dom.js";

const PAGE_SIZE = 24;
// Assets made outside a job: imported as they are, or derived outside Strata.
const OUTSIDE_LAYERS = ["import", "external"];
const MEDIA = ["image", "video", "audio"];

let layers = null;
/** Layer names for the filter: every registered layer has its own `POST /jobs/<layer>` in
 * the API's OpenAPI document, so a plug-in layer shows up here with no edit to the page. */
function layerNames() {
  layers ||= getJson("openapi.json").then((openapi) => {
    const found = Object.entries(openapi.paths || {})
      .filter(([path, methods]) => /^\/jobs\/[^/{]+$/.test(path) && methods.post)
      .map(([path]) => path.slice("/jobs/".length));
    return [...OUTSIDE_LAYERS, ...found.sort()];
  }).catch(() => OUTSIDE_LAYERS);
  return layers;
}

/** The gallery's state from the address: `#/?layer=…&page=2`. */
function stateOf(params) {
  return {
    q: params.get("q") || "",
    layer: params.get("layer") || "",
    branch: params.get("branch") || "",
    rating_min: params.get("rating_min") || "",
    final: params.get("final") === "true",
    media: params.get("media") || "",
    page: Math.max(1, Number.parseInt(params.get("page") || "1", 10) || 1),
  };
}

function hashOf(state) {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(state)) {
    if (value && !(key === "page" && value === 1)) params.set(key, String(value));
  }
  const query = params.toString();
  return query ? `#/?${query}` : "#/";
}

function field(label, id, control) {
  return el("div", { class: "field" }, el("label", { for: id }, label), control);
}

function select(id, name, value, options, empty) {
  return el("select", { id, name },
    el("option", { value: "" }, empty),
    options.map(([optionValue, text]) => el("option", {
      value: optionValue, selected: String(optionValue) === String(value),
    }, text)));
}

function filters(state, branches, layerList) {
  const form = el("form", { class: "filters", role: "search", "aria-label": "Filter assets" },
    field("Search", "f-q", el("input", {
      id: "f-q", name: "q", type: "search", value: state.q,
      placeholder: "find query, e.g. layer:generation", "aria-describedby": "f-q-help",
    })),
    field("Layer", "f-layer", select("f-layer", "layer", state.layer,
      layerList.map((l) => [l, l]), "any layer")),
    field("Branch", "f-branch", select("f-branch", "branch", state.branch,
      branches.map((b) => [b.name, b.name]), "any branch")),
    field("Rating", "f-rating", select("f-rating", "rating_min", state.rating_min,
      [1, 2, 3, 4, 5].map((r) => [r, `${"★".repeat(r)} or more`]), "any rating")),
    field("Media", "f-media", select("f-media", "media", state.media,
      MEDIA.map((m) => [m, m]), "any media")),
    el("div", { class: "field check" },
      el("input", { id: "f-final", name: "final", type: "checkbox", checked: state.final }),
      el("label", { for: "f-final" }, "finals only")),
    el("button", { type: "submit" }, "Apply"),
    el("p", { id: "f-q-help", class: "help" },
      "Search uses the find query language; the filters narrow it further."));
  const apply = (event) => {
    event.preventDefault();
    const data = new FormData(form);
    location.hash = hashOf({
      q: String(data.get("q") || "").trim(), layer: data.get("layer"),
      branch: data.get("branch"), rating_min: data.get("rating_min"),
      final: data.get("final") === "on", media: data.get("media"), page: 1,
    });
  };
  form.addEventListener("submit", apply);
  // Choosing from a list applies at once; typing a search waits for Enter.
  for (const control of form.querySelectorAll("select, input[type=checkbox]")) {
    control.addEventListener("change", apply);
  }
  return form;
}

function stars(rating) {
  if (!rating) return null;
  return el("span", { class: "rating", "aria-label": `rated ${rating} of 5` },
    "★".repeat(rating));
}

function placeholder(asset) {
  const kind = (asset.media_type || "").split("/")[0] || "file";
  return el("span", { class: `placeholder ${kind}`, role: "img",
    "aria-label": `${kind} ${shortDigest(asset.digest)}` }, kind === "audio" ? "♪" : kind);
}

function thumbnail(asset) {
  if ((asset.media_type || "").startsWith("audio/")) return placeholder(asset);
  const img = el("img", {
    src: mediaUrl(`assets/${asset.digest}/thumbnail`, { size: 256 }),
    alt: `${asset.layer || "asset"} ${asset.operation || ""} ${shortDigest(asset.digest)}`.trim(),
    loading: "lazy", width: 192, height: 192,
  });
  img.addEventListener("error", () => img.replaceWith(placeholder(asset)), { once: true });
  return img;
}

function card(asset) {
  const size = asset.width && asset.height ? `${asset.width}×${asset.height}` : "";
  return el("li", { class: "card", "data-digest": asset.digest },
    el("a", { href: `#/asset/${asset.digest}` },
      thumbnail(asset),
      el("span", { class: "name" }, shortDigest(asset.digest))),
    el("p", { class: "meta" },
      el("span", { class: "layer" }, asset.operation && asset.operation !== asset.layer
        ? `${asset.layer} · ${asset.operation}` : asset.layer),
      " ", el("span", { class: "media" }, asset.media_type), " ", size),
    el("p", { class: "badges" },
      stars(asset.rating),
      asset.final ? el("span", { class: "final" }, "final") : null,
      (asset.branches || []).map((b) => el("a", { class: "branch", href: `#/branch/${encodeURIComponent(b)}` }, b))),
    el("p", { class: "when" }, time(asset.created_at)));
}

function pager(state, total) {
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  const first = total ? (state.page - 1) * PAGE_SIZE + 1 : 0;
  const last = Math.min(total, state.page * PAGE_SIZE);
  const link = (page, text, rel) => (page < 1 || page > pages
    ? el("span", { class: "disabled", "aria-disabled": "true" }, text)
    : el("a", { href: hashOf({ ...state, page }), rel }, text));
  return el("nav", { class: "pager", "aria-label": "Pages" },
    link(state.page - 1, "← newer", "prev"),
    el("span", { class: "count" }, `${first}–${last} of ${total}`),
    link(state.page + 1, "older →", "next"));
}

/** Draws the gallery into `main`; returns a function that reloads its results in place. */
export async function showGallery(main, params) {
  const state = stateOf(params);
  // The branch list only fills a filter: without it the gallery still works.
  const [branches, layerList] = await Promise.all([
    getJson("branches").catch(() => []), layerNames()]);
  const results = el("section", { class: "results", "aria-label": "Assets" });
  main.replaceChildren(el("h2", {}, "Gallery"), filters(state, branches, layerList), results);

  const load = async () => {
    try {
      const answer = await getJson("assets", {
        q: state.q, layer: state.layer, branch: state.branch, rating_min: state.rating_min,
        final: state.final ? "true" : "", media: state.media,
        limit: PAGE_SIZE, offset: (state.page - 1) * PAGE_SIZE,
      });
      const list = el("ul", { class: "gallery" }, answer.assets.map(card));
      results.replaceChildren(
        answer.assets.length ? list : el("p", { class: "empty" }, "No assets match."),
        pager(state, answer.total));
      results.setAttribute("aria-busy", "false");
    } catch (error) {
      results.replaceChildren(errorBox(error, state.q ? "Search failed: " : ""));
    }
  };
  await load();
  return load;
}
