// Junction console: plain JavaScript over the console's JSON API (/console/api/*), no outside assets.
"use strict";

const $ = (selector) => document.querySelector(selector);
const pages = ["live", "requests", "playground", "usage", "models", "config"];
let liveTimer = null;
let editedRoutes = null; // the playground's routes, once loaded

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

async function getJSON(path, options = {}) {
  const reply = await fetch(path, { credentials: "same-origin", ...options });
  const body = await reply.json();
  if (!reply.ok) throw new Error(body.error ? body.error.message : `HTTP ${reply.status}`);
  return body;
}

function usd(nano) { return (nano / 1e9).toFixed(6); }
function fmt(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en"); }
function when(ts) { return new Date(ts * 1000).toLocaleTimeString("en-GB"); }

// Horizontal bars: [[label, value]], scaled to the largest (or to `max`).
function bars(rows, max, format = (v) => v.toFixed(3)) {
  const top = max || Math.max(1e-9, ...rows.map((r) => r[1]));
  const box = el("div", { class: "bars" });
  for (const [label, value, highlight] of rows) {
    const width = Math.max(0, Math.min(100, (100 * value) / top));
    box.append(el("div", { class: "bar" + (highlight ? " chosen" : "") },
      el("span", { class: "label" }, label),
      el("span", { class: "track" }, el("span", { class: "fill", style: `width:${width}%` })),
      el("span", { class: "value" }, format(value))));
  }
  return box;
}

function fail(where, error) {
  where.replaceChildren(el("p", { class: "error" }, error.message));
}

// -- Live ---------------------------------------------------------------------------------------
async function showLive() {
  const tiles = $("#live-tiles");
  try {
    const live = await getJSON("/console/api/live");
    const tile = (name, value) => el("div", { class: "tile" }, el("span", {}, name), el("strong", {}, value));
    tiles.replaceChildren(
      tile("requests/s", live.rps.toFixed(2)), tile("requests", fmt(live.requests)),
      tile("errors", `${fmt(live.errors)} (${(100 * live.error_rate).toFixed(1)} %)`),
      tile("latency p50 / p95 / p99 ms", `${fmt(live.latency_ms.p50)} / ${fmt(live.latency_ms.p95)} / ${fmt(live.latency_ms.p99)}`),
      tile("TTFT p50 / p95 / p99 ms", `${fmt(live.ttft_ms.p50)} / ${fmt(live.ttft_ms.p95)} / ${fmt(live.ttft_ms.p99)}`));
    const rows = Object.entries(live.models).map(([model, s]) => [model, s.input_tokens + s.output_tokens]);
    $("#live-models").replaceChildren(rows.length ? bars(rows, 0, fmt) : el("p", { class: "note" }, "No requests in the last minute."));
  } catch (error) { fail(tiles, error); }
}

// -- Requests -----------------------------------------------------------------------------------
function requestRow(r, fromLedger) {
  return el("tr", fromLedger ? { class: "ledger" } : { "data-id": r.request_id, onclick: () => showRequest(r.request_id) },
    el("td", {}, when(r.ts)), el("td", {}, r.key_name || "–"), el("td", {}, r.route || "–"),
    el("td", {}, r.requested_model || "–"), el("td", {}, r.model || "–"),
    el("td", {}, r.fallback_from ? `${r.attempts} (from ${r.fallback_from})` : r.attempts),
    el("td", { class: r.status >= 400 || r.status === 0 ? "bad" : "" }, r.status),
    el("td", {}, `${fmt(r.input_tokens)} / ${fmt(r.output_tokens)}`), el("td", {}, usd(r.cost_nano)),
    el("td", {}, r.ttft_ms === null ? "–" : Number(r.ttft_ms).toFixed(1)));
}

async function olderRequests() {
  const body = $("#requests-table tbody");
  try {
    const data = await getJSON("/console/api/requests?source=ledger&limit=500");
    const shown = new Set([...body.querySelectorAll("tr[data-id]")].map((row) => row.dataset.id));
    body.append(...data.requests.filter((r) => !shown.has(r.request_id)).map((r) => requestRow(r, true)));
    $("#requests-older").hidden = true;
  } catch (error) { $("#requests-note").textContent = error.message; }
}

async function showRequests() {
  const body = $("#requests-table tbody");
  try {
    const data = await getJSON("/console/api/requests?limit=200");
    $("#requests-note").textContent = data.prompts ? "Prompt logging is on: a request's detail shows the text that was routed."
      : "Prompt logging is off (access_log.prompts): details show scores and reasons, not the text.";
    body.replaceChildren(...data.requests.map((r) => requestRow(r, false)));
    $("#requests-older").hidden = false;
  } catch (error) { fail(body, error); }
}

function decisionView(decision, extra = {}) {
  const box = el("div", {});
  box.append(el("p", {}, el("strong", {}, `route: ${decision.route || "none"}`), ` (${decision.reason}`,
    decision.score !== null && decision.score !== undefined ? `, score ${decision.score.toFixed(3)}` : "",
    decision.margin !== null && decision.margin !== undefined ? `, margin ${decision.margin.toFixed(3)} over ${decision.runner_up}` : "", ")"));
  if (decision.models && decision.models.length) box.append(el("p", {}, `models: ${decision.models.join(", ")}`));
  const scores = Object.entries(decision.scores || {}).sort((a, b) => b[1] - a[1]).map(([name, s]) => [name, s, name === decision.route]);
  if (scores.length) box.append(el("h4", {}, decision.mode === "head" ? "route probabilities" : "route similarities"), bars(scores, decision.mode === "head" ? 1 : 0));
  if (decision.text) box.append(el("h4", {}, "text that was embedded"), el("pre", {}, decision.text));
  const nearest = extra.nearest_training || [];
  if (nearest.length) box.append(el("h4", {}, "nearest training requests"),
    el("ul", {}, ...nearest.map((n) => el("li", {}, `${n.similarity.toFixed(3)} [${n.task}] ${n.text}`))));
  const texts = extra.nearest_route_texts || [];
  if (texts.length) box.append(el("h4", {}, "nearest route descriptions and examples"),
    el("ul", {}, ...texts.map((n) => el("li", {}, `${n.similarity.toFixed(3)} [${n.route}] ${n.text}`))));
  return box;
}

async function showRequest(id) {
  const box = $("#request-detail");
  box.hidden = false;
  try {
    const data = await getJSON(`/console/api/requests/${encodeURIComponent(id)}`);
    const r = data.request;
    box.replaceChildren(el("h3", {}, `request ${r.request_id}`),
      el("p", {}, `${r.protocol} · key ${r.key_name || "–"} · ${r.requested_model || "–"} → ${r.model || "–"} · status ${r.status} · ${fmt(r.input_tokens)} in / ${fmt(r.output_tokens)} out · $${usd(r.cost_nano)}`),
      r.decision ? decisionView(r.decision, data) : el("p", { class: "note" }, "No routing decision (a model named by the client, or no routes)."));
  } catch (error) { fail(box, error); }
}

// -- Playground ---------------------------------------------------------------------------------
function routeEditor(route, index) {
  const name = el("input", { value: route.name, "aria-label": "route name" });
  const description = el("textarea", { rows: 2, "aria-label": "description" });
  description.value = route.description || "";
  const examples = el("textarea", { rows: 2, "aria-label": "examples, one per line", placeholder: "examples, one per line" });
  examples.value = (route.examples || []).join("\n");
  const sync = () => {
    editedRoutes[index] = { name: name.value.trim(), description: description.value,
      examples: examples.value.split("\n").map((e) => e.trim()).filter(Boolean) };
  };
  for (const input of [name, description, examples]) input.addEventListener("input", sync);
  const remove = el("button", { type: "button", class: "secondary", onclick: () => { editedRoutes.splice(index, 1); drawRoutes(); } }, "Remove");
  return el("div", { class: "route", "data-route": route.name }, el("div", { class: "row" }, name, remove), description, examples);
}

function drawRoutes() {
  $("#pg-routes").replaceChildren(...editedRoutes.map(routeEditor));
}

async function loadRoutes() {
  const data = await getJSON("/console/api/routes");
  editedRoutes = data.routes.map((r) => ({ name: r.name, description: r.description, examples: r.examples }));
  drawRoutes();
}

async function route(withEdits) {
  const box = $("#pg-result");
  const input = $("#pg-input").value;
  if (!input.trim()) { box.replaceChildren(el("p", { class: "error" }, "Paste a prompt first.")); return; }
  box.replaceChildren(el("p", { class: "note" }, "Routing…"));
  try {
    const ask = { input, protocol: $("#pg-protocol").value };
    if (withEdits) ask.routes = editedRoutes;
    const data = await getJSON("/console/api/route", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(ask) });
    box.replaceChildren(el("p", { class: "note" }, `read as ${data.protocol}${withEdits ? ", with the routes below" : ""}`), decisionView(data.decision, data));
    box.dataset.route = data.decision.route || "none";
    if (data.yaml) $("#pg-yaml").textContent = data.yaml;
  } catch (error) { fail(box, error); }
}

