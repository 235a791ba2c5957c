// Headwater console: every value goes into the page as text (textContent), never as
// markup; every call goes to the public HTTP API with the signed-in user's credential.
"use strict";

const KEY = "headwater.credential";
const credential = () => sessionStorage.getItem(KEY);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message;
  box.hidden = !message;
}

class ApiError extends Error {
  constructor(status, body) {
    const detail = body && body.error ? body.error : {};
    super(`${status}: ${detail.message || "request failed"}`);
    this.status = status;
    this.code = detail.code;
  }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${credential()}`, ...(options.headers || {}) };
  if (options.json !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.json !== undefined ? JSON.stringify(options.json) : undefined,
  });
  if (options.raw) return response;
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function table(id, columns, rows) {
  const node = document.getElementById(id);
  node.replaceChildren();
  node.append(el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", {}, c[0])))));
  const body = el("tbody");
  for (const row of rows) {
    body.append(el("tr", {}, ...columns.map((c) => {
      const value = c[1](row);
      return el("td", {}, value instanceof Node ? value : value ?? "");
    })));
  }
  node.append(body);
  if (!rows.length) body.append(el("tr", {}, el("td", { colspan: columns.length }, "none")));
}

const labelText = (labels) => Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(", ");

// --- sign-in and the frame --------------------------------------------------------------

async function frame() {
  const page = document.body.dataset.page;
  if (page === "signin") return signinPage();
  if (!credential()) {
    window.location.assign("/console/signin");
    return;
  }
  let me;
  try {
    me = await api("/v1/me");
  } catch (error) {
    if (error.status === 401) {
      sessionStorage.removeItem(KEY);
      window.location.assign("/console/signin");
      return;
    }
    showError(error.message);
    return;
  }
  document.getElementById("whoami").textContent = `${me.user_id} · ${me.tenant}`;
  const signout = document.getElementById("signout");
  signout.hidden = false;
  signout.addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    window.location.assign("/console/signin");
  });
  for (const link of document.querySelectorAll("#nav a")) {
    const roles = link.dataset.roles.split(" ").filter(Boolean);
    link.hidden = roles.length > 0 && !roles.some((role) => me.roles.includes(role));
  }
  const pages = { playground, operations, usage, audit, keys };
  try {
    await pages[page](me);
  } catch (error) {
    showError(error.message);
  }
  document.body.dataset.ready = "true";
}

function signinPage() {
  document.getElementById("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = document.getElementById("credential").value.trim();
    const response = await fetch("/v1/me", { headers: { Authorization: `Bearer ${value}` } });
    if (!response.ok) {
      const body = await response.json().catch(() => null);
      showError(new ApiError(response.status, body).message);
      return;
    }
    sessionStorage.setItem(KEY, value);
    window.location.assign("/console/playground");
  });
  document.body.dataset.ready = "true";
}

// --- playground ---------------------------------------------------------------------

function safeHref(uri) {
  try {
    const url = new URL(uri);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

function showCitations(citations) {
  const list = document.getElementById("citations");
  list.replaceChildren();
  for (const c of citations) {
    const href = c.uri ? safeHref(c.uri) : null;
    const title = c.title || c.doc_id;
    const name = href ? el("a", { href, rel: "noopener noreferrer", target: "_blank" }, title)
      : el("span", {}, title);
    list.append(el("li", { class: "citation" }, name,
      el("span", { class: "hint" }, ` ${c.doc_id}#${c.chunk_no} · score ${c.score.toFixed(3)}`
        + (c.used ? "" : " · not cited by number"))));
  }
  document.getElementById("no-citations").hidden = citations.length > 0;
}

function showRoute(route) {
  const served = route.served_tier ? ` (served by ${route.served_tier})` : "";
  document.getElementById("route").textContent = `${route.tier} · ${route.model}${served}`;
  let why = route.reason;
  if (route.score !== undefined) why += ` (score ${route.score} vs threshold ${route.threshold})`;
  document.getElementById("route-why").textContent = why;
}

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

function chatBody() {
  const value = (id) => document.getElementById(id).value.trim();
  const sources = value("sources").split(",").map((s) => s.trim()).filter(Boolean);
  const retrieval = { enabled: document.getElementById("retrieval").checked };
  if (retrieval.enabled) {
    retrieval.top_k = Number(value("top-k")) || 4;
    if (sources.length) retrieval.filter = { source: sources };
  }
  return {
    model: value("model"),
    messages: [{ role: "user", content: value("question") }],
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: Number(value("max-tokens")) || 128,
    headwater: { retrieval },
  };
}

