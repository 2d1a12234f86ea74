// runnerq console: plain JavaScript over the JSON API (docs/console.md). No build step, no
// dependencies. Every value from the server goes into the page as text (textContent), never
// as HTML. Live updates come from /api/events read with fetch (so the bearer token goes in a
// header); when that stream fails the page polls instead.
"use strict";

// gen: bumped by every route(); a GET made for an older view ends in Stale (see api()).
// timer: a view's own refresh (workers, the overview's slow fields); route() stops it.
const state = { session: null, live: null, poll: null, timer: null, gen: 0 };
const LISTS = ["ready", "keyed", "scheduled", "running", "dead", "completed"];
const TABS = [...LISTS, "workers", "schedules", "limits"];
const PRIORITIES = ["critical", "high", "normal", "low"];

// -- small helpers ------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "testid") node.dataset.testid = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function when(ms) {
  if (ms === null || ms === undefined) return "—";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}
function whenSeconds(s) { return s === null || s === undefined ? "—" : when(s * 1000); }
function enc(s) { return encodeURIComponent(s); }

function toast(text, bad) {
  const t = document.getElementById("toast");
  t.textContent = text;
  t.className = bad ? "bad" : "";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 5000);
}

function confirmAction(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

function cookie(name) {
  const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

class ApiError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

// What a read made for a view that is no longer shown ends with: dropped, never rendered
// (a slow answer for the view the user left must not replace the one they went to).
class Stale extends Error {}
window.addEventListener("unhandledrejection", (ev) => {
  if (ev.reason instanceof Stale) ev.preventDefault();
});

function authHeaders() {
  const token = sessionStorage.getItem("runnerq-token");
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path, options) {
  const opts = options || {};
  const gen = state.gen;
  const headers = { ...authHeaders(), Accept: "application/json" };
  if (opts.method && opts.method !== "GET") {
    headers["X-CSRF-Token"] = cookie("runnerq_csrf") || (state.session && state.session.csrf);
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, {
    method: opts.method || "GET",
    headers,
    credentials: "same-origin",
    body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
  });
  const doc = await response.json().catch(() => ({}));
  if ((!opts.method || opts.method === "GET") && gen !== state.gen) throw new Stale();
  if (!response.ok) {
    const e = doc.error || {};
    throw new ApiError(response.status, e.code || "error", e.message || response.statusText);
  }
  return doc;
}

async function act(what, path, body) {
  try {
    const doc = await api(path, { method: "POST", body: body || {} });
    toast(what + ": done");
    return doc;
  } catch (e) {
    toast(what + ": " + e.message, true);
    return null;
  }
}

const can = {
  operate: () => state.session && state.session.can.operate,
  administer: () => state.session && state.session.can.administer,
};

// -- live updates ------------------------------------------------------------------------

function stopLive() {
  if (state.live) state.live.abort();
  state.live = null;
  clearInterval(state.poll);
  state.poll = null;
}

// Run `refresh()` every `ms` while the view is shown (route() stops it).
function every(ms, refresh) {
  clearInterval(state.timer);
  const gen = state.gen;
  state.timer = setInterval(() => {
    if (gen !== state.gen) return;
    refresh().catch((e) => { if (!(e instanceof Stale)) console.warn("refresh failed:", e); });
  }, ms);
}

function setLive(text, cls) {
  const node = document.getElementById("live");
  node.textContent = text;
  node.className = cls || "";
}

// Follow /api/events?<params>; `onUpdate(doc)` for each update; `poll()` when it fails.
function startLive(params, onUpdate, poll) {
  stopLive();
  const controller = new AbortController();
  const gen = state.gen;
  state.live = controller;
  const query = new URLSearchParams(params).toString();
  const fallback = () => {
    if (controller.signal.aborted || state.live !== controller) return;
    setLive("polling", "polling");
    const ms = Math.max(2000, (state.session ? state.session.live_interval : 1) * 2000);
    state.poll = setInterval(() => {
      Promise.resolve().then(poll).catch((e) => {
        if (!(e instanceof Stale)) setLive("polling: " + e.message, "polling");
      });
    }, ms);
  };
  fetch("/api/events?" + query, {
    headers: { ...authHeaders(), Accept: "text/event-stream" },
    credentials: "same-origin",
    signal: controller.signal,
  }).then(async (response) => {
    if (!response.ok || !response.body) { fallback(); return; }
    setLive("live", "on");
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (gen !== state.gen) continue;  // the view is being replaced
        if (event === "update" && data) {
          setLive("live", "on");
          onUpdate(JSON.parse(data));
        } else if (event === "error") setLive("Redis unavailable", "polling");
      }
    }
    // The server ends a stream after a while: follow again (not in a tight loop when
    // something closes every stream at once).
    if (state.live === controller) {
      setTimeout(() => {
        if (state.live === controller) startLive(params, onUpdate, poll);
      }, 1000);
    }
  }).catch((e) => {
    if (e.name !== "AbortError") console.error("live updates failed:", e);
    fallback();
  });
}

