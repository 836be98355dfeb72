// Building the page. Data only ever becomes text nodes or attribute values, never markup.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "text") element.textContent = value;
    else element.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

const statusBox = () => document.getElementById("status");
const alertBox = () => document.getElementById("alert");

/** Tell what happened (politely announced); ``extra`` may add a link. */
let fading;
export function say(message, ...extra) {
  alertBox().replaceChildren();
  const note = h("p", {}, message, ...extra);
  statusBox().replaceChildren(note);
  // A note without a link fades; one with a link stays until the next one, to be reachable.
  clearTimeout(fading);
  if (extra.length === 0) fading = setTimeout(() => note.remove(), 6000);
}

/** Show a refusal or failure (announced at once). */
export function complain(error) {
  statusBox().replaceChildren();
  alertBox().replaceChildren(h("p", {}, error.message || String(error)));
}

/** Withdraw a refusal once a later question has been answered: it no longer describes the page. */
export function unsay() {
  alertBox().replaceChildren();
}

export function quiet() {
  statusBox().replaceChildren();
  alertBox().replaceChildren();
}

/** A modal question; resolves true when confirmed. */
export function confirmAction(title, text, action) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  const ok = document.getElementById("confirm-ok");
  ok.textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  document.getElementById("confirm-cancel").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

export function wireConfirm() {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-ok").addEventListener("click", () => dialog.close("ok"));
  document.getElementById("confirm-cancel").addEventListener("click", () => dialog.close("cancel"));
}

export function when(timestamp) {
  if (!timestamp) return h("span", { class: "muted" }, "—");
  const date = new Date(timestamp);
  return h("time", { datetime: timestamp, title: timestamp }, date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" }));
}

export function topicList(topics) {
  if (!topics || topics.length === 0) return h("span", { class: "muted" }, "none");
  return h("ul", { class: "topics" }, topics.map((topic) => h("li", {}, topic)));
}

export const splitTopics = (text) => text.split(",").map((t) => t.trim()).filter(Boolean);

/** A labelled field: [label, input]. */
export function field(id, label, input) {
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input);
}

/** Put the keyboard where the new view starts, so a screen reader reads it next. */
export function focusHeading(container) {
  const heading = container.querySelector("h1");
  if (heading) {
    heading.tabIndex = -1;
    heading.focus();
  }
}
