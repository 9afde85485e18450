// One queue's page: its figures from GET /queues/NAME, its messages a page at a time from
// GET /queues/NAME/messages, and for admins purge, redrive and delete through the API.
import * as ui from "./common.js";
import { pretty } from "./pretty.js";

const FOLD_LINES = 14;
const FOLD_CHARS = 1500;
const name = document.body.dataset.queue;
const pageSize = Number(document.body.dataset.pageSize);
const history = new ui.History();
const unfolded = new Set(); // ids whose long body the reader opened; kept across refreshes
const view = { state: "available", offset: 0, total: 0, shown: null };

function setText(id, text) {
  document.getElementById(id).textContent = text;
}

function showInfo(info) {
  history.add(info);
  setText("size", ui.count(info.size));
  setText("max_messages", ui.count(info.max_messages));
  ui.showDepth(document.getElementById("fill"), info);
  setText("in_flight", ui.count(info.in_flight));
  const age = ui.ageOf(info.oldest_enqueued_at);
  setText("oldest", age === null ? "—" : ui.duration(age));
  const rates = history.rates();
  setText("push_rate", ui.rate(rates.push));
  setText("pull_rate", ui.rate(rates.pull));
  const held = document.getElementById("dead_letters").dataset.held === "1";
  setText("dead_letters", ui.count(held ? info.size : info.dead_lettered_total));
  for (const key of ["pushed_total", "pulled_total", "acked_total", "dead_lettered_total", "waiting_pulls"]) {
    if (key in info) setText(key, ui.count(info[key]));
  }
  ui.showMarks(document.getElementById("marks"), ui.marksFor(info, history));
  ui.drawChart(document.getElementById("chart"), history, info.max_messages);
  setText("tab-available", `Available · ${ui.count(info.size - info.in_flight)}`);
  setText("tab-leased", `Leased · ${ui.count(info.in_flight)}`);
}

function describeDeadLetter(dead) {
  const reason = dead.reason === "lease_expired" ? "its lease expired" : dead.reason || "no reason given";
  const deliveries = dead.deliveries === 1 ? "1 delivery" : `${ui.count(dead.deliveries)} deliveries`;
  const when = ui.duration(ui.ageOf(dead.dead_lettered_at));
  return `Dead letter from ${dead.source_queue || "?"} after ${deliveries} (${reason}), ${when} ago`;
}

function foldBody(item, message) {
  const body = ui.field(item, "body");
  const text = pretty(message.message);
  body.textContent = text;
  const lines = text.split("\n").length;
  if (lines <= FOLD_LINES && text.length <= FOLD_CHARS) return;
  const button = ui.field(item, "fold");
  const show = (open) => {
    body.classList.toggle("folded", !open);
    button.textContent = open ? "Fold" : `Show all ${ui.count(lines)} lines`;
    if (open) unfolded.add(message.id);
    else unfolded.delete(message.id);
  };
  button.hidden = false;
  button.addEventListener("click", () => show(body.classList.contains("folded")));
  show(unfolded.has(message.id));
}

function messageItem(message, position) {
  const item = document.getElementById("message-template").content.firstElementChild.cloneNode(true);
  ui.field(item, "pos").textContent = `#${position}`;
  ui.field(item, "id").textContent = message.id;
  const when = ui.field(item, "when");
  when.textContent = `enqueued ${ui.duration(ui.ageOf(message.enqueued_at))} ago`;
  when.title = message.enqueued_at;
  const deliveries = ui.field(item, "deliveries");
  deliveries.textContent = message.deliveries ? `delivered ${message.deliveries}×` : "not delivered yet";
  if (message.lease_expires_at) {
    const expires = ui.field(item, "expires");
    expires.dataset.at = message.lease_expires_at;
    expires.hidden = false;
  }
  if (message.dead_letter) {
    const dead = ui.field(item, "dead");
    dead.textContent = describeDeadLetter(message.dead_letter);
    dead.hidden = false;
  }
  if (message.last_nack_reason && message.last_nack_reason !== message.dead_letter?.reason) {
    const nack = ui.field(item, "nack");
    nack.textContent = `Last nack: ${message.last_nack_reason}`;
    nack.hidden = false;
  }
  foldBody(item, message);
  return item;
}

function tickLeases() {
  for (const element of document.querySelectorAll("[data-f=expires][data-at]")) {
    const left = (Date.parse(element.dataset.at) - ui.serverNow()) / 1000;
    element.textContent = left > 0 ? `lease ends in ${ui.duration(left)}` : "lease ended";
  }
}