// -- views -------------------------------------------------------------------------------

function main() { return document.getElementById("main"); }

// -- a queue's ActivityQueue, in a cluster ------------------------------------------------
// The overview's optional `cluster` field: null or absent outside a cluster (nothing shown);
// read defensively, field by field, since it comes from whatever the operator wrote.

const READY = { True: "ok", False: "bad", Unknown: "unknown" };
const READY_TEXT = { True: "Ready", False: "Not ready", Unknown: "Ready: unknown" };

function clusterOf(q) {
  const c = q ? q.cluster : null;
  return c && typeof c === "object" && !Array.isArray(c) ? c : null;
}
function text(v) { return typeof v === "string" ? v : ""; }
function count(n) { return Number.isInteger(n) ? String(n) : "—"; }

function readyBadge(status) {
  const s = Object.hasOwn(READY, status) ? status : "Unknown";
  return el("span", { class: "badge ready-" + READY[s], testid: "cluster-ready",
    title: "the ActivityQueue's Ready condition: " + s }, READY_TEXT[s]);
}

function lastScale(c) {
  const last = c.last_scale && typeof c.last_scale === "object" ? c.last_scale : null;
  if (!last) return null;
  return el("span", { class: "muted", testid: "cluster-last-scale",
    title: "last scale: " + text(last.time) }, text(last.message) || "scaled " + text(last.time));
}

// The cluster line in a queue's row of the overview (null without a cluster).
function clusterLine(q) {
  const c = clusterOf(q);
  if (!c) return null;
  return el("div", { class: "cluster", testid: "cluster",
    title: `ActivityQueue ${text(c.namespace)}/${text(c.name)}: replicas / desired` },
    el("span", { testid: "cluster-replicas" }, `${count(c.replicas)} / ${count(c.desired)}`),
    " replicas ", readyBadge(c.ready), " ", lastScale(c));
}

// The ActivityQueue on a queue's own page: replicas, Ready, last scale and the conditions.
function queueCluster(q) {
  const c = clusterOf(q);
  if (!c) return null;
  const conditions = (Array.isArray(c.conditions) ? c.conditions : [])
    .filter((x) => x && typeof x === "object");
  const last = c.last_scale && typeof c.last_scale === "object" ? c.last_scale : null;
  return el("section", { class: "cluster-status", testid: "queue-cluster" },
    el("p", {}, "ActivityQueue ", el("code", {}, `${text(c.namespace)}/${text(c.name)}`),
      " · replicas ", el("b", { testid: "cluster-replicas" },
        `${count(c.replicas)} / ${count(c.desired)}`), " (now / desired) · ",
      readyBadge(c.ready),
      last ? [" · last scale ", text(last.time), ": ",
        el("span", { testid: "cluster-last-scale" }, text(last.message))] : ""),
    conditions.length ? el("table", { class: "conditions", testid: "cluster-conditions" },
      el("thead", {}, el("tr", {}, ["condition", "status", "reason", "message", "since"]
        .map((h) => el("th", {}, h)))),
      el("tbody", {}, conditions.map((x) => el("tr", { testid: "cluster-condition",
        "data-type": text(x.type) },
        el("td", {}, text(x.type)),
        el("td", {}, el("span", { class: "badge ready-" + (READY[x.status] || "unknown") },
          text(x.status) || "Unknown")),
        el("td", {}, text(x.reason)), el("td", {}, text(x.message)),
        el("td", {}, text(x.lastTransitionTime)))))) : null);
}

// -- the overview --------------------------------------------------------------------------

