// The admin page: every read and write goes through the /admin JSON API with the admin token.
// Event and mapping data is only ever written with textContent, never parsed as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: sessionStorage.getItem("adminToken") || "", live: null, editing: null, timer: null };
const MARKER = "\u0000editing\u0000";

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + state.token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch("/admin" + path, { method, headers, body });
  const isJson = (response.headers.get("Content-Type") || "").includes("json");
  const data = isJson ? parseExact(await response.text()) : await response.text();
  if (response.status === 401) {
    signOut(data.message || "the token was refused");
    throw new Error("unauthorized");
  }
  return { status: response.status, ok: response.ok, data };
}

// Numbers exactly as the server wrote them. JSON.parse rounds a number a double cannot hold (an
// id past 2^53, a decimal of more than 15 digits), so the page would show, preview and save a
// value nobody sent: a mapping's operand would stop matching. Where the browser gives a number's
// source text, such a number is kept as raw JSON, which JSON.stringify writes back verbatim.
// Such a number: more than 15 significant digits, or a 3-digit exponent (as payload/exact.py judges a literal).
function parseExact(text) {
  if (typeof JSON.rawJSON !== "function") return JSON.parse(text);  // an older browser: as before
  return JSON.parse(text, (key, value, context) =>
    typeof value === "number" && context && context.source && !fitsDouble(context.source) ? JSON.rawJSON(context.source) : value);
}

function fitsDouble(literal) {
  const [mantissa, exponent = "0"] = literal.split(/[eE]/);
  const significant = mantissa.replace(/[-.]/g, "").replace(/^0+/, "");
  return significant.length <= 15 && Math.abs(Number(exponent)) < 100;
}

function row(cells, actions) {
  const tr = document.createElement("tr");
  for (const text of cells) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }
  const td = document.createElement("td");
  for (const [label, handler, name] of actions) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    if (name) button.dataset.action = name;
    button.addEventListener("click", handler);
    td.appendChild(button);
  }
  tr.appendChild(td);
  return tr;
}

function when(ms) {
  return ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) + "Z" : "";
}

function say(id, text, kind) {
  $(id).textContent = text;
  $(id).className = kind || "";
}

// -- sign in ----------------------------------------------------------------------------------------

async function signIn(token) {
  state.token = token;
  const answer = await api("GET", "/mappings").catch(() => null);
  if (!answer || !answer.ok) return;
  sessionStorage.setItem("adminToken", token);
  $("login").hidden = true;
  $("tabs").hidden = false;
  showLive(answer.data);
  showTab("mappings");
}

function signOut(message) {
  sessionStorage.removeItem("adminToken");
  state.token = "";
  document.querySelectorAll(".tab").forEach((tab) => { tab.hidden = true; });
  $("tabs").hidden = true;
  $("login").hidden = false;
  say("login-error", message || "", "error");
}

function showTab(name) {
  document.querySelectorAll(".tab").forEach((tab) => { tab.hidden = tab.id !== name; });
  document.querySelectorAll("#tabs [data-tab]").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  if (name === "versions") loadVersions();
  if (name === "dead-letters") loadDeadLetters();
  if (name === "billing") loadBilling();
  if (name === "delivery") loadDelivery();  // delivery.js
}

// -- mappings ---------------------------------------------------------------------------------------

async function loadLive() {
  const answer = await api("GET", "/mappings");
  if (answer.ok) showLive(answer.data);
}

function showLive(live) {
  state.live = live;
  $("live-version").textContent = `live mappings ${live.version} · ${live.author} · ${when(live.created_at_ms)}`;
  const rows = $("mapping-rows");
  rows.replaceChildren();
  live.document.mappings.forEach((mapping, index) => {
    const tr = row([mapping.name, mapping.enabled === false ? "no" : "yes", JSON.stringify(mapping.trigger)],
                   [["Edit", () => openEditor(index), "edit"]]);
    tr.dataset.name = mapping.name;
    rows.appendChild(tr);
  });
}