async function showPlayground() {
  if (editedRoutes === null) await loadRoutes();
}

// -- Usage --------------------------------------------------------------------------------------
async function showUsage() {
  const by = $("#usage-by").value;
  const since = $("#usage-since").value;
  const query = `by=${encodeURIComponent(by)}${since ? `&since=${since}` : ""}`;
  try {
    const data = await getJSON(`/console/api/usage?${query}`);
    $("#usage-note").textContent = `${data.source === "ledger" ? "From the usage ledger" : data.note}; since ${data.since} (UTC).`;
    const dims = data.by;
    const label = (r) => dims.map((d) => r[d] || "–").join(" · ");
    $("#usage-chart").replaceChildren(data.rows.length ? bars(data.rows.map((r) => [label(r), r.cost_nano / 1e9]), 0, (v) => `$${v.toFixed(6)}`)
      : el("p", { class: "note" }, "No usage yet."));
    $("#usage-table thead").replaceChildren(el("tr", {}, ...dims.map((d) => el("th", {}, d)),
      ...["requests", "errors", "input", "output", "cache read", "cost (USD)"].map((h) => el("th", {}, h))));
    $("#usage-table tbody").replaceChildren(...data.rows.map((r) => el("tr", {}, ...dims.map((d) => el("td", {}, r[d] || "–")),
      el("td", {}, fmt(r.requests)), el("td", {}, fmt(r.errors)), el("td", {}, fmt(r.input_tokens)),
      el("td", {}, fmt(r.output_tokens)), el("td", {}, fmt(r.cache_read_tokens)), el("td", {}, r.cost_usd))));
    const header = [...dims, "requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens", "cost_usd"];
    const csv = [header.join(",")].concat(data.rows.map((r) => header.map((h) => JSON.stringify(r[h] ?? "")).join(","))).join("\n");
    $("#usage-csv").href = URL.createObjectURL(new Blob([csv + "\n"], { type: "text/csv" }));
  } catch (error) { fail($("#usage-chart"), error); }
}

