// latitude's dashboard: renders /api/status (and events, incidents, history) and follows
// /api/stream (server-sent events) so that it changes as the cluster does, without a reload.
// Everything is built with DOM calls and textContent: nothing from the cluster is parsed as
// HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const HISTORY_SECONDS = 15 * 60;
const HISTORY_EVERY_MS = 5000;
const view = { status: null, failover: null, events: [], incidents: null, histories: {} };

// Rough outlines of the continents (longitude, latitude), enough to place regions on a map.
const LAND = [
  [[-168, 65], [-140, 70], [-95, 72], [-80, 65], [-60, 55], [-53, 47], [-70, 42], [-76, 35],
   [-81, 25], [-97, 26], [-97, 18], [-87, 15], [-80, 8], [-92, 15], [-105, 20], [-117, 32],
   [-124, 40], [-125, 49], [-135, 58], [-150, 60], [-165, 55]],
  [[-80, 8], [-60, 10], [-50, 0], [-35, -7], [-40, -22], [-48, -27], [-58, -38], [-65, -55],
   [-73, -50], [-72, -30], [-70, -18], [-81, -5]],
  [[-10, 36], [-9, 43], [-2, 44], [-5, 48], [2, 51], [8, 54], [10, 58], [5, 62], [15, 69],
   [28, 71], [40, 67], [30, 60], [40, 45], [28, 41], [22, 37], [12, 38], [15, 45], [8, 44],
   [3, 43], [-5, 36]],
  [[-5, 50], [1, 51], [-2, 56], [-5, 58], [-6, 55]],
  [[-17, 21], [-10, 30], [-5, 36], [10, 37], [32, 31], [35, 28], [43, 12], [51, 12], [40, -5],
   [40, -15], [33, -26], [20, -35], [12, -17], [8, 4], [-8, 4], [-17, 14]],
  [[28, 41], [40, 45], [30, 60], [40, 67], [70, 73], [110, 77], [140, 72], [180, 68],
   [170, 60], [157, 51], [140, 46], [130, 42], [122, 40], [121, 31], [110, 20], [105, 10],
   [100, 13], [98, 8], [93, 20], [80, 15], [77, 8], [72, 20], [67, 25], [57, 25], [50, 30],
   [45, 13], [35, 28], [36, 36]],
  [[130, 31], [135, 34], [141, 36], [142, 43], [140, 41], [132, 34]],
  [[95, 5], [106, -6], [115, -8], [120, -9], [110, -2], [100, -1]],
  [[109, 1], [118, 7], [119, 0], [116, -4], [110, -3]],
  [[114, -22], [122, -17], [131, -12], [137, -12], [142, -11], [146, -19], [153, -25],
   [150, -37], [140, -38], [131, -31], [115, -34]],
];