function openEditor(index) {
  const mappings = state.live.document.mappings;
  const isNew = index === mappings.length;
  const mapping = isNew ? { ...mappings[0], name: "new mapping" } : mappings[index];
  state.editing = { index, base: state.live.id };
  $("editor-name").textContent = isNew ? "a new mapping" : mapping.name;
  $("mapping-editor").value = JSON.stringify(mapping, null, 2);
  $("mapping-errors").replaceChildren();
  say("save-status", "");
  $("editor").hidden = false;
  loadRecent();
  schedulePreview();
}

// The document with the edited mapping's text spliced in as typed, so numbers stay exact.
function candidateText() {
  const document = { ...state.live.document, mappings: [...state.live.document.mappings] };
  document.mappings[state.editing.index] = MARKER;
  const edited = $("mapping-editor").value;
  return JSON.stringify(document, null, 2).replace(JSON.stringify(MARKER), () => edited);  // a function: no "$&" patterns
}

function showErrors(lines) {
  const list = $("mapping-errors");
  list.replaceChildren();
  for (const line of lines) {
    const item = document.createElement("li");
    item.textContent = line;
    list.appendChild(item);
  }
}

function parses(text, what) {
  try {
    JSON.parse(text);
    return true;
  } catch (error) {
    return `${what} is not valid JSON: ${error.message}`;
  }
}

function schedulePreview() {
  clearTimeout(state.timer);
  state.timer = setTimeout(preview, 250);
}

async function preview() {
  const problem = parses($("mapping-editor").value, "the mapping");
  if (problem !== true) {
    showErrors([problem]);
    say("preview-status", "fix the mapping to see a preview", "error");
    return;
  }
  const eventText = $("preview-event").value.trim();
  if (!eventText) {
    showErrors([]);
    say("preview-status", "paste an event or pick a recent one", "muted");
    $("preview-output").textContent = "";
    return;
  }
  const eventProblem = parses(eventText, "the event");
  if (eventProblem !== true) {
    say("preview-status", eventProblem, "error");
    return;
  }
  const body = `{"document": ${candidateText()}, "event": ${eventText}}`;
  const answer = await api("POST", "/preview", body);
  if (!answer.ok) {
    say("preview-status", answer.data.message || "the preview failed", "error");
    return;
  }
  if (!answer.data.valid) {
    showErrors(answer.data.mapping_errors);
    say("preview-status", "the mapping is invalid; nothing can be previewed", "error");
    $("preview-output").textContent = "";
    return;
  }
  showErrors([]);
  const [result] = answer.data.events;
  const errors = result.errors.map((e) => `${e.code}: ${e.message}`);
  say("preview-status", `${result.status}: ${result.usage_events.length} usage event(s)` +
      (errors.length ? ` · ${errors.join(" · ")}` : ""), result.status === "accepted" ? "ok" : "error");
  $("preview-output").textContent = JSON.stringify(result.usage_events, null, 2);
  $("preview-billing").textContent = result.billing.map(describeVerdict).join(" · ");
}

// "+5000 bytes on Data transfer (bytes)", or why it bills nothing.
function describeVerdict(verdict) {
  const fed = (verdict.metrics || []).map((m) => `+${m.adds}${m.key ? " " + m.key : ""} on ${m.name}`);
  const problems = (verdict.problems || []).map((p) => `${p.code}: ${p.message}`);
  const head = verdict.bills === true ? "bills" : verdict.bills === false ? "bills nothing" : "not checked";
  return [head + (fed.length ? ": " + fed.join(", ") : ""), ...problems].join(" · ");
}

async function priceIt() {
  const eventText = $("preview-event").value.trim();
  const customer = $("price-customer").value.trim();
  if (!eventText || !customer) return say("preview-status", "paste an event and a customer id to price it", "error");
  const body = `{"document": ${candidateText()}, "event": ${eventText}, "price": ${JSON.stringify({ customer_id: customer })}}`;
  const answer = await api("POST", "/preview", body);
  const priced = answer.ok ? answer.data.priced : { error: answer.data.message };
  const lines = priced.error ? [priced.error] : priced.line_items.length
    ? priced.line_items.map((l) => `${l.name}: ${l.quantity}` + (l.unit_price !== undefined ? ` × ${l.unit_price}` : "") + ` = ${l.total} (${l.credit_type ? l.credit_type.name : ""})`)
    : ["adds nothing to the draft invoice"];
  $("price-output").replaceChildren(...lines.map((text) => { const li = document.createElement("li"); li.textContent = text; return li; }));
}