// -- Models and config --------------------------------------------------------------------------
async function showModels() {
  const body = $("#models-table tbody");
  try {
    const data = await getJSON("/console/api/models");
    body.replaceChildren(...data.models.map((m) => el("tr", {},
      el("td", {}, m.model, m.default ? " (default)" : ""), el("td", {}, m.interface), el("td", {}, m.url),
      el("td", { class: m.key === "missing" ? "bad" : "" }, m.key === "missing" ? `missing: ${m.missing_env.join(", ")}` : m.key),
      el("td", { class: m.cooling_s > 0 || m.failures_in_a_row ? "bad" : "" },
        (m.cooling_s > 0 ? `cooling ${m.cooling_s} s` : "ok") + (m.failures_in_a_row ? `, ${m.failures_in_a_row} failures in a row` : "")),
      el("td", {}, fmt(m.in_flight)), el("td", {}, `${fmt(m.requests_5m)} / ${fmt(m.errors_5m)}`),
      el("td", {}, m.upstream_ms === null ? "–" : m.upstream_ms.toFixed(1)),
      el("td", {}, m.aliases.join(", ") || "–"))));
  } catch (error) { fail(body, error); }
}

async function showConfig() {
  try {
    const data = await getJSON("/console/api/config");
    $("#config-note").textContent = `${data.source}, loaded ${new Date(data.loaded_at * 1000).toLocaleString("en-GB")}; secrets masked.`;
    $("#config-text").textContent = data.text;
  } catch (error) { fail($("#config-text"), error); }
}

// -- navigation ---------------------------------------------------------------------------------
const shows = { live: showLive, requests: showRequests, playground: showPlayground, usage: showUsage, models: showModels, config: showConfig };

function open() {
  const page = pages.includes(location.hash.slice(1)) ? location.hash.slice(1) : "live";
  for (const name of pages) $(`#${name}`).hidden = name !== page;
  for (const link of document.querySelectorAll("nav a")) link.classList.toggle("active", link.dataset.page === page);
  clearInterval(liveTimer);
  if (page === "live") liveTimer = setInterval(showLive, 2000);
  shows[page]();
}

$("#pg-route").addEventListener("click", () => route(true));
$("#pg-reset").addEventListener("click", async () => { await loadRoutes(); route(false); });
$("#pg-add").addEventListener("click", () => { editedRoutes.push({ name: `route_${editedRoutes.length + 1}`, description: "", examples: [] }); drawRoutes(); });
$("#pg-export").addEventListener("click", async () => { await route(true); $("#pg-yaml").hidden = false; });
$("#requests-older").addEventListener("click", olderRequests);
$("#usage-by").addEventListener("change", showUsage);
$("#usage-since").addEventListener("change", showUsage);
window.addEventListener("hashchange", open);
open();