async function ask() {
  const answer = document.getElementById("answer");
  for (const id of ["route", "route-why", "tokens", "latency", "request-id", "cache"]) {
    document.getElementById(id).textContent = "…";
  }
  answer.textContent = "";
  document.getElementById("citations").replaceChildren();
  document.getElementById("no-citations").hidden = true;
  document.body.dataset.answered = "false";
  const started = performance.now();
  let firstMs = null;
  const response = await api("/v1/chat/completions", {
    method: "POST", json: chatBody(), raw: true,
  });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const requestId = response.headers.get("x-request-id") || "";
  const requestCell = document.getElementById("request-id");
  requestCell.replaceChildren(el("a", {
    href: `/console/audit?request_id=${encodeURIComponent(requestId)}`,
  }, requestId));
  for await (const chunk of sseEvents(response)) {
    if (chunk.error) throw new Error(chunk.error.message);
    for (const choice of chunk.choices || []) {
      const text = choice.delta && choice.delta.content;
      if (text) {
        if (firstMs === null) firstMs = performance.now() - started;
        answer.textContent += text;
      }
    }
    if (chunk.headwater) {
      showCitations(chunk.headwater.citations || []);
      showRoute(chunk.headwater.route);
      const cache = chunk.headwater.cache;
      document.getElementById("cache").textContent = cache
        ? `${cache.outcome}${cache.saved_tokens ? `, ${cache.saved_tokens} tokens saved` : ""}`
        : "not cached";
    }
    if (chunk.usage) {
      const u = chunk.usage;
      document.getElementById("tokens").textContent =
        `${u.prompt_tokens} prompt + ${u.completion_tokens} completion = ${u.total_tokens}`;
    }
  }
  const total = performance.now() - started;
  const first = firstMs === null ? "–" : `${firstMs.toFixed(0)} ms`;
  document.getElementById("latency").textContent =
    `first text ${first} · total ${total.toFixed(0)} ms`;
  if (document.getElementById("tokens").textContent === "…") {
    document.getElementById("tokens").textContent = "not reported";
  }
  document.body.dataset.answered = "true";
}

function playground() {
  document.getElementById("ask-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    try {
      await ask();
    } catch (error) {
      showError(error.message);
      document.body.dataset.answered = "error";
    }
  });
}

// --- operations -----------------------------------------------------------------------

async function readiness() {
  const response = await fetch("/readyz");
  const body = await response.json();
  const rows = Object.entries(body.checks).map(([part, ok]) => ({ part, ok }));
  rows.push({ part: "ingest worker in this process", ok: body.ingest });
  table("readiness", [["part", (r) => r.part], ["state", (r) => (r.ok ? "ready" : "NOT READY")]],
    rows);
}

function sum(samples, predicate = () => true) {
  return samples.filter((s) => predicate(s.labels)).reduce((total, s) => total + s.value, 0);
}

function showSnapshot(s) {
  const sampleColumns = [["labels", (r) => labelText(r.labels)], ["value", (r) => r.value]];
  document.getElementById("freshness").textContent = s.freshness_count
    ? `publish to searchable: mean ${s.freshness_s_mean} s over ${s.freshness_count} events`
    : (s.process_ingest ? "no event indexed yet" : "this process runs no ingest worker");
  table("ingest-lag", [["partition", (r) => r.labels.partition], ["lag", (r) => r.value]],
    s.ingest_lag);
  table("ingest-events", sampleColumns, s.ingest_events);
  const large = sum(s.route_decisions, (l) => l.tier === "large");
  const all = sum(s.route_decisions);
  document.getElementById("route-share").textContent = all
    ? `large share ${(100 * large / all).toFixed(1)}% of ${all} (target `
      + `${(100 * s.route_target_large_share).toFixed(0)}%)`
    : "no request routed yet";
  table("routes", [["tier", (r) => r.labels.tier], ["reason", (r) => r.labels.reason],
    ["requests", (r) => r.value]], s.route_decisions);
  table("firewall", [["direction", (r) => r.labels.direction], ["entity", (r) => r.labels.entity],
    ["action", (r) => r.labels.action], ["count", (r) => r.value]], s.firewall_actions);
  const errors = sum(s.http_requests, (l) => l.status.startsWith("5"));
  const total = sum(s.http_requests);
  document.getElementById("error-rate").textContent = total
    ? `5xx: ${errors} of ${total} (${(100 * errors / total).toFixed(2)}%)` : "no request yet";
  table("http", [["route", (r) => r.labels.route], ["status", (r) => r.labels.status],
    ["requests", (r) => r.value]], s.http_requests);
}