async function loadRecent() {
  const answer = await api("GET", "/recent-events?limit=20");
  const select = $("recent-events");
  select.replaceChildren(new Option("recently received…", ""));
  state.recent = answer.ok ? answer.data.events : [];
  state.recent.forEach((item, i) => {
    const event = item.event || {};
    select.appendChild(new Option(`${when(item.received_at_ms)} ${event.type || "?"} ${event.event || ""} ${event.messageId || ""}`, String(i)));
  });
}

async function save() {
  const problem = parses($("mapping-editor").value, "the mapping");
  if (problem !== true) return showErrors([problem]);
  const comment = $("comment").value || `edited ${JSON.parse($("mapping-editor").value).name || "a mapping"}`;
  const body = { document: candidateText(), comment, base_version: state.editing.base };
  const answer = await confirmingIdChange((confirm) => api("PUT", "/mappings", JSON.stringify({ ...body, ...confirm })));
  if (answer === null) return say("save-status", "not saved: the transaction_id rule was kept", "error");
  if (answer.status === 400 && answer.data.errors) {
    showErrors(answer.data.errors);
    return say("save-status", "not saved: the mapping is invalid", "error");
  }
  if (!answer.ok) return say("save-status", `not saved: ${answer.data.message}`, "error");
  showLive(answer.data);
  state.editing.base = answer.data.id;
  state.editing.index = Math.min(state.editing.index, answer.data.document.mappings.length - 1);
  say("save-status", `saved as ${answer.data.version}; it is live now`, "ok");
}

// -- versions ---------------------------------------------------------------------------------------

async function loadVersions() {
  const answer = await api("GET", "/mappings/versions?limit=200");
  const rows = $("version-rows");
  rows.replaceChildren();
  if (!answer.ok) return;
  answer.data.versions.forEach((v, i) => {
    const actions = [["View", () => viewVersion(v.id), "view"], ["Export", () => exportVersion(v.id), "export"]];
    if (i > 0) actions.push(["Roll back to this", () => rollback(v.id), "rollback"]);
    const tr = row([v.version, when(v.created_at_ms), v.author, v.comment], actions);
    tr.dataset.version = v.version;
    rows.appendChild(tr);
  });
}

async function viewVersion(id) {
  const answer = await api("GET", `/mappings/versions/${id}`);
  $("version-document").textContent = answer.ok ? answer.data.text : answer.data.message;
}

async function exportVersion(id) {
  const answer = await api("GET", `/mappings/versions/${id}/export`);
  if (!answer.ok) return say("version-status", answer.data.message, "error");
  const text = typeof answer.data === "string" ? answer.data : JSON.stringify(answer.data, null, 2);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  link.download = `mappings-v${id}.json`;
  link.click();
  URL.revokeObjectURL(link.href);
}

// A save that changes how a mapping builds its transaction_id would bill a sender's retry of an
// already delivered event again; the server refuses it (409 transaction_id_changed) until the
// admin confirms. `send(extra)` makes the request, with `{confirm_id_change: true}` the second time.
async function confirmingIdChange(send) {
  const answer = await send({});
  if (answer.status !== 409 || answer.data.code !== "transaction_id_changed") return answer;
  if (!window.confirm(`${answer.data.message}\n\nChange the transaction_id rule anyway?`)) return null;
  return send({ confirm_id_change: true });
}

async function rollback(id) {
  const answer = await confirmingIdChange((confirm) =>
    api("POST", "/mappings/rollback", JSON.stringify({ version: id, ...confirm })));
  if (answer === null) return say("version-status", "not rolled back: the transaction_id rule was kept", "error");
  if (!answer.ok) return say("version-status", answer.data.message, "error");
  say("version-status", `rolled back to v${id}: live mappings are now ${answer.data.version}`, "ok");
  await loadLive();
  loadVersions();
}