// The map shows latitudes 80 N to 60 S over the viewBox 720 x 300.
function project(lon, lat) {
  return [(lon + 180) * 2, ((80 - lat) * 300) / 140];
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function seconds(s) {
  if (s === null || s === undefined) return "-";
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(1)} s`;
}

function bytes(n) {
  if (n === null || n === undefined) return "-";
  const units = ["B", "KiB", "MiB", "GiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function minutes(s) {
  return s < 90 ? `${Math.round(s)} s` : `${Math.round(s / 60)} min`;
}

function percent(x) {
  return `${Math.round(x * 100)}%`;
}

function clock(at) {
  return new Date(at * 1000).toLocaleTimeString([], { hour12: false });
}

// -- the header ----------------------------------------------------------------------------

function renderSummary(status) {
  const leader = status.leader;
  document.getElementById("leader").textContent = leader
    ? `${leader.id} (epoch ${leader.epoch}, for ${seconds(status.generated_at - leader.elected_at)})`
    : "none: election in progress";
  document.getElementById("write-region").textContent = status.write_region || "none";
  document.getElementById("strategy").textContent =
    `${(status.strategy || "-").toLowerCase()} · table v${status.table_version}`;
  document.getElementById("responder").textContent = status.responder;
}

// -- the map -------------------------------------------------------------------------------

function renderMap(status) {
  const map = document.getElementById("map");
  const nodes = [svg("rect", { x: 0, y: 0, width: 720, height: 300, fill: "#131a21" })];
  for (let lon = -150; lon <= 150; lon += 30) {
    const [x] = project(lon, 0);
    nodes.push(svg("line", { class: "graticule", x1: x, y1: 0, x2: x, y2: 300 }));
  }
  for (let lat = -60; lat <= 60; lat += 30) {
    const [, y] = project(0, lat);
    nodes.push(svg("line", { class: "graticule", x1: 0, y1: y, x2: 720, y2: y }));
  }
  for (const outline of LAND) {
    const points = outline.map(([lon, lat]) => project(lon, lat).join(",")).join(" ");
    nodes.push(svg("polygon", { class: "land", points }));
  }
  const at = {};
  status.regions.forEach((r, i) => {
    at[r.name] = r.location
      ? project(r.location.longitude, r.location.latitude)
      : [60 + i * 120, 285]; // no location known yet: in a row along the bottom
  });
  for (const r of status.regions) {
    // A standby's upstream, when its agent does not say, is the write region's primary.
    const upstream = r.upstream || status.write_region;
    if (r.role !== "standby" || !at[upstream] || upstream === r.name) continue;
    const [x1, y1] = at[upstream];
    const [x2, y2] = at[r.name];
    const bend = `${(x1 + x2) / 2},${Math.min(y1, y2) - 40}`;
    nodes.push(svg("path", {
      class: r.streaming ? "link" : "link broken",
      d: `M${x1},${y1} Q${bend} ${x2},${y2}`,
    }));
  }
  for (const r of status.regions) {
    const [x, y] = at[r.name];
    const group = svg("g", { "data-region": r.name, "data-state": r.state });
    if (r.write) group.append(svg("circle", { class: "write-ring", cx: x, cy: y, r: 15 }));
    group.append(svg("circle", { cx: x, cy: y, r: 10, fill: "var(--state)" }));
    const anchor = x > 600 ? "end" : x < 120 ? "start" : "middle";
    group.append(svg("text", { class: "label", x, y: y + 28, "text-anchor": anchor }, r.name));
    const role = r.fenced ? `${r.role} (fenced)` : r.role || "no report";
    group.append(svg("text", { class: "sublabel", x, y: y + 42, "text-anchor": anchor },
      `${r.state} · ${role} · ${percent(r.weight)}`));
    group.append(svg("title", {}, `${r.name}: ${r.state} (${r.reason})`));
    nodes.push(group);
  }
  map.replaceChildren(...nodes);
}

// -- the region cards ----------------------------------------------------------------------

function chart(history) {
  const width = 260;
  const height = 64;
  const box = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, preserveAspectRatio: "none" });
  if (!history) return el("div", { class: "chart-caption" }, "history: loading");
  if (history.error) return el("div", { class: "chart-caption" }, `history unavailable: ${history.error}`);
  const samples = history.samples;
  if (!samples.length) {
    return el("div", { class: "chart-caption" }, "history: no samples yet (the leader takes one every 5 s)");
  }
  // The server's clock, not the browser's: the samples are stamped by the leader.
  const end = view.status ? view.status.generated_at : Date.now() / 1000;
  // The window asked for, or less while there is less history (a young cluster).
  const start = Math.max(end - HISTORY_SECONDS, Math.min(samples[0].at, end - 60));
  const span = end - start;
  const x = (t) => ((t - start) / span) * width;
  const top = 4;
  const bottom = height - 12; // the state band below
  box.append(svg("line", { class: "axis", x1: 0, y1: bottom, x2: width, y2: bottom }));
  samples.forEach((s, i) => {
    const next = i + 1 < samples.length ? samples[i + 1].at : end;
    box.append(svg("rect", {
      x: x(s.at), y: bottom + 2, width: Math.max(1, x(next) - x(s.at)), height: 8,
      "data-state": s.state, fill: "var(--state)",
    }));
  });
  const most = Math.max(1, ...samples.map((s) => s.lag_seconds));
  const line = (value, scale) => samples
    .map((s) => `${x(s.at).toFixed(1)},${(bottom - (value(s) / scale) * (bottom - top)).toFixed(1)}`)
    .join(" ");
  if (samples.length) {
    box.append(svg("polyline", { class: "weight-line", points: line((s) => s.weight, 1) }));
    box.append(svg("polyline", { class: "lag", points: line((s) => s.lag_seconds, most) }));
  }
  return el("div", { class: "history", "data-samples": samples.length },
    el("div", { class: "chart-caption" },
      `last ${minutes(span)}: replay lag (up to ${seconds(most)}), weight (dashed), state`),
    box);
}

function card(r) {
  const badges = [el("span", { class: "badge state" }, r.state)];
  if (r.write) badges.push(el("span", { class: "badge write" }, "WRITE"));
  const role = r.fenced ? `${r.role} (fenced: ${r.fence_cause})` : r.role || "-";
  const lag = r.lag_bytes === null ? "-" : `${bytes(r.lag_bytes)} / ${seconds(r.lag_seconds)}`;
  return el("article", { class: "card", "data-region": r.name, "data-state": r.state },
    el("h3", {}, r.name, ...badges),
    el("div", { class: "reason" }, r.reason),
    el("dl", {},
      el("dt", {}, "role"), el("dd", { "data-field": "role" }, role),
      el("dt", {}, "weight"), el("dd", { "data-field": "weight" }, percent(r.weight),
        el("div", { class: "weight" }, el("span", { style: `width: ${percent(Math.min(1, r.weight))}` }))),
      el("dt", {}, "replay lag"), el("dd", { "data-field": "lag" }, lag),
      el("dt", {}, "last report"), el("dd", {}, r.last_report_age === null ? "never" : `${seconds(r.last_report_age)} ago`),
      el("dt", {}, "response"), el("dd", {}, `${Math.round(r.response_ms)} ms · ${(r.error_rate * 100).toFixed(1)}% errors`),
      el("dt", {}, "utilisation"), el("dd", {}, r.capacity ? `${percent(r.utilization)} of ${r.capacity}` : "-"),
    ),
    chart(view.histories[r.name]),
  );
}

function renderRegions(status) {
  document.getElementById("regions").replaceChildren(...status.regions.map(card));
}

// -- failover, incidents, events, etcd -----------------------------------------------------

function renderFailover(failover) {
  const box = document.getElementById("failover");
  if (!failover) {
    box.removeAttribute("data-phase");
    box.replaceChildren(el("p", { class: "quiet" }, "no failover on record"));
    return;
  }
  box.setAttribute("data-phase", failover.phase);
  box.setAttribute("data-failover", failover.id);
  const steps = failover.steps.map((s) => el("li", { "data-step": s.name, "data-status": s.status },
    el("span", {}, s.name),
    el("span", { class: "after" }, s.after === null ? (s.status === "current" ? "under way" : "") : `+${s.after.toFixed(2)} s`)));
  const facts = [el("p", { class: "quiet" }, failover.reason)];
  if (failover.selection_reason) facts.push(el("p", {}, `chosen: ${failover.selection_reason}`));
  if (failover.error) facts.push(el("p", { class: "error" }, `aborted: ${failover.error}`));
  if (failover.data_loss_seconds !== null || failover.data_loss_bytes !== null) {
    const parts = [];
    if (failover.data_loss_bytes !== null) parts.push(bytes(failover.data_loss_bytes));
    if (failover.data_loss_seconds !== null) parts.push(seconds(failover.data_loss_seconds));
    facts.push(el("p", {}, `data-loss bound: ${parts.join(", ")}`));
  }
  box.replaceChildren(
    el("div", { class: "head" },
      el("span", { class: "route" }, `${failover.from} → ${failover.to || "?"}`),
      el("span", { class: "badge phase" }, failover.phase),
      el("span", { class: "quiet" }, `${failover.kind.toLowerCase()} ${failover.id}, ${clock(failover.started_at)}`)),
    el("ol", { class: "steps" }, steps),
    ...facts,
  );
}

function renderIncidents(incidents) {
  const box = document.getElementById("incidents");
  if (!incidents || !incidents.available) {
    const why = incidents && incidents.error ? `unavailable: ${incidents.error}` : "not available on this coordinator";
    box.replaceChildren(el("p", { class: "quiet" }, why));
    return;
  }
  if (!incidents.incidents.length) {
    box.replaceChildren(el("p", { class: "quiet" }, "none open"));
    return;
  }
  box.replaceChildren(el("ul", {}, incidents.incidents.map((i) => el("li",
    { "data-incident": i.id, "data-severity": i.severity },
    el("span", { class: "badge severity" }, i.severity),
    ` ${i.cause}${i.regions.length ? " · " + i.regions.join(", ") : ""} · since ${clock(i.opened_at)}`,
    el("div", {}, i.summary),
    i.awaiting.length ? el("div", { class: "quiet" }, `waiting for: ${i.awaiting.join("; ")}`) : null))));
}

function renderEvents(events) {
  const items = [...events].reverse().map((e) => el("li", { "data-severity": e.severity, "data-kind": e.kind },
    el("time", {}, clock(e.at)), el("span", {}, e.message)));
  document.getElementById("events").replaceChildren(...items);
}

function renderEtcd(members) {
  document.getElementById("etcd").replaceChildren(...members.map((m) => el("li",
    { "data-healthy": String(m.healthy) },
    `${m.name} ${m.healthy ? "healthy" : "UNHEALTHY"}${m.leader ? " · raft leader" : ""}${m.error ? " · " + m.error : ""}`)));
}

// The failover arrives both in the status (read every 0.5 s) and on its own as the leader
// writes each phase; a status read before the newest phase must not set the panel back.
function takeFailover(failover) {
  const shown = view.failover;
  const newer = !failover ? false
    : !shown ? true
    : failover.id !== shown.id ? failover.started_at >= shown.started_at
    : (failover.updated_at || 0) >= (shown.updated_at || 0);
  if (newer) view.failover = failover;
  renderFailover(view.failover);
}

function render() {
  const status = view.status;
  if (!status) return;
  renderSummary(status);
  renderMap(status);
  renderRegions(status);
  takeFailover(status.failover);
  renderEtcd(status.etcd);
}

function problem(message) {
  const box = document.getElementById("problem");
  box.hidden = !message;
  box.textContent = message ? `${message}; showing the last view` : "";
}

// -- data ----------------------------------------------------------------------------------

async function getJSON(path) {
  const response = await fetch(path, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

async function loadHistories() {
  if (!view.status) return;
  await Promise.all(view.status.regions.map(async (r) => {
    try {
      view.histories[r.name] = await getJSON(`/api/history/${encodeURIComponent(r.name)}?seconds=${HISTORY_SECONDS}`);
    } catch (err) {
      view.histories[r.name] = { error: err.message };
    }
  }));
  renderRegions(view.status);
}

function follow() {
  const connection = document.getElementById("connection");
  const stream = new EventSource("/api/stream");
  stream.onopen = () => { connection.dataset.state = "live"; connection.textContent = "live"; };
  stream.onerror = () => { connection.dataset.state = "reconnecting"; connection.textContent = "reconnecting"; };
  stream.addEventListener("status", (e) => { view.status = JSON.parse(e.data); problem(""); render(); });
  stream.addEventListener("failover", (e) => takeFailover(JSON.parse(e.data)));
  stream.addEventListener("events", (e) => { view.events = JSON.parse(e.data); renderEvents(view.events); });
  stream.addEventListener("incidents", (e) => { view.incidents = JSON.parse(e.data); renderIncidents(view.incidents); });
  stream.addEventListener("unavailable", (e) => problem(JSON.parse(e.data).error));
}

async function start() {
  follow();
  try {
    const status = await getJSON("/api/status");
    if (!view.status) { view.status = status; render(); } // the stream may have been quicker
  } catch (err) {
    problem(err.message);
  }
  getJSON("/api/events").then((b) => { if (!view.events.length) renderEvents(b.events); }, () => {});
  getJSON("/api/incidents").then((b) => { if (!view.incidents) renderIncidents(b); }, () => {});
  await loadHistories();
  setInterval(loadHistories, HISTORY_EVERY_MS);
}

start();