async function showDeadLetters() {
  const status = document.getElementById("dlq-status");
  const letters = await api("/v1/admin/dlq");
  status.textContent = letters.truncated ? "showing the oldest letters only" : "";
  table("dlq", [
    ["partition/offset", (r) => `${r.partition}/${r.offset}`],
    ["document", (r) => r.doc_id ?? r.key],
    ["record key", (r) => r.source_key],
    ["error type", (r) => r.error_type],
    ["reason", (r) => el("span", { class: "reason" }, r.reason)],
    ["failed at", (r) => r.failed_at],
    ["", (r) => {
      const button = el("button", { type: "button", class: "replay" }, "Replay");
      button.addEventListener("click", async () => {
        button.disabled = true;
        try {
          const done = await api(`/v1/admin/dlq/${r.partition}/${r.offset}/replay`,
            { method: "POST" });
          status.textContent = `replayed ${done.key} to documents partition `
            + `${done.documents_partition}`;
        } catch (error) {
          showError(error.message);
          button.disabled = false;
        }
      });
      return button;
    }],
  ], letters.data);
}

async function showDrift() {
  const drift = await api("/v1/drift");
  const rows = Object.entries(drift.signals).map(([name, signal]) => ({ name, ...signal }));
  table("drift", [
    ["signal", (r) => r.name],
    ["value", (r) => (r.value === null ? "not enough data" : r.value.toFixed(4))],
    ["alert above / below", (r) => r.threshold],
    ["state", (r) => (r.alerting ? "DRIFTING" : "ok")],
  ], rows);
  document.getElementById("drift-alerts").textContent =
    `${drift.recent_queries} recent of ${drift.window} · reference ${drift.reference_queries}`
    + ` of ${drift.reference_size} queries`;
}

async function operations() {
  await readiness();
  showSnapshot(await api("/v1/admin/operations"));
  await showDrift();
  await showDeadLetters();
}

// --- usage ----------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function chart(rows, dimension) {
  const box = document.getElementById("chart");
  box.replaceChildren();
  const width = 640;
  const bar = 22;
  const height = Math.max(bar, rows.length * (bar + 6));
  const most = Math.max(1, ...rows.map((r) => r.total_tokens));
  const plot = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  plot.append(svg("title", {}, `total tokens by ${dimension}`));
  rows.forEach((row, i) => {
    const y = i * (bar + 6);
    const w = Math.max(1, Math.round((width - 260) * row.total_tokens / most));
    plot.append(svg("text", { x: 0, y: y + 15, class: "label" }, String(row[dimension] ?? "–")));
    plot.append(svg("rect", { x: 180, y, width: w, height: bar, class: "bar" }));
    plot.append(svg("text", { x: 186 + w, y: y + 15, class: "value" }, String(row.total_tokens)));
  });
  box.append(plot);
}

function csvCell(value) {
  let text = value === null || value === undefined ? "" : String(value);
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`; // no formula runs in a spreadsheet
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function usage() {
  const form = document.getElementById("usage-form");
  const csv = document.getElementById("csv");
  let last = null;
  const load = async () => {
    const dimension = document.getElementById("group-by").value;
    const params = new URLSearchParams({ group_by: dimension });
    for (const name of ["from", "to"]) {
      const value = document.getElementById(name).value;
      if (value) params.set(name, value);
    }
    const report = await api(`/v1/usage?${params}`);
    const columns = [[dimension, (r) => r[dimension] ?? "–"], ["requests", (r) => r.requests],
      ["prompt tokens", (r) => r.prompt_tokens], ["completion tokens", (r) => r.completion_tokens],
      ["total tokens", (r) => r.total_tokens]];
    if (report.currency) columns.push([`cost (${report.currency})`, (r) => r.cost]);
    table("usage-table", columns, report.data);
    chart(report.data, dimension);
    const t = report.totals;
    document.getElementById("usage-totals").textContent =
      `${report.tenant}: ${t.requests} requests, ${t.total_tokens} tokens from ${report.from}`;
    last = { report, dimension };
    csv.disabled = false;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    showError("");
    load().catch((error) => showError(error.message));
  });
  csv.addEventListener("click", () => {
    const names = [last.dimension, "requests", "prompt_tokens", "completion_tokens",
      "total_tokens"].concat(last.report.currency ? ["cost"] : []);
    const lines = [names.join(",")].concat(
      last.report.data.map((row) => names.map((n) => csvCell(row[n])).join(",")));
    const blob = new Blob([`${lines.join("\n")}\n`], { type: "text/csv" });
    const link = el("a", { href: URL.createObjectURL(blob), download: `usage-${last.dimension}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
  });
  return load();
}