// -- dead letters -----------------------------------------------------------------------------------

function letterFilters() {
  const filters = {};
  if ($("dl-code").value.trim()) filters.code = $("dl-code").value.trim();
  if ($("dl-stage").value) filters.stage = $("dl-stage").value;
  if ($("dl-since").value) filters.since_ms = new Date($("dl-since").value).getTime();
  if ($("dl-until").value) filters.until_ms = new Date($("dl-until").value).getTime();
  return filters;
}

async function loadDeadLetters() {
  const query = new URLSearchParams({ ...letterFilters(), limit: "500" });
  const answer = await api("GET", `/dead-letters?${query}`);
  const rows = $("dl-rows");
  rows.replaceChildren();
  if (!answer.ok) return say("dl-status", answer.data.message, "error");
  $("dl-total").textContent = `(${answer.data.count} shown of ${answer.data.total})`;
  for (const letter of answer.data.dead_letters) {
    const tr = row([String(letter.id), when(letter.dead_lettered_at_ms), letter.code, letter.reason + timeLeft(letter),
                    letter.mapping_version, letter.transaction_id || ""],
                   [["Inspect", () => inspect(letter), "inspect"], ["Replay", () => replay(`/dead-letters/${letter.id}/replay`), "replay"],
                    ["Delete", () => remove(letter.id), "delete"]]);
    tr.dataset.id = String(letter.id);
    rows.appendChild(tr);
  }
}

// A held event still ages: past Metronome's 34-day window it can never be sent.
function timeLeft(letter) {
  if (!letter.window_ends_ms) return "";
  const days = (letter.window_ends_ms - Date.now()) / 86400000;
  return days > 0 ? ` · ${days.toFixed(1)} days left to replay it` : " · past Metronome's 34-day window";
}

function inspect(letter) {
  $("dl-detail").textContent = JSON.stringify({ id: letter.id, reason: letter.reason, code: letter.code,
    stage: letter.stage, mapping_version: letter.mapping_version, source: letter.source, attempts: letter.attempts,
    event: letter.event }, null, 2);
}

async function replay(path, body) {
  const answer = await api("POST", path, body);
  if (!answer.ok) return say("dl-status", answer.data.message, "error");
  const r = answer.data;
  say("dl-status", `replayed ${r.replayed}: ${r.resolved} resolved, ${r.still_dead} still refused, ` +
      `${r.usage_events_queued} usage event(s) queued for delivery`, r.still_dead ? "error" : "ok");
  loadDeadLetters();
}

async function remove(id) {
  if (!window.confirm(`Delete dead letter ${id}? Its event will not be billed.`)) return;
  const answer = await api("DELETE", `/dead-letters/${id}`);
  say("dl-status", answer.ok ? `deleted ${answer.data.deleted}` : answer.data.message, answer.ok ? "ok" : "error");
  loadDeadLetters();
}

function bulkBody() {
  const filters = letterFilters();
  return JSON.stringify(Object.keys(filters).length ? filters : { all: true });
}

async function removeAll() {
  if (!window.confirm("Delete every dead letter matching the filter? Their events will not be billed.")) return;
  const answer = await api("POST", "/dead-letters/delete", bulkBody());
  say("dl-status", answer.ok ? `deleted ${answer.data.deleted}` : answer.data.message, answer.ok ? "ok" : "error");
  loadDeadLetters();
}

// -- billing ----------------------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

async function loadBilling() {
  const [catalog, problems, verification] = await Promise.all(
    ["/billing/catalog", "/billing/problems?hours=24", "/billing/verification"].map((path) => api("GET", path)));
  showCatalog(catalog.data);
  drawChart(problems.data.series.filter((s) => s.current));
  const resolved = problems.data.series.filter((s) => !s.current);
  $("billing-resolved").textContent = resolved.length
    ? "Resolved since: " + resolved.map((s) => `${s.reason} · ${s.event_type} (${s.total})`).join(", ") : "";
  $("billing-examples").replaceChildren(...problems.data.examples.filter((e) => e.current).map((e) =>
    row([when(e.at_ms), e.reason, e.event_type, e.customer_id, e.message], [])));
  showVerification(verification.data);
}

