// The page's entry: a router over the address's hash (#/, #/asset/<digest>, #/branches,
// #/branch/<name>) and the live connection to the event stream.

import { showAsset } from "./asset.js";
import { showBranch, showBranches } from "./branches.js";
import { announce, errorBox, shortDigest } from "./dom.js";
import { showGallery } from "./gallery.js";
import { connectLive } from "./live.js";

const main = document.getElementById("main");

// What the shown view redraws when the log moves: which events concern it, and how.
let view = { concerns: () => false, refresh: async () => {} };

function route() {
  // Left encoded: the query is decoded by URLSearchParams, a branch name on its own.
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "asset" && parts[1]) {
    const digest = parts[1];
    return {
      show: () => showAsset(main, digest),
      // A new derivation or decision about it (or its relatives) changes the page.
      concerns: (event) => JSON.stringify(event.data).includes(digest.replace(/^sha256:/, "")),
    };
  }
  if (parts[0] === "branches") {
    return { show: () => showBranches(main), concerns: (event) => event.type.startsWith("branch.") };
  }
  if (parts[0] === "branch" && parts[1]) {
    const name = decodeURIComponent(parts.slice(1).join("/"));
    return {
      show: () => showBranch(main, name),
      concerns: (event) => event.type.startsWith("branch.") && event.data.name === name,
    };
  }
  return {
    show: () => showGallery(main, new URLSearchParams(query)),
    // New assets, and decisions and head moves that change the cards' badges.
    concerns: (event) => producedAssets(event).length > 0 || Boolean(event.data?.digest)
      || event.type.startsWith("branch."),
  };
}

/** Digests an event brings into the store: an import, a derivation, a layer's outputs. */
export function producedAssets(event) {
  const data = event.data || {};
  const found = [];
  if (data.asset?.digest) found.push(data.asset.digest);
  if (data.output?.asset?.digest) found.push(data.output.asset.digest);
  for (const output of data.outputs || []) {
    if (output?.asset?.digest) found.push(output.asset.digest);
  }
  return found;
}

async function render() {
  main.setAttribute("aria-busy", "true");
  try {
    const target = route(); // a malformed address (a bad %-escape) is shown as an error
    const refresh = await target.show();
    view = { concerns: target.concerns, refresh: refresh || target.show };
  } catch (error) {
    main.replaceChildren(errorBox(error));
    view = { concerns: () => false, refresh: async () => {} };
  } finally {
    main.setAttribute("aria-busy", "false");
  }
}

// Bursts of events (a batch of eight candidates) redraw once.
let pending = null;
function onEvent(event) {
  const made = producedAssets(event);
  if (made.length) announce(`New asset ${made.map(shortDigest).join(", ")} (${event.type})`);
  if (!view.concerns(event)) return;
  clearTimeout(pending);
  pending = setTimeout(() => view.refresh(), 150);
}

window.addEventListener("hashchange", render);
// The stream first: it starts at the log's next event when it connects, so whatever is
// appended while the first view loads still reaches it.
connectLive(onEvent);
render();