function queueRow(q) {
  const t = q.throughput;
  return el("tr", { testid: "queue-row", "data-queue": q.queue },
    el("td", {}, el("a", { href: "#/queue/" + enc(q.queue) + "/ready", testid: "queue-link" }, q.queue),
      q.paused ? el("span", { class: "badge paused", testid: "paused-badge" }, "paused") : null,
      clusterLine(q)),
    ...["pending", "running", "scheduled", "dead_letter"].map((k) =>
      el("td", { class: "num", testid: "count-" + k }, q[k])),
    el("td", { class: "num", testid: "by-priority" },
      PRIORITIES.map((p) => p[0].toUpperCase() + ":" + ((q.by_priority || {})[p] || 0)).join(" ")),
    el("td", { class: "num", testid: "count-workers" }, q.workers === undefined ? "—" : q.workers),
    el("td", { class: "num", testid: "throughput-hour" },
      t ? t.completed_hour + " / " + t.failed_hour : "not recorded"),
    el("td", { class: "num", testid: "throughput-day" },
      t ? t.completed_day + " / " + t.failed_day : "not recorded"),
    el("td", { class: "num", testid: "count-completed" }, q.completed));
}

// Fields of the overview that live updates do not carry (they send counts only): read again
// every this many milliseconds.
const SLOW_FIELDS_MS = 10000;

async function viewOverview() {
  const doc = await api("/api/queues");
  const body = el("tbody", { testid: "queues" });
  const none = el("p", { class: "muted", testid: "no-queues" }, "No queues found.");
  const table = el("table", { testid: "queues-table" },
    el("thead", {}, el("tr", {}, ["queue", "pending", "running", "scheduled", "dead letters",
      "pending by priority", "workers", "done / failed 1h", "done / failed 24h", "completed"]
      .map((h, i) => el("th", { class: i ? "num" : null }, h)))), body);
  const byName = new Map();
  // A queue found by a live update or a read is added; the table shows once there is one.
  const show = (q) => {
    const merged = { ...(byName.get(q.queue) || {}), ...q };
    byName.set(q.queue, merged);
    const row = body.querySelector(`tr[data-queue="${CSS.escape(q.queue)}"]`);
    if (row) row.replaceWith(queueRow(merged));
    else body.append(queueRow(merged));
    table.hidden = false;
    none.hidden = true;
  };
  table.hidden = true;
  doc.queues.forEach(show);
  main().replaceChildren(el("h1", {}, "Queues"), table, none);
  startLive({}, (update) => (update.queues || []).forEach(show), () => viewOverview());
  every(SLOW_FIELDS_MS, async () => (await api("/api/queues")).queues.forEach(show));
}

function tabs(queue, active) {
  return el("div", { class: "tabs", testid: "queue-tabs" }, TABS.map((t) =>
    el("a", { href: "#/queue/" + enc(queue) + "/" + t, class: t === active ? "active" : null,
      testid: "tab-" + t }, t === "dead" ? "dead letters" : t)));
}

function queueActions(queue, overview) {
  const bar = el("div", { class: "bar", testid: "queue-actions" });
  if (can.operate()) {
    bar.append(overview.paused
      ? el("button", { testid: "resume", on: { click: async () => {
          if (await act("resume", `/api/queues/${enc(queue)}/resume`)) route(); } } }, "Resume")
      : el("button", { testid: "pause", on: { click: async () => {
          if (await act("pause", `/api/queues/${enc(queue)}/pause`)) route(); } } }, "Pause"));
    bar.append(el("button", { testid: "enqueue-open", on: { click: () => enqueueForm(queue) } },
      "Enqueue…"));
  }
  return bar;
}

function enqueueForm(queue) {
  const form = el("form", { class: "login", testid: "enqueue-form" },
    el("label", {}, "type ", el("input", { name: "type", required: true, testid: "enqueue-type" })),
    el("label", {}, "priority ", el("select", { name: "priority", testid: "enqueue-priority" },
      PRIORITIES.map((p) => el("option", { value: p, selected: p === "normal" }, p)))),
    el("label", {}, "payload (JSON)",
      el("textarea", { name: "payload", testid: "enqueue-payload" }, "{}")),
    el("p", { class: "error", testid: "enqueue-error" }),
    el("button", { class: "primary", testid: "enqueue-submit" }, "Enqueue"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = new FormData(form);
    const error = form.querySelector("[data-testid=enqueue-error]");
    let payload;
    try { payload = JSON.parse(data.get("payload") || "null"); } catch (e) {
      error.textContent = "payload is not JSON: " + e.message;
      return;
    }
    try {
      const done = await api(`/api/queues/${enc(queue)}/activities`, { method: "POST",
        body: { type: data.get("type"), priority: data.get("priority"), payload } });
      location.hash = "#/activity/" + enc(queue) + "/" + enc(done.id);
    } catch (e) { error.textContent = e.message; }
  });
  main().replaceChildren(el("h1", {}, "Enqueue into " + queue), form);
  stopLive();
}