function showCatalog(catalog) {
  const age = catalog.age_s === null ? "never read from Metronome" : `read ${Math.round(catalog.age_s)} s ago`;
  $("billing-catalog").textContent = `BILLING_CHECK=${catalog.billing_check} · catalog ${age} · ` +
    `${catalog.metrics.length} metric(s) · ${catalog.customers.known.length} customer id(s) known` +
    (catalog.error ? ` · last error: ${catalog.error}` : "");
}

// A horizontal bar per (reason, event type), drawn here: no chart library, no build step.
function drawChart(series) {
  const chart = $("billing-chart");
  const rowHeight = 26, labelWidth = 340, barWidth = 360;
  const most = Math.max(1, ...series.map((s) => s.total));
  chart.setAttribute("width", labelWidth + barWidth + 80);
  chart.setAttribute("height", Math.max(1, series.length) * rowHeight + 8);
  chart.replaceChildren();
  if (!series.length) chart.appendChild(svgText(8, 20, "No unresolved billing problem in the last 24 hours."));
  series.forEach((s, i) => {
    const y = 4 + i * rowHeight;
    const group = document.createElementNS(SVG, "g");
    group.dataset.reason = s.reason;
    group.dataset.eventType = s.event_type;
    group.dataset.total = String(s.total);
    group.appendChild(svgText(8, y + 17, `${s.reason} · ${s.event_type}`));
    const bar = document.createElementNS(SVG, "rect");
    bar.setAttribute("class", "bar");
    bar.setAttribute("x", labelWidth);
    bar.setAttribute("y", y + 4);
    bar.setAttribute("height", rowHeight - 8);
    bar.setAttribute("width", Math.max(2, Math.round(barWidth * s.total / most)));
    group.appendChild(bar);
    group.appendChild(svgText(labelWidth + barWidth + 8, y + 17, String(s.total)));
    chart.appendChild(group);
  });
}

function svgText(x, y, content) {
  const text = document.createElementNS(SVG, "text");
  text.setAttribute("x", x);
  text.setAttribute("y", y);
  text.textContent = content;
  return text;
}

function showVerification(results) {
  const counts = Object.entries(results.counts).map(([k, v]) => `${k}: ${v}`).join(", ") || "nothing checked yet";
  $("billing-verification").textContent = `${counts} · disagreements: ${results.disagreements}`;
  $("billing-checks").replaceChildren(...results.recent.slice(0, 20).map((r) =>
    row([r.transaction_id, r.event_type, r.result, r.agrees ? "yes" : "NO"], [])));
}

async function refreshCatalog() {
  say("billing-status", "asking the worker to read Metronome's metrics…");
  const answer = await api("POST", "/billing/refresh");
  say("billing-status", answer.data.refreshed ? "catalog refreshed" : answer.data.message || "not refreshed",
      answer.data.refreshed ? "ok" : "error");
  await loadBilling();
}

// -- wiring -----------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("token").value);
  });
  $("logout").addEventListener("click", () => signOut(""));
  document.querySelectorAll("#tabs [data-tab]").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  $("new-mapping").addEventListener("click", () => openEditor(state.live.document.mappings.length));
  $("mapping-editor").addEventListener("input", schedulePreview);
  $("preview-event").addEventListener("input", schedulePreview);
  $("recent-events").addEventListener("change", (e) => {
    const picked = state.recent[Number(e.target.value)];
    if (picked) $("preview-event").value = JSON.stringify(picked.event, null, 2);
    schedulePreview();
  });
  $("save").addEventListener("click", save);
  $("cancel").addEventListener("click", () => { $("editor").hidden = true; });
  $("dl-filter").addEventListener("submit", (e) => {
    e.preventDefault();
    loadDeadLetters();
  });
  $("dl-replay-all").addEventListener("click", () => replay("/dead-letters/replay", bulkBody()));
  $("dl-delete-all").addEventListener("click", removeAll);
  $("billing-refresh").addEventListener("click", refreshCatalog);
  $("price-it").addEventListener("click", priceIt);
  if (state.token) signIn(state.token);
});
