// The lineage graph as SVG: a small layered layout (roots on top, each asset one row below
// its lowest parent), thumbnails at the nodes, roles on the edges, each node a link.

import { mediaUrl } from "./api.js";
import { clip, shortDigest, svg } from "./dom.js";

const NODE_W = 112;
const NODE_H = 128;
const THUMB = 88;
const GAP_X = 36;
const GAP_Y = 72;
const SWEEPS = 4;

/** Rows of digests: rank = the longest path from a root, so every edge points down. */
export function layout(nodes, edges) {
  const digests = nodes.map((n) => n.digest);
  const known = new Set(digests);
  const parents = new Map(digests.map((d) => [d, []]));
  const children = new Map(digests.map((d) => [d, []]));
  for (const e of edges) {
    if (!known.has(e.from) || !known.has(e.to) || e.from === e.to) continue;
    parents.get(e.to).push(e.from);
    children.get(e.from).push(e.to);
  }
  // Kahn's order; a lineage is a DAG, but anything left over (it cannot happen without a
  // broken projection) goes to a last row instead of looping.
  const rank = new Map();
  const waiting = new Map(digests.map((d) => [d, new Set(parents.get(d)).size]));
  const queue = digests.filter((d) => waiting.get(d) === 0);
  for (const d of queue) rank.set(d, 0);
  while (queue.length) {
    const d = queue.shift();
    for (const c of new Set(children.get(d))) {
      rank.set(c, Math.max(rank.get(c) ?? 0, rank.get(d) + 1));
      waiting.set(c, waiting.get(c) - 1);
      if (waiting.get(c) === 0) queue.push(c);
    }
  }
  const last = Math.max(0, ...rank.values()) + 1;
  for (const d of digests) if (!rank.has(d)) rank.set(d, last);

  const rows = [];
  for (const d of digests) (rows[rank.get(d)] ||= []).push(d);
  const filled = rows.filter(Boolean);
  // Barycentre sweeps (down, then up) to keep edges short and crossings few.
  const order = (row, neighbours, reference) => {
    const at = new Map(reference.map((d, i) => [d, i]));
    const weight = (d, i) => {
      const near = neighbours.get(d).filter((n) => at.has(n));
      return near.length ? near.reduce((s, n) => s + at.get(n), 0) / near.length : i;
    };
    const weights = new Map(row.map((d, i) => [d, weight(d, i)]));
    return [...row].sort((a, b) => weights.get(a) - weights.get(b));
  };
  for (let sweep = 0; sweep < SWEEPS; sweep++) {
    for (let r = 1; r < filled.length; r++) filled[r] = order(filled[r], parents, filled[r - 1]);
    for (let r = filled.length - 2; r >= 0; r--) {
      filled[r] = order(filled[r], children, filled[r + 1]);
    }
  }
  return filled;
}

/** Node positions (top-left corners), rows centred on the widest one. */
function positions(rows) {
  const widest = Math.max(1, ...rows.map((r) => r.length));
  const width = widest * NODE_W + (widest - 1) * GAP_X;
  const at = new Map();
  rows.forEach((row, r) => {
    const rowWidth = row.length * NODE_W + (row.length - 1) * GAP_X;
    const left = (width - rowWidth) / 2;
    row.forEach((d, i) => at.set(d, { x: left + i * (NODE_W + GAP_X), y: r * (NODE_H + GAP_Y) }));
  });
  return { at, width, height: rows.length * NODE_H + (rows.length - 1) * GAP_Y };
}

function nodeLabel(node) {
  return node.operation && node.operation !== node.layer
    ? `${node.layer} · ${node.operation}` : (node.layer || "");
}

/** The graph drawn into an <svg>; `current` (a digest) is highlighted. */
export function drawLineage(graph, current) {
  const byDigest = new Map(graph.nodes.map((n) => [n.digest, n]));
  const rows = layout(graph.nodes, graph.edges);
  const { at, width, height } = positions(rows);
  const pad = 8;
  const root = svg("svg", {
    class: "lineage", role: "group",
    "aria-label": `Lineage: ${graph.nodes.length} assets, ${graph.edges.length} derivations`,
    viewBox: `${-pad} ${-pad} ${width + 2 * pad} ${height + 2 * pad}`,
    width: width + 2 * pad, height: height + 2 * pad,
  });
  const marker = svg("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7,
    orient: "auto-start-reverse",
  }, svg("path", { d: "M0,0 L10,5 L0,10 z" }));
  root.append(svg("defs", {}, marker));

  // One line per parent → child pair; an input used in several roles lists them all.
  const pairs = new Map();
  for (const e of graph.edges) {
    if (!at.has(e.from) || !at.has(e.to)) continue;
    const key = `${e.from} ${e.to}`;
    if (!pairs.has(key)) pairs.set(key, { from: e.from, to: e.to, roles: [] });
    if (!pairs.get(key).roles.includes(e.role)) pairs.get(key).roles.push(e.role);
  }
  const edgeLayer = svg("g", { class: "edges" });
  for (const { from, to, roles } of pairs.values()) {
    const a = at.get(from);
    const b = at.get(to);
    const x1 = a.x + NODE_W / 2;
    const y1 = a.y + NODE_H;
    const x2 = b.x + NODE_W / 2;
    const y2 = b.y;
    const bend = (y2 - y1) / 2;
    const role = roles.join(", ");
    edgeLayer.append(svg("g", { class: "edge", "data-from": from, "data-to": to },
      svg("title", {}, `${shortDigest(from)} → ${shortDigest(to)} as ${role}`),
      svg("path", {
        d: `M${x1},${y1} C${x1},${y1 + bend} ${x2},${y2 - bend} ${x2},${y2}`,
        "marker-end": "url(#arrow)",
      }),
      svg("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2, class: "role" }, role)));
  }
  root.append(edgeLayer);

  const nodeLayer = svg("g", { class: "nodes" });
  for (const [digest, { x, y }] of at) {
    const node = byDigest.get(digest);
    const media = node.media_type || "";
    const label = nodeLabel(node);
    const picture = media.startsWith("audio/")
      ? svg("text", { x: NODE_W / 2, y: 8 + THUMB / 2, class: "glyph" }, "♪")
      : svg("image", {
        href: mediaUrl(`assets/${digest}/thumbnail`, { size: 128 }),
        x: (NODE_W - THUMB) / 2, y: 8, width: THUMB, height: THUMB,
        preserveAspectRatio: "xMidYMid meet",
      });
    nodeLayer.append(svg("a", {
      href: `#/asset/${digest}`, class: digest === current ? "node current" : "node",
      "data-digest": digest, transform: `translate(${x},${y})`,
      "aria-label": `${label} ${media} ${shortDigest(digest)}`,
      ...(digest === current ? { "aria-current": "page" } : {}),
    },
    svg("title", {}, `${digest}\n${label} (${media})`),
    svg("rect", { width: NODE_W, height: NODE_H, rx: 6 }),
    picture,
    svg("text", { x: NODE_W / 2, y: THUMB + 24, class: "layer" }, clip(label, 18)),
    svg("text", { x: NODE_W / 2, y: THUMB + 38, class: "digest" }, shortDigest(digest))));
  }
  root.append(nodeLayer);
  return root;
}