// --- audit ----------------------------------------------------------------------------

function audit(me) {
  const by = document.getElementById("audit-by");
  const input = document.getElementById("audit-value");
  const search = async () => {
    const params = new URLSearchParams({ [by.value]: input.value.trim() });
    const found = await api(`/v1/audit?${params}`);
    document.getElementById("audit-status").textContent =
      `${found.data.length} record(s)${found.truncated ? ", older ones left out" : ""}`;
    table("audit-table", [
      ["at", (r) => r.at], ["user", (r) => r.user_id], ["department", (r) => r.department],
      ["endpoint", (r) => r.endpoint], ["request id", (r) => r.request_id],
      ["route", (r) => [r.route_tier, r.model, r.route_reason].filter(Boolean).join(" · ")],
      ["tokens", (r) => r.prompt_tokens + r.completion_tokens],
      ["latency ms", (r) => r.latency_ms],
      ["chunks", (r) => r.chunks.map((c) => `${c.doc_id}#${c.chunk_no} v${c.version}`)
        .join(", ")],
    ], found.data);
    // One request: its whole record, field by field.
    const record = document.getElementById("audit-record");
    record.replaceChildren();
    if (by.value === "request_id" && found.data.length === 1) {
      for (const [name, value] of Object.entries(found.data[0])) {
        const text = typeof value === "object" && value !== null ? JSON.stringify(value) : value;
        record.append(el("dt", {}, name), el("dd", {}, text ?? "–"));
      }
    }
  };
  document.getElementById("audit-form").addEventListener("submit", (event) => {
    event.preventDefault();
    showError("");
    search().catch((error) => showError(error.message));
  });
  const query = new URLSearchParams(window.location.search);
  const name = ["doc_id", "request_id", "user_id"].find((n) => query.get(n)) || "user_id";
  by.value = name;
  input.value = query.get(name) || me.user_id; // by default: your own requests
  return search();
}

// --- keys -----------------------------------------------------------------------------

const list = (id) => document.getElementById(id).value.split(",").map((s) => s.trim())
  .filter(Boolean);

async function keys() {
  const load = async () => {
    const found = await api("/v1/admin/keys");
    table("keys-table", [
      ["id", (r) => r.id], ["user", (r) => r.user_id], ["groups", (r) => r.groups.join(", ")],
      ["department", (r) => r.department], ["roles", (r) => r.roles.join(", ")],
      ["created", (r) => r.created_at], ["revoked", (r) => r.revoked_at || ""],
      ["", (r) => {
        if (r.revoked_at) return "";
        const button = el("button", { type: "button", class: "revoke", "data-key-id": r.id },
          "Revoke");
        button.addEventListener("click", async () => {
          button.disabled = true;
          try {
            await api(`/v1/admin/keys/${encodeURIComponent(r.id)}`, { method: "DELETE" });
            await load();
          } catch (error) {
            showError(error.message);
          }
        });
        return button;
      }],
    ], found.data);
  };
  document.getElementById("key-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    try {
      const department = document.getElementById("key-department").value.trim();
      const created = await api("/v1/admin/keys", {
        method: "POST",
        json: {
          user_id: document.getElementById("key-user").value.trim(),
          groups: list("key-groups"),
          roles: list("key-roles"),
          department: department || null,
        },
      });
      document.getElementById("new-key-value").textContent = created.key;
      document.getElementById("new-key").hidden = false;
      await load();
    } catch (error) {
      showError(error.message);
    }
  });
  await load();
}

document.addEventListener("DOMContentLoaded", () => {
  frame().catch((error) => showError(error.message));
});
