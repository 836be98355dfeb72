// The memory browser: signing in, the sections, and which one the address names.

import { call, session, whenUnauthenticated } from "./api.js";
import { complain, focusHeading, quiet, say, wireConfirm } from "./dom.js";
import { memoriesView } from "./memories.js";
import { historyView, topicsView, userView, usersView } from "./people.js";

const $ = (id) => document.getElementById(id);
const THEMES = ["system", "light", "dark"];

function applyTheme(theme) {
  if (theme === "system") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  $("theme").textContent = `Theme: ${theme}`;
}

function showSignIn(message) {
  $("sign-in").hidden = false;
  for (const id of ["view", "nav", "sign-out", "where-box"]) $(id).hidden = true;
  $("view").replaceChildren();
  if (message) complain({ message });
  $("token").focus();
}

async function route() {
  if (!session.token) {
    showSignIn();
    return;
  }
  $("sign-in").hidden = true;
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

function useWhere(event) {
  event.preventDefault();
  session.where = { db_id: $("where-db").value.trim(), table: $("where-table").value.trim() };
  say("Database and table changed.");
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
  $("where").addEventListener("submit", useWhere);
  $("where-db").value = session.where.db_id || "";
  $("where-table").value = session.where.table || "";
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
