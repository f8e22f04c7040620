// Banyan's web page: a read-only view of the scheduler's state. It reads
// the JSON under /api/ and polls the shown view every second; an answer
// that did not change leaves the DOM alone. Views: #/jobs, #/job/<id>,
// #/pools, #/agents.
"use strict";

const TOKEN_KEY = "banyan-token";
const POLL_MS = 1000;
const view = document.getElementById("view");
const statusEl = document.getElementById("status");
const login = document.getElementById("login");

let current = null; // {key, path, render, last}

// el builds an element: attributes (class, title, style, data-*, on*) and
// children (strings become text, never HTML).
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "style") Object.assign(e.style, v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  appendKids(e, kids);
  return e;
}

function appendKids(e, kids) {
  for (const k of kids.flat(Infinity)) {
    if (k === undefined || k === null || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
}

// fill replaces the children of e, with el's rules for kids.
function fill(e, ...kids) {
  e.replaceChildren();
  appendKids(e, kids);
}

class Unauthorized extends Error {}

async function api(path) {
  const headers = {};
  const tok = sessionStorage.getItem(TOKEN_KEY);
  if (tok) headers["Authorization"] = "Bearer " + tok;
  const r = await fetch(path, { headers, cache: "no-store" });
  const text = await r.text();
  if (r.status === 401) throw new Unauthorized(JSON.parse(text).error);
  if (!r.ok) {
    let msg = text;
    try { msg = JSON.parse(text).error; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return text;
}

login.addEventListener("submit", (ev) => {
  ev.preventDefault();
  const v = document.getElementById("token").value.trim();
  if (v) sessionStorage.setItem(TOKEN_KEY, v);
  login.hidden = true;
  refresh(true);
});

function fmtDur(ms) {
  if (ms < 1000) return ms + "ms";
  const s = ms / 1000;
  if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + "s";
  const m = Math.floor(s / 60);
  if (m < 60) return m + "m" + String(Math.round(s % 60)).padStart(2, "0") + "s";
  return Math.floor(m / 60) + "h" + String(m % 60).padStart(2, "0") + "m";
}

function fmtTime(ms) {
  return ms ? new Date(ms).toLocaleString() : "";
}

function stateBadge(s) {
  return el("span", { class: "state state-" + s }, s);
}

// ---- router and polling ----

function route() {
  const h = location.hash.replace(/^#\/?/, "");
  const [name, ...rest] = h.split("/");
  const arg = decodeURIComponent(rest.join("/"));
  switch (name) {
    case "job": return { key: "job:" + arg, path: "/api/jobs/" + encodeURIComponent(arg), render: renderJob, nav: "jobs" };
    case "pools": return { key: "pools", path: "/api/pools", render: renderPools, nav: "pools" };
    case "agents": return { key: "agents", path: "/api/agents", render: renderAgents, nav: "agents" };
    default: return { key: "jobs", path: () => "/api/jobs?" + jobQuery(), render: renderJobs, nav: "jobs" };
  }
}

async function refresh(force) {
  const cur = current;
  if (!cur) return;
  const path = typeof cur.path === "function" ? cur.path() : cur.path;
  try {
    const text = await api(path);
    if (cur !== current) return; // navigated away meanwhile
    login.hidden = true;
    statusEl.textContent = "updated " + new Date().toLocaleTimeString();
    if (!force && text === cur.last) return;
    cur.last = text;
    cur.render(JSON.parse(text), cur);
  } catch (e) {
    if (cur !== current) return;
    if (e instanceof Unauthorized) {
      login.hidden = false;
      document.getElementById("login-error").textContent = sessionStorage.getItem(TOKEN_KEY) ? e.message : "";
      statusEl.textContent = "token needed";
      cur.last = null;
      return;
    }
    statusEl.textContent = "error: " + e.message;
    fill(cur.body || view, el("p", { class: "error" }, e.message));
  }
}

function navigate() {
  current = route();
  for (const a of document.querySelectorAll("header nav a")) {
    a.classList.toggle("active", a.dataset.view === current.nav);
  }
  fill(view);
  current.body = null;
  refresh(true);
}

window.addEventListener("hashchange", navigate);
navigate();
setInterval(() => refresh(false), POLL_MS);

// ---- jobs list ----

const STATES = ["", "queued", "running", "succeeded", "failed", "cancelled"];
const jobFilter = { pool: "", state: "", name: "" };

function jobQuery() {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(jobFilter)) if (v) q.set(k, v);
  return q.toString();
}

function renderJobs(data, cur) {
  if (!cur.body) {
    const onFilter = (k) => (ev) => { jobFilter[k] = ev.target.value; refresh(true); };
    const poolSel = el("select", { id: "filter-pool", onchange: onFilter("pool") }, el("option", { value: "" }, "all pools"));
    cur.poolSel = poolSel;
    fill(view,
      el("h1", {}, "Jobs"),
      el("div", { class: "filters" },
        el("label", {}, "pool", poolSel),
        el("label", {}, "state", el("select", { id: "filter-state", onchange: onFilter("state") },
          STATES.map((s) => el("option", { value: s, selected: s === jobFilter.state }, s || "all states")))),
        el("label", {}, "name", el("input", { id: "filter-name", type: "search", value: jobFilter.name,
          placeholder: "name or id", oninput: onFilter("name") }))),
      cur.body = el("div", { id: "jobs" }));
  }
  const have = [...cur.poolSel.options].map((o) => o.value).join("\n");
  if (have !== ["", ...data.pools].join("\n")) {
    fill(cur.poolSel, el("option", { value: "" }, "all pools"),
      data.pools.map((p) => el("option", { value: p, selected: p === jobFilter.pool }, p)));
  }
  if (!data.jobs.length) {
    fill(cur.body, el("p", { class: "muted" }, "No jobs match."));
    return;
  }
  fill(cur.body, el("table", { class: "jobs" },
    el("thead", {}, el("tr", {}, ["ID", "NAME", "POOL", "CLASS", "PRIO", "STATE", "TASKS", "SUBMITTED", "TOOK"]
      .map((h) => el("th", {}, h)))),
    el("tbody", {}, data.jobs.map((j) => {
      const c = j.counts;
      const end = j.finished_unix_ms || Date.now();
      return el("tr", { class: "job", "data-job": j.id },
        el("td", {}, el("a", { href: "#/job/" + encodeURIComponent(j.id) }, j.id)),
        el("td", {}, j.name), el("td", {}, j.pool), el("td", {}, j.class), el("td", { class: "num" }, j.priority),
        el("td", { title: j.reason || "" }, stateBadge(j.state)),
        el("td", { class: "num" }, `${c.succeeded + c.replaced}/${c.total}` + (c.failed ? ` (${c.failed} failed)` : "")),
        el("td", {}, fmtTime(j.submitted_unix_ms)),
        el("td", { class: "num" }, fmtDur(end - j.submitted_unix_ms)));
    })),
    data.more ? el("caption", { class: "muted" }, "more jobs not shown") : null));
}

// ---- one job: the timeline ----

function attemptEnd(a, now) {
  return a.finished_unix_ms || now;
}

function attemptTitle(t, a, now) {
  const lines = [`${t.name} attempt ${a.number}` + (a.agent_id ? ` on ${a.agent_id}` : "")];
  lines.push("outcome: " + (a.outcome || "running") + (a.failure_class ? ` (${a.failure_class})` : "") +
    (a.exit_code ? `, exit ${a.exit_code}` : ""));
  const runFrom = a.started_unix_ms;
  const waitTo = runFrom || a.placed_unix_ms || attemptEnd(a, now);
  if (a.queued_unix_ms) lines.push("wait: " + fmtDur(waitTo - a.queued_unix_ms));
  if (runFrom) lines.push("run: " + fmtDur(attemptEnd(a, now) - runFrom));
  if (a.retry) lines.push("a retry after a failed attempt");
  if (a.gpus && a.gpus.length) lines.push("gpus: " + a.gpus.join(", "));
  if (a.error) lines.push("error: " + a.error);
  return lines.join("\n");
}

function pct(v, t0, span) {
  return ((v - t0) / span * 100).toFixed(3) + "%";
}

function renderAttempt(t, a, t0, span, now) {
  const q = a.queued_unix_ms || a.placed_unix_ms || a.started_unix_ms || t0;
  const end = Math.max(attemptEnd(a, now), q);
  const runFrom = a.started_unix_ms || 0;
  const waitTo = runFrom || a.placed_unix_ms || end;
  const whole = Math.max(end - q, 1);
  const outcome = a.outcome || (runFrom ? "running" : "waiting");
  const box = el("div", {
    class: "attempt outcome-" + outcome, title: attemptTitle(t, a, now),
    "data-task": t.id, "data-attempt": a.number, "data-outcome": outcome, "data-agent": a.agent_id || "",
    style: { left: pct(q, t0, span), width: ((end - q) / span * 100).toFixed(3) + "%" },
  },
  el("div", { class: "wait", style: { left: "0", width: ((waitTo - q) / whole * 100).toFixed(3) + "%" } }),
  runFrom ? el("div", { class: "run", style: { left: ((runFrom - q) / whole * 100).toFixed(3) + "%",
    width: ((end - runFrom) / whole * 100).toFixed(3) + "%" } }) : null,
  a.retry ? el("span", { class: "mark retry", title: "retry" }, "↻") : null,
  a.outcome === "preempted" ? el("span", { class: "mark preempted", style: { left: "100%" } }, "✕") : null);
  return box;
}

function renderTask(t, t0, span, now) {
  const badges = [];
  if (t.retries_used) badges.push(el("span", { class: "badge retry" }, `${t.retries_used} retr${t.retries_used > 1 ? "ies" : "y"}`));
  if (t.lost_attempts) badges.push(el("span", { class: "badge" }, `${t.lost_attempts} requeued`));
  if (t.replaced_by) badges.push(el("span", { class: "badge fallback", title: "gave way to its fallback " + t.replaced_by }, "→ fallback"));
  if (t.replaces) badges.push(el("span", { class: "badge fallback", title: "fallback of " + t.replaces }, "fallback"));
  const label = el("div", { class: "task-name", title: `${t.id} ${t.name}: ${t.state}` + (t.blocked_reason ? "\n" + t.blocked_reason : "") },
    t.name, badges);
  return el("div", { class: "task", "data-task": t.id, "data-name": t.name, "data-state": t.state },
    label, el("div", { class: "track" }, t.attempts.map((a) => renderAttempt(t, a, t0, span, now))));
}

function ticks(span) {
  const steps = [100, 250, 500, 1000, 2000, 5000, 10000, 15000, 30000, 60000, 120000, 300000, 600000, 900000,
    1800000, 3600000, 7200000, 21600000, 43200000, 86400000];
  const step = steps.find((s) => span / s <= 8) || steps[steps.length - 1];
  const out = [];
  for (let v = 0; v <= span; v += step) out.push(v);
  return out;
}

function renderJob(d, cur) {
  const j = d.job;
  const final = ["succeeded", "failed", "cancelled"].includes(j.state);
  const now = final ? 0 : d.now_unix_ms;
  let t0 = j.submitted_unix_ms, t1 = j.finished_unix_ms || d.now_unix_ms;
  for (const s of d.stages) for (const t of s.tasks) for (const a of t.attempts) {
    for (const v of [a.queued_unix_ms, a.placed_unix_ms, a.started_unix_ms, a.finished_unix_ms]) {
      if (v) { t0 = Math.min(t0, v); t1 = Math.max(t1, v); }
    }
  }
  const span = Math.max(t1 - t0, 1);
  const c = j.counts;
  const legend = [["wait", "var(--wait)"], ["succeeded", "var(--ok)"], ["failed", "var(--fail)"], ["timeout", "var(--timeout)"],
    ["preempted ✕", "var(--preempt)"], ["lost / cancelled", "var(--lost)"], ["fallback", "var(--fallback)"], ["running", "var(--run)"]];
  fill(view,
    el("h1", {}, el("a", { href: "#/jobs" }, "Jobs"), " / ", j.id, " ", j.name, " ", stateBadge(j.state)),
    el("div", { class: "meta" },
      el("div", {}, el("span", {}, "pool"), j.pool),
      el("div", {}, el("span", {}, "class"), j.class + " / priority " + j.priority),
      el("div", {}, el("span", {}, "tasks"), `${c.succeeded + c.replaced}/${c.total} done, ${c.running} running, ${c.queued} queued` +
        (c.failed ? `, ${c.failed} failed` : "")),
      el("div", {}, el("span", {}, "submitted"), fmtTime(j.submitted_unix_ms)),
      el("div", {}, el("span", {}, final ? "took" : "running for"), fmtDur((j.finished_unix_ms || d.now_unix_ms) - j.submitted_unix_ms)),
      j.reason ? el("div", { class: "error" }, j.reason) : null),
    el("div", { class: "legend" }, legend.map(([n, col]) => el("span", {}, el("i", { style: { background: col } }), n)),
      el("span", {}, "↻ retry")),
    el("div", { class: "timeline", id: "timeline", "data-job": j.id, "data-state": j.state },
      el("div", { class: "axis" }, el("div", { class: "muted" }, "task"),
        el("div", { class: "track" }, ticks(span).map((v) => el("span", { class: "tick", style: { left: pct(t0 + v, t0, span) } }, fmtDur(v))))),
      d.stages.map((s) => el("div", { class: "stage", "data-stage": s.key },
        el("div", { class: "stage-label" }, s.label, el("span", { class: "muted" }, ` (${s.tasks.length})`)),
        s.tasks.map((t) => renderTask(t, t0, span, now || d.now_unix_ms))))));
}

// ---- pools ----

function resCell(p, r) {
  const max = r.max === null ? "" : String(r.max);
  const scale = Math.max(r.max || 0, r.guaranteed, r.used, 1);
  return el("td", { class: "res" + (r.borrowing ? " borrowing" : ""), "data-pool": p.path, "data-resource": r.name,
    "data-used": r.used, "data-guaranteed": r.guaranteed, "data-max": max,
    title: `${r.name}: used/guaranteed/max` + (r.borrowing ? " (borrowing above its guarantee)" : "") },
  el("div", { class: "text" }, r.text),
  el("div", { class: "bar" }, el("div", { class: "used", style: { width: (r.used / scale * 100) + "%" } }),
    r.guaranteed ? el("div", { class: "guar", style: { left: (r.guaranteed / scale * 100) + "%" } }) : null));
}

function renderPools(d) {
  fill(view,
    el("h1", {}, "Pools"),
    el("p", { class: "muted" }, "used / guaranteed / max per resource (\"-\": no ceiling, \"+\": borrowing above the guarantee). Cluster: ",
      d.cluster.map((q) => `${q.name}=${q.text}`).join(", ")),
    (d.warnings || []).map((w) => el("p", { class: "error" }, "warning: " + w)),
    el("table", { id: "pool-tree" },
      el("thead", {}, el("tr", {}, el("th", {}, "POOL"), d.resources.map((n) => el("th", {}, n.toUpperCase().replace("_", " "))),
        el("th", {}, "QUEUED"), el("th", {}, "RUNNING"))),
      el("tbody", {}, d.pools.map((p) => el("tr", { class: "pool", "data-pool": p.path },
        el("td", { class: "pool-name", title: p.path }, "  ".repeat(p.depth) + (p.depth ? "└ " : "") + p.name),
        p.resources.map((r) => resCell(p, r)),
        el("td", { class: "num", "data-queued": p.queued_tasks }, p.queued_tasks),
        el("td", { class: "num", "data-running": p.running_tasks }, p.running_tasks))))));
}

// ---- agents ----

function qty(list, name) {
  const q = list.find((x) => x.name === name);
  return q ? q.text : "0";
}

function renderGPU(g) {
  const sessions = g.nvenc_limit === "none" ? "no session limit" : `${g.nvenc_sessions_used}/${g.encoder_sessions} NVENC sessions`;
  return el("div", { class: "gpu" + (g.unhealthy ? " unhealthy" : ""), "data-gpu": g.index, title: g.uuid || "" },
    el("b", {}, `GPU ${g.index}`), " ", g.model || "", el("br"),
    `mem ${g.used_memory}/${g.memory}, ${sessions}, ${g.tasks} task${g.tasks === 1 ? "" : "s"}` + (g.whole ? " (whole)" : ""),
    g.mig_instances ? el("div", {}, `${g.mig_instances} MIG instances`) : null,
    g.unhealthy ? el("div", { class: "error" }, "unhealthy: " + g.unhealthy) : null);
}

function renderAgents(d) {
  fill(view,
    el("h1", {}, "Agents"),
    d.agents.length ? el("table", { id: "agents" },
      el("thead", {}, el("tr", {}, ["AGENT", "STATE", "HOST", "CPU used/cap", "MEMORY used/cap", "TASKS", "GPUS"].map((h) => el("th", {}, h)))),
      el("tbody", {}, d.agents.map((a) => el("tr", { class: "agent", "data-agent": a.id },
        el("td", {}, a.id), el("td", {}, stateBadge(a.state), a.ineligible ? " ineligible" : "", a.draining ? " draining" : ""),
        el("td", { title: a.cpu_model || "" }, a.hostname || a.address || ""),
        el("td", {}, `${qty(a.used, "cpu")}/${qty(a.capacity, "cpu")}`),
        el("td", {}, `${qty(a.used, "memory")}/${qty(a.capacity, "memory")}`),
        el("td", { class: "num" }, a.running_tasks),
        el("td", {}, a.gpus.length ? el("div", { class: "gpus" }, a.gpus.map(renderGPU)) : el("span", { class: "muted" }, "none"),
          a.nvenc_system_sessions ? el("div", { class: "muted" }, `${a.nvenc_system_sessions} NVENC sessions per system`) : null)))))
      : el("p", { class: "muted" }, "No agents."));
}
