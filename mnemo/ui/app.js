// The memory browser: signing in, the sections, and which one the address names.

import { call, session, whenUnauthenticated } from "./api.js";
import { complain, focusHeading, h, quiet, say, wireConfirm } from "./dom.js";
import { listing, memoriesView } from "./memories.js";
import { historyView, topicsView, userView, usersView } from "./people.js";

const $ = (id) => document.getElementById(id);
const THEMES = ["system", "light", "dark"];
// GET /databases's answer for this tab's token: null until asked, empty when it was refused.
let databases = null;

function applyTheme(theme) {
  if (theme === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  $("theme").textContent = `Theme: ${theme}`;
}

function showSignIn(message) {
  $("sign-in").hidden = false;
  for (const id of ["view", "nav", "sign-out", "where-box"]) $(id).hidden = true;
  $("view").replaceChildren();
  databases = null;
  if (message) complain({ message });
  $("token").focus();
}

async function route() {
  if (!session.token) {
    showSignIn();
    return;
  }
  $("sign-in").hidden = true;
  if (databases === null && !await loadDatabases()) return;
  for (const id of ["view", "nav", "sign-out", "where-box"]) $(id).hidden = false;
  const [section, id] = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
  for (const link of $("nav").querySelectorAll("a")) {
    const current = link.getAttribute("href") === `#/${section || "memories"}`;
    if (current) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const view = $("view");
  const views = { topics: topicsView, users: id ? (v) => userView(v, id) : usersView,
                  history: id ? (v) => historyView(v, id) : memoriesView };
  try {
    await (views[section] || memoriesView)(view);
  } catch (error) {
    complain(error);
  }
}

async function signIn(event) {
  event.preventDefault();
  const token = $("token").value.trim();
  quiet();
  try {
    // Any read the token may make proves it; a user's token lists its own memories only.
    await call("GET", "memories", { query: { limit: 1 }, token });
  } catch (error) {
    complain({ message: `Not signed in: ${error.message}` });
    return;
  }
  $("token").value = "";
  session.signIn(token);
  say("Signed in.");
  await route();
  focusHeading($("view"));
}

function signOut() {
  session.signOut();
  location.hash = "";
  showSignIn();
  say("Signed out.");
}

const options = (names, chosen) => names.map((name) => h("option", { value: name, selected: name === chosen }, name));

/** Offer the databases and tables the server lists, the tab's earlier choice (or the default) selected.
 * False when the token was not accepted (the sign-in form is back then). */
async function loadDatabases() {
  const note = $("where-note");
  try {
    // Asked of no database in particular: the list is the server's, whatever the tab has chosen.
    ({ data: { databases } } = await call("GET", "databases", { where: {} }));
  } catch (error) {
    if (error.status === 401) return false;
    // Without the list nothing can be offered; the server's default database and table still serve.
    databases = [];
    session.where = {};
    note.textContent = `No choice of database: ${error.message}. The server's default database and table are shown.`;
    note.hidden = false;
    for (const id of ["where-db", "where-table"]) $(id).parentElement.hidden = true;
    return true;
  }
  note.hidden = true;
  for (const id of ["where-db", "where-table"]) $(id).parentElement.hidden = false;
  const { db_id, table } = session.where;
  const known = databases.find((entry) => entry.db_id === db_id);
  // A choice the server no longer lists (or none) falls back to the default: the first of each.
  const database = known || databases[0];
  const chosen = known && database.tables.includes(table) ? table : database.tables[0];
  if (!known || chosen !== table) session.where = {};
  $("where-db").replaceChildren(...options(databases.map((entry) => entry.db_id), database.db_id));
  $("where-table").replaceChildren(...options(database.tables, chosen));
  return true;
}

function useWhere(event) {
  if (event.target.id === "where-db") {
    const database = databases.find((entry) => entry.db_id === $("where-db").value);
    $("where-table").replaceChildren(...options(database.tables, database.tables[0]));
  }
  const db_id = $("where-db").value;
  const table = $("where-table").value;
  // The default pair goes unnamed, as a request without db_id and table is answered from it.
  const fallback = databases[0].db_id === db_id && databases[0].tables[0] === table;
  session.where = fallback ? {} : { db_id, table };
  listing.page = 1;
  say(`Database ${db_id}, table ${table}.`);
  // The focus stays on the list just changed: only the content below follows it.
  route();
}

document.addEventListener("DOMContentLoaded", () => {
  wireConfirm();
  let theme = localStorage.getItem("mnemo.theme") || "system";
  applyTheme(theme);
  $("theme").addEventListener("click", () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
    localStorage.setItem("mnemo.theme", theme);
    applyTheme(theme);
  });
  $("sign-in-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("where-box").addEventListener("submit", (event) => event.preventDefault());
  $("where-box").addEventListener("change", useWhere);
  whenUnauthenticated((error) => {
    session.signOut();
    showSignIn(`Signed out: ${error.message}`);
  });
  window.addEventListener("hashchange", async () => {
    // Only the page's own addresses (#/...) name a section.
    if (!location.hash.startsWith("#/")) return;
    quiet();
    await route();
    focusHeading($("view"));
  });
  route();
});
