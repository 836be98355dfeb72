// Users, topics and a memory's history.

import { call, path } from "./api.js";
import { complain, field, h, say, topicList, when } from "./dom.js";
import { showMemories } from "./memories.js";

const EVENTS = { create: "Created", update: "Updated", delete: "Deleted" };
const TOPICS_PER_PAGE = 50;

export async function historyView(view, memoryId) {
  view.replaceChildren(h("h1", {}, "History of a memory"), h("p", { class: "muted" }, memoryId));
  const { data: versions } = await call("GET", path("memories", memoryId, "history"));
  view.append(h("ol", { class: "timeline", "aria-label": "Versions, oldest first" }, versions.map((version) =>
    h("li", { class: `event-${version.event}` },
      h("h2", {}, `Version ${version.version}: ${EVENTS[version.event] || version.event}`),
      h("p", { class: "who" }, when(version.changed_at),
        ` · user ${version.user_id ?? "—"}`,
        version.agent_id ? ` · agent ${version.agent_id}` : "",
        version.team_id ? ` · team ${version.team_id}` : ""),
      h("p", { class: "text" }, version.memory),
      topicList(version.topics)))),
  h("p", {}, h("a", { href: "#/memories" }, "Back to the memories")));
}

/** How many memories carry ``topic`` (of ``userId`` when given): the list's exact total. */
async function countOf(topic, userId) {
  const { data } = await call("GET", "memories", { query: { topics: [topic], user_id: userId, limit: 1 } });
  return data.meta.total_count;
}

function topicsTable(topics, userId, caption) {
  const rows = topics.map((topic) => {
    const count = h("td", { class: "count" }, "…");
    countOf(topic, userId).then((n) => { count.textContent = n; }, () => { count.textContent = "?"; });
    return h("tr", {},
      h("th", { scope: "row" }, topic),
      count,
      h("td", {}, h("button", { type: "button", "aria-label": `Show memories with topic ${topic}`,
                                onclick: () => showMemories({ topics: topic, user_id: userId || "" }) },
        "Show memories")));
  });
  return h("table", { class: "topics-table" }, h("caption", {}, caption),
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Topic"), h("th", { scope: "col" }, "Memories"),
                   h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: 3, class: "empty" }, "No topics."))));
}

export async function topicsView(view, page = 1) {
  const { data: topics } = await call("GET", "memory_topics");
  const pages = Math.max(Math.ceil(topics.length / TOPICS_PER_PAGE), 1);
  const shown = topics.slice((page - 1) * TOPICS_PER_PAGE, page * TOPICS_PER_PAGE);
  view.replaceChildren(h("h1", {}, "Topics"),
    topicsTable(shown, null, `${topics.length} topics, page ${page} of ${pages}`),
    h("nav", { class: "pager", "aria-label": "Pages of topics" },
      h("button", { type: "button", disabled: page <= 1, onclick: () => topicsView(view, page - 1) }, "Previous page"),
      h("button", { type: "button", disabled: page >= pages, onclick: () => topicsView(view, page + 1) }, "Next page")));
}

export async function usersView(view, page = 1) {
  const { data } = await call("GET", "user_memory_stats", { query: { page, limit: 20 } });
  const go = h("input", { name: "user_id", autocomplete: "off", required: true });
  view.replaceChildren(h("h1", {}, "Users"),
    h("form", { class: "filters", "aria-label": "Open a user", onsubmit: (event) => {
      event.preventDefault();
      location.hash = `#/users/${encodeURIComponent(go.value.trim())}`;
    } }, field("u-open", "User id", go), h("div", { class: "field buttons" }, h("button", { type: "submit" }, "Open"))),
    h("table", {},
      h("caption", {}, `${data.meta.total_count} users with memories, page ${page} of ${Math.max(data.meta.total_pages, 1)}`),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "User"), h("th", { scope: "col" }, "Memories"),
                     h("th", { scope: "col" }, "Last change"))),
      h("tbody", {}, data.data.map((user) => h("tr", {},
        h("th", { scope: "row" }, h("a", { href: `#/users/${encodeURIComponent(user.user_id)}` }, user.user_id)),
        h("td", { class: "count" }, user.total_memories),
        h("td", {}, when(user.last_memory_updated_at)))))),
    h("nav", { class: "pager", "aria-label": "Pages of users" },
      h("button", { type: "button", disabled: page <= 1, onclick: () => usersView(view, page - 1) }, "Previous page"),
      h("button", { type: "button", disabled: page >= data.meta.total_pages, onclick: () => usersView(view, page + 1) },
        "Next page")));
}

export async function userView(view, userId) {
  const [{ data: stats }, { data: topics }] = await Promise.all([
    call("GET", "user_memory_stats", { query: { user_id: userId } }),
    call("GET", "memory_topics", { query: { user_id: userId } }),
  ]);
  // A user's token is answered with its own entry whatever it asks: then this user's are not visible.
  const hidden = stats.data.length > 0 && stats.data[0].user_id !== userId;
  const entry = hidden ? null : stats.data[0];
  const typed = h("input", { autocomplete: "off", spellcheck: "false" });
  const erase = h("button", { type: "submit", class: "danger", disabled: true }, "Erase this user");
  typed.addEventListener("input", () => { erase.disabled = typed.value !== userId; });
  view.replaceChildren(
    h("h1", {}, "User ", h("span", { class: "id" }, userId)),
    h("dl", { class: "stats" },
      h("dt", {}, "Memories"), h("dd", {}, hidden ? "Not visible to this token" : entry ? entry.total_memories : 0),
      h("dt", {}, "Last change"), h("dd", {}, when(entry?.last_memory_updated_at))),
    h("p", {}, h("button", { type: "button", onclick: () => showMemories({ user_id: userId }) }, "Show their memories")),
    topicsTable(hidden ? [] : topics, userId, "Their topics"),
    h("form", { class: "erase", "aria-labelledby": "erase-title", onsubmit: async (event) => {
      event.preventDefault();
      if (typed.value !== userId) return;
      try {
        const { data } = await call("DELETE", path("users", userId, "memories"));
        await userView(view, userId);
        say(`Erased ${userId}: ${data.deleted} ${data.deleted === 1 ? "memory" : "memories"} deleted, with their history.`);
        view.querySelector("h1").focus();
      } catch (error) {
        complain(error);
      }
    } },
      h("h2", { id: "erase-title" }, "Erase this user"),
      h("p", {}, "Deletes every memory of this user, their history and statistics. This cannot be undone."),
      field("erase-confirm", `Type the user id (${userId}) to confirm`, typed),
      erase));
}
