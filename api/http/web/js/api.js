// Talking to the Strata HTTP API: JSON requests, problem+json errors, and the bearer token.
//
// Paths are relative to the page (served at the API's root), so the page keeps working when
// a proxy serves the whole app under a prefix.

const TOKEN_KEY = "strata.token";

/** An error answer of the API (RFC 9457 problem details), or a network failure. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export function token() {
  return localStorage.getItem(TOKEN_KEY);
}

/** An absolute URL for an API path and query (entries whose value is empty are left out). */
export function apiUrl(path, query = {}) {
  const url = new URL(path.replace(/^\//, ""), document.baseURI);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "" && value !== false) {
      url.searchParams.set(key, String(value));
    }
  }
  return url;
}

/** A URL for elements that cannot send headers (img, audio, video, EventSource): the token
 * travels as `access_token`. */
export function mediaUrl(path, query = {}) {
  const url = apiUrl(path, query);
  const current = token();
  if (current) url.searchParams.set("access_token", current);
  return url.toString();
}

// One question at a time: requests that get 401 together wait for the same answer; and
// once the question was declined, the page stops asking (a reload asks again).
let asking = null;
let declined = false;

function askForToken(rejected) {
  if (asking) return asking;
  if (declined) return Promise.resolve(false);
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  if (rejected) localStorage.removeItem(TOKEN_KEY);
  input.value = "";
  asking = new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      asking = null;
      const given = dialog.returnValue === "ok" ? input.value.trim() : "";
      if (given) localStorage.setItem(TOKEN_KEY, given);
      declined = !given;
      resolve(Boolean(given));
    }, { once: true });
    dialog.returnValue = ""; // Escape closes it with whatever was there: start from nothing
    dialog.showModal();
    input.focus();
  });
  return asking;
}

async function problemOf(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) {
    try {
      return await response.json();
    } catch {
      // fall through: a body that is not the JSON it claims
    }
  }
  const text = await response.text().catch(() => "");
  return { title: response.statusText, status: response.status, detail: text || undefined };
}

/** fetch() against the API with the token; on 401 asks for a token and tries again. */
export async function request(path, { method = "GET", query = {}, body, accept } = {}) {
  for (;;) {
    const headers = {};
    const current = token();
    if (current) headers.Authorization = `Bearer ${current}`;
    if (accept) headers.Accept = accept;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(apiUrl(path, query), {
        method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      throw new ApiError(0, { title: "The server cannot be reached", detail: String(error) });
    }
    if (response.status === 401) {
      // Sent before a token was given (or a new one): try again with the one there is now.
      if (token() !== current) continue;
      if (await askForToken(Boolean(current))) continue;
    }
    if (!response.ok) throw new ApiError(response.status, await problemOf(response));
    return response;
  }
}

export async function getJson(path, query) {
  return (await request(path, { query })).json();
}

export async function getText(path, query) {
  return (await request(path, { query })).text();
}

export async function postJson(path, body) {
  const response = await request(path, { method: "POST", body });
  return response.status === 204 ? null : response.json();
}
