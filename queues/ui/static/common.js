// What both console pages share: calls to the JSON API, the figures kept while the page is open,
// the marks, the depth chart, and the little dialogs. Data only ever reaches the page as text.

export const POLL_MS = 3000;
const RATE_WINDOW_MS = 60_000;
const CHART_WINDOW_MS = 30 * 60_000;
const OLD_AFTER_S = 300;
const NEARLY_FULL = 0.9;
const SVG = "http://www.w3.org/2000/svg";

let clockSkewMs = 0; // the server's clock minus the browser's, from each reply's Date header

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** A number as the server wrote it, where a JavaScript number would change it (big integers, long
 * decimals): messages are shown exactly as the service holds them. */
export class ExactNumber {
  constructor(source) {
    this.source = source;
  }

  toJSON() {
    return this.source;
  }
}

/** JSON.parse keeping numbers exact (in browsers that give a reviver the source text); null if not JSON. */
function parseExactly(text) {
  const keep = (key, value, context) =>
    typeof value === "number" && context?.source !== undefined && String(value) !== context.source
      ? new ExactNumber(context.source)
      : value;
  try {
    return JSON.parse(text, keep);
  } catch {
    return null;
  }
}

/** Call the API on this origin; the JSON reply (null for 204), or an ApiError with its message. */
export async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const date = Date.parse(response.headers.get("Date"));
  if (!Number.isNaN(date)) clockSkewMs = date - Date.now();
  if (response.status === 204) return null;
  const data = parseExactly(await response.text());
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "error", error.message || response.statusText);
  }
  return data;
}

export function queuePath(name, suffix = "") {
  return `/queues/${encodeURIComponent(name)}${suffix}`;
}

export function serverNow() {
  return Date.now() + clockSkewMs;
}

/** "42 s", "7 min 5 s", "25 min", "3 h 5 min", "2 d 4 h". */
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

export function ageOf(isoTime) {
  return isoTime ? (serverNow() - Date.parse(isoTime)) / 1000 : null;
}

export function count(n) {
  return n === null || n === undefined ? "—" : Number(n).toLocaleString("en");
}

export function rate(perMinute) {
  if (perMinute === null) return "—";
  if (perMinute === 0) return "0";
  return perMinute >= 10 ? Math.round(perMinute).toLocaleString("en") : perMinute.toFixed(1);
}

/** One queue's QueueInfo as polled, kept for the last half hour: rates, trend and chart. */
export class History {
  constructor() {
    this.samples = [];
  }

  add(info) {
    const t = Date.now();
    this.samples.push({ t, size: info.size, pushed: info.pushed_total, pulled: info.pulled_total });
    while (this.samples.length > 2 && t - this.samples[0].t > CHART_WINDOW_MS) this.samples.shift();
  }

  _windowStart() {
    const last = this.samples[this.samples.length - 1];
    return this.samples.find((s) => last.t - s.t <= RATE_WINDOW_MS);
  }

  /** Per minute over the last minute (or since the page opened); null until two samples. */
  rates() {
    if (this.samples.length < 2) return { push: null, pull: null };
    const first = this._windowStart();
    const last = this.samples[this.samples.length - 1];
    const minutes = (last.t - first.t) / 60_000;
    if (minutes <= 0) return { push: null, pull: null };
    // A counter that went down (a queue deleted and created again) restarts from zero.
    const pushed = last.pushed >= first.pushed ? last.pushed - first.pushed : last.pushed;
    const pulled = last.pulled >= first.pulled ? last.pulled - first.pulled : last.pulled;
    return { push: pushed / minutes, pull: pulled / minutes };
  }

  growing() {
    if (this.samples.length < 3) return false;
    const { push, pull } = this.rates();
    return this.samples[this.samples.length - 1].size > this._windowStart().size && push > pull;
  }
}

/** The marks a queue earns: [class, label, explanation]. */
export function marksFor(info, history) {
  const marks = [];
  if (info.size >= info.max_messages) {
    marks.push(["full", "full", "at its maximum: pushes are refused"]);
  } else if (info.size >= NEARLY_FULL * info.max_messages) {
    marks.push(["nearly", "nearly full", "90 % or more of its maximum"]);
  }
  if (history.growing()) marks.push(["growing", "growing", "deeper than a minute ago"]);
  const age = ageOf(info.oldest_enqueued_at);
  if (age !== null && age > OLD_AFTER_S) marks.push(["old", "old", `oldest message waiting ${duration(age)}`]);
  return marks;
}

export function showMarks(element, marks) {
  element.replaceChildren(
    ...marks.map(([kind, label, title]) => {
      const mark = document.createElement("span");
      mark.className = `mark ${kind}`;
      mark.textContent = label;
      mark.title = title;
      return mark;
    }),
  );
}

/** A queue's depth on a <progress>, coloured when nearly full or full. */
export function showDepth(progress, info) {
  progress.max = info.max_messages;
  progress.value = info.size;
  const full = info.size >= info.max_messages;
  progress.className = full ? "full" : info.size >= NEARLY_FULL * info.max_messages ? "high" : "";
}

/** Draw history's depths into an svg with a 120 x 28 viewBox, from the lowest to the highest seen. */
export function drawChart(svg, history, maxMessages) {
  const samples = history.samples;
  if (samples.length < 2) return;
  const t0 = samples[0].t;
  const span = Math.max(samples[samples.length - 1].t - t0, 1);
  const sizes = samples.map((s) => s.size);
  const [low, high] = [Math.min(...sizes), Math.max(...sizes)];
  // A depth that did not change is a level line across the middle.
  const y = (size) => (high === low ? 14 : 25 - ((size - low) / (high - low)) * 22);
  const points = samples.map((s) => `${(((s.t - t0) / span) * 120).toFixed(1)},${y(s.size).toFixed(1)}`);
  const area = document.createElementNS(SVG, "polygon");
  area.setAttribute("points", `0,28 ${points.join(" ")} 120,28`);
  area.setAttribute("class", "area");
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.join(" "));
  line.setAttribute("class", high >= maxMessages ? "line full" : "line");
  const title = document.createElementNS(SVG, "title");
  title.textContent = `depth over the last ${duration(span / 1000)}: ${count(low)} to ${count(high)}`;
  svg.replaceChildren(title, area, line);
}

/** Run poll now and every POLL_MS after it settles; the header's dot says whether it works. */
export function keepPolling(poll) {
  const live = document.getElementById("live");
  const text = document.getElementById("live-text");
  const tick = async () => {
    try {
      await poll();
      live.dataset.state = "ok";
      text.textContent = `live · ${new Date().toLocaleTimeString("en-GB")}`;
    } catch (error) {
      live.dataset.state = "error";
      text.textContent = error instanceof ApiError ? `error: ${error.message}` : "connection lost";
    }
    setTimeout(tick, POLL_MS);
  };
  tick();
}

/** Ask before a destructive action, in the page's own dialog; resolves to true to go ahead. */
export function confirmAction(title, text, action) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = action;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}

let toastTimer;

export function toast(text, kind = "ok") {
  const element = document.getElementById("toast");
  element.textContent = text;
  element.dataset.kind = kind;
  element.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (element.hidden = true), kind === "error" ? 8000 : 4000);
}

/** The element inside root marked data-f="name". */
export function field(root, name) {
  return root.querySelector(`[data-f="${name}"]`);
}