function listTable(queue, name, doc, selected) {
  const columns = {
    ready: ["id", "type", "priority", "attempts", "created"],
    keyed: ["id", "type", "priority", "limit key", "created"],
    scheduled: ["id", "type", "priority", "attempts", "due"],
    running: ["id", "type", "worker", "lease expires", "attempts"],
    dead: ["id", "type", "reason", "error", "failed"],
    completed: ["id", "status", "result", "finished"],
  }[name];
  const cells = (item) => {
    const link = el("a", { href: "#/activity/" + enc(queue) + "/" + enc(item.id),
      testid: "activity-link" }, item.id);
    const created = whenSeconds(item.created_at);
    return {
      ready: [link, item.type, item.priority, item.attempts, created],
      keyed: [link, item.type, item.priority, item.limit_key, created],
      scheduled: [link, item.type, item.priority, item.attempts, when(item.due_ms)],
      running: [link, item.type, item.worker, when(item.lease_expires_ms), item.attempts],
      dead: [link, item.type, item.reason, item.error, whenSeconds(item.failed_at)],
      completed: [link, item.status, item.result, when(item.finished_ms)],
    }[name];
  };
  const pick = name === "dead" && can.operate();
  return el("table", { testid: "list-table", "data-list": name },
    el("thead", {}, el("tr", {}, pick ? el("th", {}) : null, columns.map((c) => el("th", {}, c)))),
    el("tbody", {}, doc.items.map((item) => el("tr", { testid: "list-row", "data-id": item.id },
      pick ? el("td", {}, el("input", { type: "checkbox", testid: "select-row",
        checked: selected.has(item.id), on: { change: (ev) => {
          if (ev.target.checked) selected.add(item.id); else selected.delete(item.id);
        } } })) : null,
      cells(item).map((c, i) => el("td", { class: columns[i] === "error" ? "err" : null }, c))))));
}

async function deadActions(queue, selected) {
  const bar = el("div", { class: "bar", testid: "dead-actions" });
  if (can.operate()) {
    bar.append(el("button", { testid: "requeue-selected", on: { click: async () => {
      if (!selected.size) { toast("select dead letters first", true); return; }
      const ids = [...selected];
      if (!await confirmAction(`Requeue ${ids.length} dead letter(s)?`)) return;
      const doc = await act("requeue", `/api/queues/${enc(queue)}/dead/requeue`, { ids });
      if (doc) { selected.clear(); route(); }
    } } }, "Requeue selected"));
  }
  if (can.administer()) {
    bar.append(el("button", { testid: "requeue-all", on: { click: async () => {
      const preview = await api(`/api/queues/${enc(queue)}/dead/requeue-all`);
      if (!preview.count) { toast("no dead letters"); return; }
      if (!await confirmAction(`Requeue all ${preview.count} dead letters?`)) return;
      let cursor = null, total = 0;
      do {
        const step = await act("requeue all", `/api/queues/${enc(queue)}/dead/requeue-all`,
          { through: preview.through, cursor });
        if (!step) return;
        total += step.requeued;
        cursor = step.next;
        toast(`requeued ${total} of ${preview.count}`);
      } while (cursor);
      route();
    } } }, "Requeue all…"));
    bar.append(el("button", { class: "danger", testid: "purge", on: { click: async () => {
      const preview = await api(`/api/queues/${enc(queue)}/dead/requeue-all`);
      if (!preview.count) { toast("no dead letters"); return; }
      if (!await confirmAction(`Delete all ${preview.count} dead letters for good?`)) return;
      if (await act("purge", `/api/queues/${enc(queue)}/dead/purge`)) route();
    } } }, "Purge…"));
  }
  return bar;
}

function summaryText(q, workers) {
  return `${q.pending} pending · ${q.running} running · ${q.scheduled} scheduled`
    + ` · ${q.dead_letter} dead letters · ${workers} workers`;
}

