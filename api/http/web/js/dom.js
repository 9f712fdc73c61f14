// Small DOM helpers: elements built from data, never from HTML strings (no injection).

const SVG_NS = "http://www.w3.org/2000/svg";

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      node.addEventListener(key.slice(2), value);
    } else {
      node.setAttribute(key, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** An HTML element: el("a", {href: "#/"}, "text", otherNode). */
export function el(tag, attrs = {}, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

/** An SVG element, the same way. */
export function svg(tag, attrs = {}, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** The first 12 hex digits of a digest, as the command line prints them. */
export function shortDigest(digest) {
  return (digest || "").replace(/^sha256:/, "").slice(0, 12);
}

export function clip(text, length) {
  return text.length > length ? `${text.slice(0, length - 1)}…` : text;
}

export function time(iso) {
  if (!iso) return "";
  const when = new Date(iso);
  return el("time", { datetime: iso }, Number.isNaN(when.getTime()) ? iso : when.toLocaleString());
}

/** Says something to screen readers (and to the tests) through the live region. */
export function announce(text) {
  document.getElementById("announce").textContent = text;
}

/** An error box with the API's message. */
export function errorBox(error, prefix = "") {
  return el("p", { class: "error", role: "alert" }, prefix, error.message || String(error));
}
