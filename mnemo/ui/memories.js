// The table of memories: filters, search, paging, sorting, creating, editing and deleting.

import { call, path } from "./api.js";
import { complain, confirmAction, field, h, say, splitTopics, topicList, unsay, when } from "./dom.js";

// What the table shows; kept while the person moves between sections.
export const listing = {
  filters: { user_id: "", agent_id: "", team_id: "", topics: "", search_content: "", search_mode: "substring" },
  page: 1, limit: 20, sort_by: "updated_at", sort_order: "desc",
};
const selected = new Set();
const RANKED = {
  semantic: "Ranked by meaning, best first; the score is how close in meaning (cosine similarity, -1 to 1).",
  hybrid: "Ranked by meaning and shared words, best first; the score is 0 to 1 (1 is first in both rankings).",
};
let loads = 0;
const PHONE = matchMedia("(max-width: 40rem)");
let container;

/** Show the memories that match ``filters`` (e.g. one user's), from the first page. */
export function showMemories(filters) {
  Object.assign(listing.filters, { user_id: "", agent_id: "", team_id: "", topics: "", search_content: "" },
                filters);
  listing.page = 1;
  location.hash = "#/memories";
}

export async function memoriesView(view) {
  container = view;
  selected.clear();
  view.replaceChildren(
    h("h1", {}, "Memories"),
    filterForm(),
    h("div", { class: "toolbar" },
      h("button", { type: "button", id: "new-memory", onclick: openCreate }, "New memory"),
      h("button", { type: "button", id: "delete-selected", class: "danger", disabled: true,
                    onclick: deleteSelected }, "Delete selected")),
    h("div", { id: "create-box" }),
    h("div", { id: "table-box" }),
  );
  await load();
}

function filterForm() {
  const f = listing.filters;
  const input = (name) => h("input", { name, value: f[name], autocomplete: "off" });
  const mode = h("select", { name: "search_mode" },
    [["substring", "Text (substring)"], ["semantic", "Meaning (semantic)"], ["hybrid", "Both (hybrid)"]]
      .map(([value, label]) => h("option", { value, selected: f.search_mode === value }, label)));
  const limit = h("select", { name: "limit" },
    [10, 20, 50, 100].map((n) => h("option", { value: n, selected: listing.limit === n }, n)));
  // Open, except on a phone, where the table comes first.
  return h("details", { class: "filter-box", open: !PHONE.matches },
    h("summary", {}, "Filter and search"),
    h("form", { class: "filters", "aria-label": "Filter and search memories", onsubmit: applyFilters },
    field("f-search", "Search", h("input", { name: "search_content", value: f.search_content,
                                                type: "search", autocomplete: "off" })),
    field("f-mode", "Search by", mode),
    field("f-user", "User", input("user_id")),
    field("f-agent", "Agent", input("agent_id")),
    field("f-team", "Team", input("team_id")),
    field("f-topics", "Topics (all of, comma-separated)", input("topics")),
    field("f-limit", "Per page", limit),
    h("div", { class: "field buttons" }, h("button", { type: "submit" }, "Apply"))));
}

async function applyFilters(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  for (const name of Object.keys(listing.filters)) listing.filters[name] = String(form.get(name) ?? "").trim();
  listing.limit = Number(form.get("limit"));
  listing.page = 1;
  if (PHONE.matches) event.target.closest("details").open = false;
  await load();
}

function query() {
  const f = listing.filters;
  const q = { user_id: f.user_id, agent_id: f.agent_id, team_id: f.team_id, topics: splitTopics(f.topics),
              search_content: f.search_content, page: listing.page, limit: listing.limit };
  // Substring is the API's default: the parameter goes only with a ranked mode, whose order is
  // the ranking's own (the API ignores sort_by there).
  if (f.search_mode in RANKED) q.search_mode = f.search_mode;
  else Object.assign(q, { sort_by: listing.sort_by, sort_order: listing.sort_order });
  return q;
}

async function load() {
  const box = container.querySelector("#table-box");
  const asked = ++loads;
  const mode = listing.filters.search_mode;
  let page;
  try {
    ({ data: page } = await call("GET", "memories", { query: query() }));
  } catch (error) {
    if (asked !== loads) return;
    box.replaceChildren();
    complain(error);
    return;
  }
  // An answer overtaken by a later question (say, the first listing still on its way when a
  // search is applied) must not replace that question's answer.
  if (asked !== loads) return;
  unsay();
  selected.clear();
  updateSelection();
  box.replaceChildren(mode in RANKED
    ? h("p", { class: "hint", id: "rank-hint" }, RANKED[mode],
        " Sorting by date does not apply; at most the best 1000 memories are ranked.")
    : "", table(page, mode in RANKED), pager(page.meta));
}