function workersTable(workers) {
  if (!workers.length) {
    return el("p", { class: "muted", testid: "no-workers" }, "No live workers (or not recorded).");
  }
  return el("table", { testid: "workers-table" },
    el("thead", {}, el("tr", {}, ["id", "host", "pod", "pid", "version", "busy / slots",
      "started", "last seen"].map((h) => el("th", {}, h)))),
    el("tbody", {}, workers.map((w) => el("tr", { testid: "worker-row", "data-id": w.id,
      "data-pid": w.pid },
      [w.id, w.host, w.pod, w.pid, w.version, `${w.busy} / ${w.slots}`, when(w.started_ms),
        when(w.last_seen_ms)].map((c) => el("td", {}, c))))));
}

async function viewQueue(queue, tab, query) {
  const overview = await api(`/api/queues/${enc(queue)}`);
  let workers = overview.workers;
  const summary = el("p", { class: "muted", testid: "queue-summary" },
    summaryText(overview, workers));
  const head = [
    el("h1", { testid: "queue-title" }, queue, overview.paused
      ? el("span", { class: "badge paused", testid: "paused-badge" }, "paused") : null),
    summary,
    queueCluster(overview),
    queueActions(queue, overview),
    tabs(queue, tab),
  ].filter(Boolean);
  // Live updates carry the queue's counts: the summary follows them.
  const onCounts = (update) => {
    const counts = (update.queues || []).find((c) => c.queue === queue);
    if (counts) summary.textContent = summaryText(counts, workers);
  };
  if (tab === "workers") {
    // Workers are not in live updates (their registry is not a count): read them again
    // every live interval (at least a second), so a worker that is gone drops out.
    const doc = await api(`/api/queues/${enc(queue)}/workers`);
    const holder = el("div", { testid: "workers-holder" }, workersTable(doc.workers));
    main().replaceChildren(...head, holder);
    startLive({ queue }, onCounts, () => {});
    const ms = Math.max(1000, (state.session ? state.session.live_interval : 1) * 1000);
    every(ms, async () => {
      const found = (await api(`/api/queues/${enc(queue)}/workers`)).workers;
      workers = found.length;
      holder.replaceChildren(workersTable(found));
    });
    return;
  }
  if (tab === "schedules") {
    const doc = await api(`/api/queues/${enc(queue)}/schedules`);
    if (!doc.schedules.length) {
      main().replaceChildren(...head,
        el("p", { class: "muted", testid: "no-schedules" }, "No schedules on this queue."));
      stopLive();
      return;
    }
    main().replaceChildren(...head, el("table", { testid: "schedules-table" },
      el("thead", {}, el("tr", {}, ["name", "trigger", "next tick", "last tick", "fired",
        "skipped", "missed", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, doc.schedules.map((s) => el("tr", { testid: "schedule-row",
        "data-name": s.name },
        [s.name, s.trigger || s.error, s.suspended ? "suspended" : whenSeconds(s.next_tick),
          whenSeconds(s.last_tick), s.fired, s.skipped, s.missed].map((c) => el("td", {}, c)),
        el("td", {}, can.operate() ? el("button", { testid: "trigger-schedule", on: { click: async () => {
          const done = await act("trigger " + s.name,
            `/api/queues/${enc(queue)}/schedules/${enc(s.name)}/trigger`);
          if (done) location.hash = "#/activity/" + enc(queue) + "/" + enc(done.id);
        } } }, "Run now") : null))))));
    stopLive();
    return;
  }
  if (tab === "limits") {
    const doc = await api(`/api/queues/${enc(queue)}/limits`);
    main().replaceChildren(...head, el("h2", {}, "Limits"),
      el("pre", { testid: "limits" }, JSON.stringify(doc.limits, null, 2)),
      el("h2", {}, "Throttled and held"),
      el("pre", { testid: "limit-stats" }, JSON.stringify(doc.stats, null, 2)));
    stopLive();
    return;
  }
  const priority = query.get("priority") || "";
  const cursor = query.get("cursor") || "";
  const params = new URLSearchParams();
  if (priority) params.set("priority", priority);
  if (cursor) params.set("cursor", cursor);
  const path = `/api/queues/${enc(queue)}/lists/${tab}?` + params.toString();
  const doc = await api(path);
  const selected = new Set();
  const filters = el("div", { class: "bar", testid: "list-filters" });
  if (tab === "ready" || tab === "keyed") {
    filters.append(...["", ...PRIORITIES].map((p) => el("a", {
      href: `#/queue/${enc(queue)}/${tab}` + (p ? "?priority=" + p : ""),
      class: p === priority ? "badge paused" : "badge", testid: "priority-" + (p || "all") },
      p || "all")));
  }
  const pager = el("div", { class: "bar", testid: "pager" },
    el("span", { class: "muted", testid: "list-total" }, `${doc.total} in this list`),
    cursor ? el("a", { href: `#/queue/${enc(queue)}/${tab}` + (priority ? "?priority=" + priority : ""),
      testid: "first-page" }, "first page") : null,
    doc.next ? el("a", { testid: "next-page", href: `#/queue/${enc(queue)}/${tab}?` +
      new URLSearchParams({ ...(priority ? { priority } : {}), cursor: doc.next }).toString() },
      "next page") : null);
  const holder = el("div", { testid: "list-holder" }, listTable(queue, tab, doc, selected));
  main().replaceChildren(...head, filters, tab === "dead" ? await deadActions(queue, selected) : "",
    holder, pager);
  if (cursor) { stopLive(); return; }  // later pages stay still; the first one is live
  const live = { queue, list: tab };
  if (priority) live.priority = priority;
  startLive(live, (update) => {
    onCounts(update);
    if (update.list) holder.replaceChildren(listTable(queue, tab, update.list, selected));
  }, async () => {
    holder.replaceChildren(listTable(queue, tab, await api(path), selected));
  });
}

// A label and its value: two cells of the facts grid.
function fact(label, value, testid) {
  return [el("span", { class: "label" }, label),
    el("span", { testid: testid || null }, value ?? "—")];
}

// An attempt's last progress, kept in its event: " at 50% (message)".
function progressNote(p) {
  if (!p || typeof p !== "object" || typeof p.f !== "number") return "";
  return ` at ${Math.round(p.f * 100)}%` + (typeof p.m === "string" && p.m ? ` (${p.m})` : "");
}

// The claim and completion of an activity completed with no history list (most: done at the
// first try, docs/history.md): its result document's lease token ("<worker id>:<seq>@<claim
// ms>") and its completion time.
function completionEvents(doc) {
  const lease = doc.result && typeof doc.result.lease === "string" ? doc.result.lease : "";
  const at = lease.lastIndexOf("@");
  const head = at >= 0 ? lease.slice(0, at) : lease;
  const worker = head.includes(":") ? head.slice(0, head.lastIndexOf(":")) : head;
  const claimed = at >= 0 ? Number(lease.slice(at + 1)) : NaN;
  const out = [];
  if (worker && Number.isFinite(claimed)) out.push({ t: claimed, e: "claimed", w: worker });
  if (doc.finished_ms) out.push({ t: doc.finished_ms, e: "completed", w: worker || undefined });
  return out;
}

// The events to show: the enqueue (not stored: the record's creation time), those kept, and
// a completion that left no event of its own.
function timeline(doc, rec) {
  let events = Array.isArray(doc.events) ? doc.events : [];
  if (doc.state === "completed" && !events.some((e) => e.e === "completed")) {
    events = [...events, ...completionEvents(doc)];
  }
  if (typeof rec.created_at === "number" && !events.some((e) => e.e === "enqueued")) {
    return [{ t: Math.round(rec.created_at * 1000), e: "enqueued" }, ...events];
  }
  return events;
}

function activityBody(queue, doc) {
  const rec = doc.record || {};
  const parts = [
    el("div", { class: "grid", testid: "activity-facts" },
      fact("state", doc.state, "activity-state"),
      fact("type", rec.type || "—", "activity-type"),
      fact("priority", rec.priority || "normal"),
      fact("attempts", doc.attempts ?? "—", "activity-attempts"),
      fact("redeliveries", doc.redeliveries),
      fact("created", whenSeconds(rec.created_at)),
      fact("idempotency key", rec.idempotency_key || "—"),
      fact("limit key", rec.limit_key || "—"),
      doc.state === "running" ? [fact("worker", doc.worker, "activity-worker"),
        fact("lease expires", when(doc.lease_expires_ms))] : [],
      doc.state === "scheduled" ? fact("due", when(doc.due_ms)) : [],
      doc.finished_ms ? fact("finished", when(doc.finished_ms)) : []),
  ];
  if (doc.progress) {
    parts.push(el("h2", {}, "Progress"), el("div", { testid: "activity-progress" },
      el("progress", { max: 1, value: doc.progress.fraction ?? 0 }),
      " ", doc.progress.message || ""));
  }
  if (doc.dead_letter) {
    parts.push(el("h2", {}, "Dead letter"), el("div", { testid: "activity-dead-letter" },
      el("p", {}, "reason: ", doc.dead_letter.reason), el("pre", { class: "error" }, doc.dead_letter.error)));
  }
  if (doc.result) parts.push(el("h2", {}, "Result"),
    el("pre", { testid: "activity-result" }, JSON.stringify(doc.result, null, 2)));
  parts.push(el("h2", {}, "Payload"),
    el("pre", { testid: "activity-payload" }, JSON.stringify(rec.payload ?? null, null, 2)));
  if (rec.metadata && Object.keys(rec.metadata).length) parts.push(el("h2", {}, "Metadata"),
    el("pre", { testid: "activity-metadata" }, JSON.stringify(rec.metadata, null, 2)));
  const events = timeline(doc, rec);
  parts.push(el("h2", {}, "Timeline"), events.length
    ? el("ol", { class: "timeline", testid: "activity-timeline" }, events.map((e) =>
        el("li", { testid: "event", "data-event": e.e }, when(e.t), " ", el("b", {}, e.e),
          e.w ? " by " + e.w : "", e.n ? " attempt " + e.n : "",
          e.reason ? " (" + e.reason + ")" : "", e.at ? " again at " + when(e.at) : "",
          progressNote(e.p), e.err ? el("div", { class: "error" }, e.err) : "")))
    : el("p", { class: "muted", testid: "no-timeline" }, "not recorded"));
  return parts;
}

async function viewActivity(queue, id) {
  const path = `/api/queues/${enc(queue)}/activities/${enc(id)}`;
  const bar = el("div", { class: "bar", testid: "activity-actions" });
  const body = el("div", { testid: "activity-body" });
  // A finished activity's record is deleted: keep showing the one this page saw.
  let record = null;
  const show = (found) => {
    if (!found) return;
    let d = found;
    if (d.record) record = d.record;
    else if (record) d = { ...d, record };
    body.replaceChildren(...activityBody(queue, d));
    buttons(d);
  };
  const refresh = async () => show(await api(path));
  const buttons = (d) => {
    bar.replaceChildren();
    if (!can.operate()) return;
    if (["ready", "scheduled", "running"].includes(d.state)) {
      bar.append(el("button", { class: "danger", testid: "cancel", on: { click: async () => {
        if (!await confirmAction("Cancel " + id + "?")) return;
        if (await act("cancel", `${path}/cancel`)) await refresh();
      } } }, "Cancel"));
    }
    if (d.state === "dead_lettered" && d.dead_letter && d.dead_letter.requeueable) {
      bar.append(el("button", { class: "primary", testid: "requeue", on: { click: async () => {
        if (await act("requeue", `/api/queues/${enc(queue)}/dead/requeue`, { ids: [id] })) {
          await refresh();
        }
      } } }, "Requeue"));
    }
  };
  await refresh();
  main().replaceChildren(
    el("h1", {}, el("a", { href: "#/queue/" + enc(queue) + "/ready" }, queue), " / ",
      el("code", { testid: "activity-id" }, id)), bar, body);
  startLive({ queue, activity: id }, (update) => show(update.activity), refresh);
}

async function viewSearch(query) {
  stopLive();
  const queues = (await api("/api/queues")).queues.map((q) => q.queue);
  const form = el("form", { class: "bar", testid: "search-form" },
    el("select", { name: "by", testid: "search-by" }, [["id", "activity id"],
      ["idempotency_key", "idempotency key"], ["type", "type (one queue)"],
      ["error", "dead-letter error (one queue)"]].map(([v, t]) =>
        el("option", { value: v, selected: query.get("by") === v }, t))),
    el("select", { name: "queue", testid: "search-queue" }, el("option", { value: "" }, "all queues"),
      queues.map((q) => el("option", { value: q, selected: query.get("queue") === q }, q))),
    el("input", { name: "q", value: query.get("q") || "", placeholder: "search", testid: "search-input" }),
    el("button", { class: "primary", testid: "search-submit" }, "Search"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const data = new URLSearchParams(new FormData(form));
    location.hash = "#/search?" + data.toString();
  });
  const out = el("div", { testid: "search-results" });
  main().replaceChildren(el("h1", {}, "Search"), form, out);
  if (!query.get("q")) return;
  const params = new URLSearchParams(query);
  try {
    const doc = await api("/api/search?" + params.toString());
    out.append(doc.items.length ? el("table", {}, el("tbody", {}, doc.items.map((i) =>
      el("tr", { testid: "search-row", "data-id": i.id },
        el("td", {}, el("a", { href: "#/activity/" + enc(i.queue) + "/" + enc(i.id),
          testid: "search-link" }, i.id)),
        el("td", {}, i.queue), el("td", {}, i.where || i.type || ""),
        el("td", { class: "err" }, i.error || "")))))
      : el("p", { class: "muted", testid: "search-empty" }, "Nothing found"
        + (doc.scanned !== undefined ? ` in ${doc.scanned} looked at` : "") + "."));
    if (doc.next) {
      params.set("cursor", doc.next);
      out.append(el("a", { href: "#/search?" + params.toString(), testid: "search-more" },
        "look further"));
    }
  } catch (e) { out.append(el("p", { class: "error", testid: "search-error" }, e.message)); }
}

async function viewAudit(query) {
  stopLive();
  const params = new URLSearchParams();
  if (query.get("cursor")) params.set("cursor", query.get("cursor"));
  const doc = await api("/api/audit?" + params.toString());
  main().replaceChildren(el("h1", {}, "Audit"), el("table", { testid: "audit-table" },
    el("thead", {}, el("tr", {}, ["when", "who", "role", "action", "queue", "target", "count"]
      .map((h) => el("th", {}, h)))),
    el("tbody", {}, doc.items.map((a) => el("tr", { testid: "audit-row" },
      [when(a.ms), a.who, a.role, a.action, a.queue, a.target, a.count]
        .map((c) => el("td", {}, c)))))),
    doc.next ? el("a", { href: "#/audit?cursor=" + enc(doc.next), testid: "audit-more" }, "older")
      : "");
}

function viewLogin(message) {
  stopLive();
  setLive("", "");
  const form = el("form", { class: "login", testid: "login-form" },
    el("p", {}, message || "Sign in with a console token."),
    el("input", { type: "password", name: "token", placeholder: "token", testid: "login-token",
      autocomplete: "off" }),
    el("button", { class: "primary", testid: "login-submit" }, "Sign in"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("runnerq-token", new FormData(form).get("token"));
    start();
  });
  main().replaceChildren(el("h1", {}, "runnerq console"), form);
}

// -- routing -----------------------------------------------------------------------------

async function route() {
  state.gen += 1;
  clearInterval(state.timer);
  state.timer = null;
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, search] = hash.split("?");
  const query = new URLSearchParams(search || "");
  try {
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    if (parts[0] === "queue" && parts[1]) await viewQueue(parts[1], parts[2] || "ready", query);
    else if (parts[0] === "activity" && parts[2]) await viewActivity(parts[1], parts[2]);
    else if (parts[0] === "search") await viewSearch(query);
    else if (parts[0] === "audit") await viewAudit(query);
    else await viewOverview();
  } catch (e) {
    if (e instanceof Stale) return;  // another view is being shown
    if (e.status === 401) {
      sessionStorage.removeItem("runnerq-token");
      viewLogin("Your token was not accepted.");
      return;
    }
    stopLive();
    main().replaceChildren(el("p", { class: "error", testid: "view-error" },
      e.message || String(e)));
  }
}

async function start() {
  try {
    state.session = await api("/api/session");
  } catch (e) {
    if (e.status === 401) {
      const had = sessionStorage.getItem("runnerq-token");
      sessionStorage.removeItem("runnerq-token");
      viewLogin(had ? "That token was not accepted: sign in with a console token." : null);
      return;
    }
    main().replaceChildren(el("p", { class: "error", testid: "view-error" }, e.message));
    return;
  }
  const who = state.session.identity;
  document.getElementById("who").textContent = `${who.name} (${who.role})`
    + (state.session.read_only ? " · read-only" : "");
  document.body.dataset.role = who.role;
  route();
}

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", start);