function showPager() {
  const last = Math.max(0, Math.ceil(view.total / pageSize) - 1) * pageSize;
  const shown = view.shown ?? 0;
  setText(
    "range",
    view.total ? `${ui.count(view.offset + 1)}–${ui.count(view.offset + shown)} of ${ui.count(view.total)}` : "none",
  );
  document.getElementById("first").disabled = document.getElementById("prev").disabled = view.offset === 0;
  document.getElementById("next").disabled = document.getElementById("last").disabled = view.offset >= last;
}

let shownReply = "";

async function loadMessages(force = false) {
  const leased = view.state === "leased" ? "&state=leased" : "";
  const path = ui.queuePath(name, `/messages?limit=${pageSize}&offset=${view.offset}${leased}`);
  const reply = await ui.api("GET", path);
  if (reply.messages.length === 0 && view.offset > 0 && reply.total > 0) {
    view.offset = Math.floor((reply.total - 1) / pageSize) * pageSize; // the page emptied under us
    return loadMessages(true);
  }
  view.total = reply.total;
  view.shown = reply.messages.length;
  const text = JSON.stringify(reply);
  if (force || text !== shownReply) {
    shownReply = text;
    const items = reply.messages.map((m, i) => messageItem(m, view.offset + i + 1));
    document.getElementById("messages").replaceChildren(...items);
    const empty = document.getElementById("messages-empty");
    empty.textContent = view.state === "leased" ? "No message is leased right now." : "No message is waiting.";
    empty.hidden = items.length > 0;
    tickLeases();
  }
  showPager();
}

async function refresh() {
  try {
    showInfo(await ui.api("GET", ui.queuePath(name)));
  } catch (error) {
    if (error instanceof ui.ApiError && error.code === "queue_not_found") {
      document.getElementById("gone").hidden = false;
      return;
    }
    throw error;
  }
  await loadMessages();
}

function goTo(offset) {
  view.offset = Math.max(0, offset);
  loadMessages(true).catch((error) => ui.toast(error.message, "error"));
}

function setUpBrowsing() {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => {
      view.state = tab.dataset.state;
      for (const other of document.querySelectorAll(".tab")) other.setAttribute("aria-selected", other === tab);
      goTo(0);
    });
  }
  document.getElementById("first").addEventListener("click", () => goTo(0));
  document.getElementById("prev").addEventListener("click", () => goTo(view.offset - pageSize));
  document.getElementById("next").addEventListener("click", () => goTo(view.offset + pageSize));
  document.getElementById("last").addEventListener("click", () =>
    goTo(Math.floor(Math.max(view.total - 1, 0) / pageSize) * pageSize),
  );
  document.getElementById("reload").addEventListener("click", () => goTo(view.offset));
  setInterval(tickLeases, 1000);
}

/** Run an admin action; its reply's summary in a toast, or the API's error message. */
async function act(call, summary) {
  try {
    ui.toast(summary(await call()));
    await refresh();
  } catch (error) {
    ui.toast(error.message, "error");
  }
}

function setUpAdmin() {
  document.getElementById("purge").addEventListener("click", async () => {
    const held = document.getElementById("size").textContent;
    if (!(await ui.confirmAction(`Purge ${name}?`, `All ${held} messages go, leased ones too.`, "Purge"))) return;
    await act(
      () => ui.api("POST", ui.queuePath(name, "/purge")),
      (reply) => `Purged ${ui.count(reply.purged_messages)} messages`,
    );
  });
  document.getElementById("redrive-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(event.target));
    const body = {};
    if (values.max) body.max = Number(values.max);
    if (values.to) body.to = values.to;
    await act(
      () => ui.api("POST", ui.queuePath(name, "/redrive"), body),
      (reply) => `Moved ${ui.count(reply.moved)} dead letters; ${ui.count(reply.remaining)} remain`,
    );
  });
  document.getElementById("delete").addEventListener("click", async () => {
    const text = `The queue and its ${document.getElementById("size").textContent} messages go for good.`;
    if (!(await ui.confirmAction(`Delete ${name}?`, text, "Delete"))) return;
    try {
      await ui.api("DELETE", ui.queuePath(name));
      window.location.assign("/ui");
    } catch (error) {
      ui.toast(error.message, "error");
    }
  });
}

setUpBrowsing();
if (document.getElementById("admin")) setUpAdmin();
ui.keepPolling(refresh);
