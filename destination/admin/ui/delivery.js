// The Delivery view: events over time by what happened to them, the queue now, one event's journey,
// and past imports. Uses app.js's api, row, when, say, svgText and SVG. Drawn as inline SVG, no library.
"use strict";

const delivery = { window: "hour" };
const KIND_LABELS = { received: "received", accepted: "accepted", filtered: "filtered", refused: "refused",
  delivered: "delivered", retried: "retried", dead_lettered: "dead-lettered" };

async function loadDelivery() {
  const [series, queue, imports] = await Promise.all(
    [`/delivery?window=${delivery.window}`, "/delivery/queue", "/imports"].map((path) => api("GET", path)));
  showQueue(queue.data);
  drawDelivery(series.data);
  showReasons(series.data);
  $("import-rows").replaceChildren(...imports.data.imports.map((i) => row(
    [String(i.id), i.name, i.who, when(i.started_ms), i.status, String(i.position),
      Object.entries(i.counts).map(([k, v]) => `${k}: ${typeof v === "object" ? JSON.stringify(v) : v}`).join(", ")], [])));
}

function showQueue(q) {
  const parts = [`${q.depth} queued`, `oldest ${q.oldest_pending_age_s} s old`, `${q.dead_letters} dead letters`,
    `${q.sending.in_flight} request(s) in flight at most in the last 5 s, from ${q.sending.processes} delivering process(es)`,
    `${q.claimed.events} events claimed`];
  if (q.paused_until_ms) parts.push(`paused until ${when(q.paused_until_ms)}`);
  parts.push(q.halt ? `HALTED since ${when(q.halt.since_ms)}: ${q.halt.reason}` : "not halted");
  say("delivery-queue", parts.join(" · "), q.halt ? "error" : "");
}

// One line per kind over the window's buckets, a shared y scale, the legend carrying each total.
function drawDelivery(data) {
  const chart = $("delivery-chart");
  const width = 900, height = 260, left = 50, bottom = 24, top = 10;
  const n = data.starts_ms.length;
  const most = Math.max(1, ...data.kinds.flatMap((k) => data.series[k]));
  const x = (i) => left + (i * (width - left - 10)) / Math.max(1, n - 1);
  const y = (v) => top + (height - top - bottom) * (1 - v / most);
  chart.setAttribute("width", width);
  chart.setAttribute("height", height);
  chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
  chart.replaceChildren();
  const axis = document.createElementNS(SVG, "path");
  axis.setAttribute("class", "axis");
  axis.setAttribute("d", `M${left},${top} V${height - bottom} H${width - 10}`);
  chart.appendChild(axis);
  chart.appendChild(svgText(4, top + 10, String(most)));
  chart.appendChild(svgText(4, height - bottom, "0"));
  chart.appendChild(svgText(left, height - 6, when(data.starts_ms[0])));
  chart.appendChild(svgText(width - 160, height - 6, when(data.starts_ms[n - 1])));
  for (const kind of data.kinds) {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("class", `k-${kind}`);
    line.dataset.kind = kind;
    line.dataset.total = String(data.totals[kind]);
    line.setAttribute("points", data.series[kind].map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" "));
    chart.appendChild(line);
  }
  $("delivery-legend").replaceChildren(...data.kinds.map((kind) => {
    const item = document.createElement("li");
    item.className = `k-${kind}`;
    item.dataset.kind = kind;
    item.dataset.total = String(data.totals[kind]);
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    item.append(swatch, `${KIND_LABELS[kind]}: ${data.totals[kind]}`);
    return item;
  }));
}

function showReasons(data) {
  const rows = [];
  for (const kind of ["refused", "retried", "dead_lettered"]) {
    for (const r of data.reasons[kind]) rows.push(row([KIND_LABELS[kind], r.reason, String(r.count)], []));
  }
  $("delivery-reasons").replaceChildren(...rows);
}

async function searchJourney() {
  const key = $("journey-key").value, value = $("journey-value").value.trim();
  const answer = await api("GET", `/delivery/journey?${key}=${encodeURIComponent(value)}`);
  if (!answer.ok) return say("journey-status", answer.data.message || "search failed", "error");
  say("journey-status", answer.data.count ? `${answer.data.count} usage event(s) found` :
    "nothing found: the delivery log keeps DELIVERY_LOG_DAYS of attempts");
  $("journey").replaceChildren(...answer.data.events.map(showJourney));
}

function showJourney(event) {
  const box = document.createElement("div");
  box.className = "journey";
  box.dataset.transactionId = event.transaction_id || "";
  box.dataset.fate = event.fate;
  const title = document.createElement("h4");
  title.textContent = `${event.transaction_id || "(refused before mapping)"} · customer ${event.customer_id || "?"} · ${event.fate}`;
  const table = document.createElement("table");
  const head = document.createElement("thead");
  head.appendChild(row(["When", "Step", "Metronome's answer / detail"], []));
  const body = document.createElement("tbody");
  body.append(...event.steps.map((s) => {
    const tr = row([when(s.at_ms), stepName(s), stepDetail(s)], []);
    tr.dataset.step = s.step;
    if (s.status !== undefined) tr.dataset.status = String(s.status);
    return tr;
  }));
  table.append(head, body);
  const payload = document.createElement("pre");
  payload.textContent = event.usage_event ? JSON.stringify(event.usage_event, null, 2) : "";
  box.append(title, table, payload);
  return box;
}

function stepName(s) {
  if (s.step === "received") return `received, mapped by ${s.mapping_version}`;
  if (s.step === "attempt") return `attempt ${s.attempt}: ${s.outcome}`;
  if (s.step === "queued") return `queued, next try (${s.attempts} attempt(s) so far)`;
  return `dead-lettered at ${s.stage}`;
}

function stepDetail(s) {
  if (s.step === "attempt") return `${s.status === null ? "no answer" : "HTTP " + s.status} ${s.answer}`;
  if (s.step === "queued") return s.last_error || "";
  if (s.step === "dead_lettered") return `${s.code}: ${s.reason}`;
  return "";
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("#delivery-windows [data-window]").forEach((b) => b.addEventListener("click", () => {
    delivery.window = b.dataset.window;
    document.querySelectorAll("#delivery-windows [data-window]").forEach((o) => o.classList.toggle("active", o === b));
    loadDelivery();
  }));
  $("delivery-reload").addEventListener("click", loadDelivery);
  $("journey-form").addEventListener("submit", (e) => {
    e.preventDefault();
    searchJourney();
  });
});