function sortHeader(label, field, ranked) {
  const active = listing.sort_by === field;
  const next = active && listing.sort_order === "desc" ? "asc" : "desc";
  return h("th", { scope: "col", "aria-sort": active && !ranked ? (listing.sort_order === "desc" ? "descending" : "ascending") : false },
    h("button", { type: "button", class: "sort", disabled: ranked, "aria-describedby": ranked && "rank-hint",
                  title: ranked && "Sorting does not apply to a ranked search",
                  "aria-label": `${label}: sort ${next === "desc" ? "newest" : "oldest"} first`,
                  onclick: async () => {
                    listing.sort_by = field;
                    listing.sort_order = next;
                    listing.page = 1;
                    await load();
                  } },
      label, active && !ranked ? (listing.sort_order === "desc" ? " ↓" : " ↑") : ""));
}

function table(page, ranked) {
  const all = h("input", { type: "checkbox", "aria-label": "Select every memory on this page",
                           onchange: (event) => {
                             for (const box of container.querySelectorAll("tbody input[type=checkbox]")) {
                               box.checked = event.target.checked;
                               box.dispatchEvent(new Event("change"));
                             }
                           } });
  const { total_count: total, page: number, total_pages: pages } = page.meta;
  const columns = ranked ? 10 : 9;
  return h("table", { class: "memories" },
    h("caption", {}, total === undefined ? "Memories" : `${total} ${total === 1 ? "memory" : "memories"}`
      + `${ranked ? " ranked" : ""}, page ${number} of ${Math.max(pages, 1)}`),
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, all),
      h("th", { scope: "col" }, "Memory"),
      ranked && h("th", { scope: "col", class: "score", "aria-sort": "descending" }, "Score"),
      h("th", { scope: "col" }, "Topics"),
      h("th", { scope: "col" }, "User"),
      h("th", { scope: "col" }, "Agent / team"),
      sortHeader("Updated", "updated_at", ranked),
      sortHeader("Created", "created_at", ranked),
      h("th", { scope: "col" }, "Actions"))),
    h("tbody", {}, page.data.length === 0
      ? h("tr", {}, h("td", { colspan: columns, class: "empty" }, "No memories match."))
      : page.data.map((memory) => row(memory, ranked))));
}

// Three decimals: hybrid scores of neighbouring ranks differ by little (each rank adds 1/(60 + r)),
// so two would show ties that are not there. The exact value is the cell's title.
function formatScore(score) {
  if (typeof score !== "number") return "—";
  const text = score.toFixed(3);
  return Number(text) === 0 ? "0.000" : text;
}

function row(memory, ranked) {
  const short = memory.memory.length > 40 ? `${memory.memory.slice(0, 40)}…` : memory.memory;
  const tr = h("tr", { "data-id": memory.memory_id },
    h("td", { "data-label": "Select" }, h("input", {
      type: "checkbox", "aria-label": `Select memory: ${short}`,
      onchange: (event) => {
        if (event.target.checked) selected.add(memory.memory_id);
        else selected.delete(memory.memory_id);
        updateSelection();
      } })),
    h("td", { class: "text", "data-label": "Memory" }, memory.memory),
    ranked && h("td", { class: "score", "data-label": "Score",
                        title: typeof memory.score === "number" && String(memory.score) }, formatScore(memory.score)),
    h("td", { "data-label": "Topics" }, topicList(memory.topics)),
    h("td", { "data-label": "User" }, memory.user_id
      ? h("a", { href: `#/users/${encodeURIComponent(memory.user_id)}` }, memory.user_id) : "—"),
    h("td", { "data-label": "Agent / team" }, [memory.agent_id, memory.team_id].filter(Boolean).join(" / ") || "—"),
    h("td", { "data-label": "Updated" }, when(memory.updated_at)),
    h("td", { "data-label": "Created" }, when(memory.created_at)),
    h("td", { class: "actions", "data-label": "Actions" },
      h("button", { type: "button", "aria-label": `Edit memory: ${short}`, onclick: () => edit(tr, memory) }, "Edit"),
      h("a", { href: `#/history/${encodeURIComponent(memory.memory_id)}`, class: "button",
               "aria-label": `History of memory: ${short}` }, "History"),
      h("button", { type: "button", class: "danger", "aria-label": `Delete memory: ${short}`,
                    onclick: () => deleteOne(memory, short) }, "Delete")));
  return tr;
}

function updateSelection() {
  const button = container.querySelector("#delete-selected");
  button.disabled = selected.size === 0;
  button.textContent = selected.size ? `Delete selected (${selected.size})` : "Delete selected";
}

function openCreate() {
  const box = container.querySelector("#create-box");
  const text = h("textarea", { name: "memory", required: true, maxlength: 5000, rows: 3 });
  const form = h("form", { class: "editor", "aria-labelledby": "create-title", onsubmit: async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    try {
      await call("POST", "memories", { body: { memory: data.get("memory"), user_id: data.get("user_id").trim() || null,
                                                topics: splitTopics(data.get("topics")) } });
    } catch (error) {
      complain(error);
      return;
    }
    box.replaceChildren();
    say("Memory created.");
    container.querySelector("#new-memory").focus();
    await load();
  } },
  h("h2", { id: "create-title" }, "New memory"),
  field("c-memory", "Memory", text),
  field("c-user", "User", h("input", { name: "user_id", autocomplete: "off", value: listing.filters.user_id })),
  field("c-topics", "Topics (comma-separated)", h("input", { name: "topics", autocomplete: "off" })),
  h("div", { class: "buttons" },
    h("button", { type: "submit" }, "Create"),
    h("button", { type: "button", onclick: () => { box.replaceChildren(); container.querySelector("#new-memory").focus(); } },
      "Cancel")));
  box.replaceChildren(form);
  text.focus();
}

