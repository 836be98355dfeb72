// The JSON API, called with the tab's own token: the page can do only what the API allows.

const TOKEN = "mnemo.token";
const WHERE = "mnemo.where";

// The key or JWT lives in this tab's sessionStorage: never in a URL, a cookie or a log.
export const session = {
  get token() { return sessionStorage.getItem(TOKEN); },
  signIn(token) { sessionStorage.setItem(TOKEN, token); },
  signOut() { sessionStorage.removeItem(TOKEN); sessionStorage.removeItem(WHERE); },
  get where() { return JSON.parse(sessionStorage.getItem(WHERE) || "{}"); },
  set where(value) { sessionStorage.setItem(WHERE, JSON.stringify(value)); },
};

export class ApiError extends Error {
  constructor(status, detail, code) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

// The page is served at <root>/ui/, the API at <root>/.
const root = new URL("../", document.baseURI);
let onUnauthenticated = () => {};
export function whenUnauthenticated(callback) { onUnauthenticated = callback; }

function url(path, query, where) {
  const target = new URL(path, root);
  const { db_id, table } = where;
  for (const [name, value] of Object.entries({ db_id, table, ...query })) {
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item !== undefined && item !== null && item !== "") target.searchParams.append(name, item);
    }
  }
  return target;
}

/** One API call: {data, etag}, or an ApiError carrying the API's own detail. ``where`` is the
 * database and table it names: the tab's choice unless told otherwise. */
export async function call(method, path, { query, body, headers, token, where = session.where } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, cache: "no-store",
                 credentials: "omit", referrerPolicy: "no-referrer" };
  const bearer = token ?? session.token;
  if (bearer) init.headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(url(path, query, where), init);
  } catch {
    throw new ApiError(0, "The server could not be reached", "NETWORK");
  }
  if (!response.ok) {
    let detail = `The server answered ${response.status}`;
    let code;
    try {
      const error = await response.json();
      detail = error.detail || detail;
      code = error.error_code;
    } catch { /* not JSON: the status says enough */ }
    const error = new ApiError(response.status, detail, code);
    if (response.status === 401 && token === undefined) onUnauthenticated(error);
    throw error;
  }
  const data = response.status === 204 ? null : await response.json();
  return { data, etag: response.headers.get("ETag") };
}

export const path = (...parts) => parts.map(encodeURIComponent).join("/");
