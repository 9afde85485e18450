// The queue list: refreshes every row from GET /queues; admins create queues through POST /queues.
import * as ui from "./common.js";

const tbody = document.getElementById("queue-rows");
const template = document.getElementById("row-template");
const histories = new Map();

function rowFor(name) {
  for (const row of tbody.rows) if (row.dataset.name === name) return row;
  const row = template.content.firstElementChild.cloneNode(true);
  row.dataset.name = name;
  const link = ui.field(row, "link");
  link.textContent = name;
  link.href = `/ui/queues/${encodeURIComponent(name)}`;
  return row;
}

function deadLetters(info, sources) {
  if (sources.has(info.name)) return `holds ${ui.count(info.size)}`;
  if (info.dead_letter_queue) return `${ui.count(info.dead_lettered_total)} → ${info.dead_letter_queue}`;
  return "—";
}

function update(row, info, history, sources) {
  ui.field(row, "size").textContent = ui.count(info.size);
  ui.field(row, "max_messages").textContent = ui.count(info.max_messages);
  ui.field(row, "schema").textContent = info.schema || "";
  ui.showDepth(ui.field(row, "fill"), info);
  ui.field(row, "in_flight").textContent = ui.count(info.in_flight);
  const age = ui.ageOf(info.oldest_enqueued_at);
  ui.field(row, "oldest").textContent = age === null ? "—" : ui.duration(age);
  ui.field(row, "dead_letters").textContent = deadLetters(info, sources);
  const rates = history.rates();
  ui.field(row, "push_rate").textContent = ui.rate(rates.push);
  ui.field(row, "pull_rate").textContent = ui.rate(rates.pull);
  const marks = ui.marksFor(info, history);
  ui.showMarks(ui.field(row, "marks"), marks);
  row.classList.toggle("attention", marks.length > 0);
  ui.drawChart(ui.field(row, "chart"), history, info.max_messages);
  return { marks: marks.length, ...rates };
}

function applyFilter() {
  const text = document.getElementById("filter").value.trim().toLowerCase();
  let shown = 0;
  for (const row of tbody.rows) {
    row.hidden = text !== "" && !row.dataset.name.toLowerCase().includes(text);
    shown += row.hidden ? 0 : 1;
  }
  document.getElementById("empty").hidden = tbody.rows.length > 0;
  document.getElementById("no-match").hidden = tbody.rows.length === 0 || shown > 0;
}

function showTotals(infos, results) {
  const sum = (values) => values.reduce((a, b) => a + b, 0);
  const known = (key) => results.map((r) => r[key]).filter((v) => v !== null);
  document.getElementById("total-queues").textContent = ui.count(infos.length);
  document.getElementById("total-size").textContent = ui.count(sum(infos.map((i) => i.size)));
  document.getElementById("total-in-flight").textContent = ui.count(sum(infos.map((i) => i.in_flight)));
  document.getElementById("total-push").textContent = known("push").length ? ui.rate(sum(known("push"))) : "—";
  document.getElementById("total-pull").textContent = known("pull").length ? ui.rate(sum(known("pull"))) : "—";
  const attention = results.filter((r) => r.marks > 0).length;
  const element = document.getElementById("total-attention");
  element.textContent = ui.count(attention);
  element.classList.toggle("bad", attention > 0);
}

async function refresh() {
  const { queues: infos } = await ui.api("GET", "/queues");
  const sources = new Set(infos.map((i) => i.dead_letter_queue).filter(Boolean));
  const rows = [];
  const results = [];
  for (const info of infos) {
    if (!histories.has(info.name)) histories.set(info.name, new ui.History());
    const history = histories.get(info.name);
    history.add(info);
    const row = rowFor(info.name);
    results.push(update(row, info, history, sources));
    rows.push(row);
  }
  const names = new Set(infos.map((i) => i.name));
  for (const name of histories.keys()) if (!names.has(name)) histories.delete(name);
  tbody.replaceChildren(...rows); // the API's order (by name); gone queues drop out
  showTotals(infos, results);
  applyFilter();
  offerDeadLetterQueues(infos);
}

/** The create form offers as dead-letter queue every queue that has none of its own (no chains). */
function offerDeadLetterQueues(infos) {
  const select = document.getElementById("create-dlq");
  if (!select || select.closest("dialog").open) return;
  const names = infos.filter((i) => !i.dead_letter_queue).map((i) => i.name);
  const options = names.map((name) => Object.assign(document.createElement("option"), { textContent: name }));
  select.replaceChildren(select.options[0], ...options);
}

function setUpCreate() {
  const dialog = document.getElementById("create-dialog");
  const form = document.getElementById("create-form");
  const error = document.getElementById("create-error");
  document.getElementById("new-queue").addEventListener("click", () => {
    form.reset();
    error.hidden = true;
    dialog.showModal();
  });
  document.getElementById("create-cancel").addEventListener("click", () => dialog.close());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = Object.fromEntries(new FormData(form));
    const body = { name: values.name };
    if (values.max_messages) body.max_messages = Number(values.max_messages);
    if (values.schema) body.schema = values.schema;
    if (values.dead_letter_queue) {
      body.dead_letter_queue = values.dead_letter_queue;
      body.max_deliveries = Number(values.max_deliveries || 5);
    }
    try {
      await ui.api("POST", "/queues", body);
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
      return;
    }
    dialog.close();
    ui.toast(`Queue ${body.name} created`);
    await refresh();
  });
}

document.getElementById("filter").addEventListener("input", applyFilter);
if (document.getElementById("create-dialog")) setUpCreate();
ui.keepPolling(refresh);