/** Edit in place, conditionally on the version read here: a change made meanwhile is shown, not overwritten. */
async function edit(tr, listed) {
  let current;
  try {
    current = await call("GET", path("memories", listed.memory_id));
  } catch (error) {
    complain(error);
    return;
  }
  const cell = h("td", { colspan: tr.children.length, class: "editing" });
  const original = [...tr.children];
  const close = async (reload) => {
    if (reload) await load();
    else {
      tr.replaceChildren(...original);
      tr.querySelector("button").focus();
    }
  };
  const memory = current.data;
  const text = h("textarea", { name: "memory", required: true, maxlength: 5000, rows: 3 }, memory.memory);
  const topics = h("input", { name: "topics", autocomplete: "off", value: (memory.topics || []).join(", ") });
  const save = async (event, etag) => {
    event?.preventDefault();
    const body = { memory: text.value, topics: splitTopics(topics.value), user_id: memory.user_id };
    try {
      await call("PATCH", path("memories", memory.memory_id), { body, headers: { "If-Match": etag } });
    } catch (error) {
      if (error.status === 412) await conflict(cell, memory.memory_id, body, save, close);
      else complain(error);
      return;
    }
    say("Memory saved.");
    await close(true);
  };
  const form = h("form", { class: "editor", "aria-label": "Edit memory",
                           onsubmit: (event) => save(event, current.etag),
                           onkeydown: (event) => { if (event.key === "Escape") close(false); } },
    field(`e-memory-${memory.memory_id}`, "Memory", text),
    field(`e-topics-${memory.memory_id}`, "Topics (comma-separated)", topics),
    h("div", { class: "buttons" },
      h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", onclick: () => close(false) }, "Cancel")));
  cell.replaceChildren(form);
  tr.replaceChildren(cell);
  text.focus();
}

async function conflict(cell, memoryId, mine, save, close) {
  let theirs;
  try {
    theirs = await call("GET", path("memories", memoryId));
  } catch (error) {
    complain(error.status === 404 ? { message: "This memory was deleted meanwhile; your change was not saved." } : error);
    return;
  }
  const version = (title, memory) => h("section", { class: "version" },
    h("h3", {}, title), h("p", { class: "text" }, memory.memory), topicList(memory.topics));
  cell.replaceChildren(h("div", { class: "conflict" },
    h("p", { role: "alert" }, "Someone else changed this memory after you opened it. Nothing was overwritten."),
    h("div", { class: "versions" }, version("Yours (not saved)", mine), version("Saved now", theirs.data)),
    h("div", { class: "buttons" },
      h("button", { type: "button", onclick: () => save(null, theirs.etag) }, "Save mine over it"),
      h("button", { type: "button", onclick: () => { say("Kept the saved version."); close(true); } },
        "Keep the saved version"))));
  cell.querySelector("button").focus();
}

async function deleteOne(memory, short) {
  if (!await confirmAction("Delete this memory?", `“${short}” will be deleted. Its history stays readable.`,
                           "Delete")) return;
  try {
    await call("DELETE", path("memories", memory.memory_id));
  } catch (error) {
    complain(error);
    return;
  }
  say("Memory deleted. ", h("a", { href: `#/history/${encodeURIComponent(memory.memory_id)}` }, "See its history"));
  await load();
  container.querySelector("#new-memory").focus();
}

async function deleteSelected() {
  const ids = [...selected];
  if (!await confirmAction(`Delete ${ids.length} ${ids.length === 1 ? "memory" : "memories"}?`,
                           "The selected memories will be deleted. Their history stays readable.", "Delete")) return;
  try {
    await call("DELETE", "memories", { body: { memory_ids: ids } });
  } catch (error) {
    complain(error);
    return;
  }
  say(`${ids.length} ${ids.length === 1 ? "memory" : "memories"} deleted.`);
  await load();
  container.querySelector("#new-memory").focus();
}

function pager(meta) {
  const go = (page) => async () => {
    listing.page = page;
    await load();
    container.querySelector("caption").scrollIntoView({ block: "nearest" });
  };
  const pages = Math.max(meta.total_pages ?? 1, 1);
  return h("nav", { class: "pager", "aria-label": "Pages" },
    h("button", { type: "button", disabled: listing.page <= 1, onclick: go(listing.page - 1) }, "Previous page"),
    h("span", {}, `Page ${listing.page} of ${pages}`),
    h("button", { type: "button", disabled: listing.page >= pages, onclick: go(listing.page + 1) }, "Next page"));
}
