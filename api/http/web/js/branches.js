// Branches: the list, and one branch's head history with a rollback action. A rollback
// carries the version the page saw, so a head moved meanwhile by someone else is refused
// (409) instead of silently overwritten.

import { getJson, mediaUrl, postJson } from "./api.js";
import { announce, el, errorBox, shortDigest, time } from "./dom.js";

function assetLink(digest) {
  if (!digest) return "—";
  return el("a", { href: `#/asset/${digest}`, class: "asset-link" },
    el("img", { src: mediaUrl(`assets/${digest}/thumbnail`, { size: 128 }), alt: "",
      width: 32, height: 32, loading: "lazy" }),
    el("code", {}, shortDigest(digest)));
}

export async function showBranches(main) {
  const branches = await getJson("branches");
  const rows = branches.map((b) => el("tr", { "data-branch": b.name },
    el("th", { scope: "row" },
      el("a", { href: `#/branch/${encodeURIComponent(b.name)}` }, b.name),
      b.current ? " (checked out)" : ""),
    el("td", {}, assetLink(b.head)),
    el("td", {}, String(b.version))));
  main.replaceChildren(el("h2", {}, "Branches"), branches.length
    ? el("table", {}, el("caption", {}, "Every branch and its head"),
      el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Branch"),
        el("th", { scope: "col" }, "Head"), el("th", { scope: "col" }, "Version"))),
      el("tbody", {}, rows))
    : el("p", {}, "No branches yet (strata branch create NAME --from ASSET)."));
  document.title = "Strata · branches";
}

/** Draws one branch; returns a function that redraws it (after a rollback, a live event). */
export async function showBranch(main, name) {
  const draw = async (message) => {
    const branch = await getJson(`branches/${encodeURIComponent(name)}`);
    const reason = el("input", { id: "rollback-reason", name: "reason", type: "text",
      placeholder: "why (optional)" });
    const status = el("div", { class: "action-status", "aria-live": "polite" },
      message ? errorBox(message) : null);
    const rollback = async (to) => {
      try {
        await postJson(`branches/${encodeURIComponent(name)}/rollback`, {
          to, expected_version: branch.version, reason: reason.value.trim() || undefined,
        });
        announce(`Branch ${name} rolled back to ${shortDigest(to)}`);
        await draw();
      } catch (error) {
        await draw(error); // show what the head is now, and why this one was refused
      }
    };
    // Most recent first; every earlier head can be gone back to.
    const items = [...branch.moves].reverse().map((move) => el("li", {
      class: move.head === branch.head ? "move current" : "move", "data-head": move.head || "",
    },
    el("span", { class: "action" }, move.action.replace("_", " ")), " ", assetLink(move.head),
    move.previous_head ? [" from ", el("code", {}, shortDigest(move.previous_head))] : null,
    move.reason ? el("q", {}, move.reason) : null, " ", time(move.recorded_at),
    " ", el("span", { class: "position" }, `#${move.position}`),
    move.head && move.head !== branch.head
      ? el("button", { type: "button", class: "rollback", onclick: () => rollback(move.head) },
        `Roll back to ${shortDigest(move.head)}`)
      : null));
    main.replaceChildren(
      el("h2", {}, `Branch ${name}`),
      el("p", { class: "head" }, "Head: ", assetLink(branch.head),
        ` · version ${branch.version}`),
      status,
      el("div", { class: "field" }, el("label", { for: "rollback-reason" }, "Rollback reason"),
        reason),
      el("h3", {}, "Head history"),
      el("ol", { class: "history", reversed: true }, items));
    document.title = `Strata · ${name}`;
  };
  await draw();
  return () => draw();
}
