// backfill web page (SPEC §8): a client of the team API (/v1), no build step.
//
// Sign-in (POST /web/session) gives a bearer token kept in this tab's sessionStorage;
// every other call goes to /v1/teams/{team_id}/... with `Authorization: Bearer <token>`.
// Views: #/ (the team's backfills), #/backfills/{id} (one backfill and its interval grid),
// #/new (create with a dry-run preview). Data from the server is only ever inserted as
// text (textContent / text nodes / attributes), never as HTML.

import { ApiError, apiErrorText, fieldLabel, fieldsNamed, serverMessage } from "./api_errors.js";
import { aggregatable, coveragePath, intervalWindow, periodWindow, renderAggregated } from "./grid_aggregate.js";
import { makePipelineViews } from "./pipelines.js";

const REFRESH_MS = 2000;
const RUNS_FORCE_REFRESH_MS = 10000;
const SESSION_KEY = "backfill.session";
const FILTER_KEY = "backfill.listFilter";
const LIST_LIMIT = 100;
const RUN_LIMIT = 10000; // the API's maximum page of runs
const MAX_CELLS = 10000;
const DENSE_CELLS = 400;
const PREVIEW_SHOWN = 50;

const ALL_STATUSES = "CREATED,SCHEDULED,RUNNING,COMPLETED,FAILED,CANCELLED";
const GLYPHS = { COMPLETED: "✓", FAILED: "✕", RUNNING: "▶", QUEUED: "•", CANCELLED: "⊘", PENDING: "" };
const GRID_STATUSES = ["COMPLETED", "FAILED", "RUNNING", "QUEUED", "CANCELLED", "PENDING"];
const FORM_FIELDS = [
  "transfer_id", "name", "interval_type", "interval_units", "cron", "range_start", "range_end",
  "timezone", "max_active_runs", "retries", "run_order", "reprocess", "variables", "block_uuids",
];

const $ = (id) => document.getElementById(id);

// What may be done to a backfill comes from the server (`allowed_actions`, derived from
// its transition rules): the page keeps no copy of the state machine.
const can = (bf, action) => Boolean(bf) && bf.allowed_actions.includes(action);
// Final (completed, cancelled): it can neither be paused nor resumed any more.
const isFinal = (bf) => !can(bf, "pause") && !can(bf, "resume");

// ---- DOM helpers (text only) -------------------------------------------------------------

/** Create an element; string children become text nodes, attributes are set as text. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function setText(id, value) {
  $(id).textContent = value === null || value === undefined ? "" : String(value);
}

function showMessage(id, message) {
  const node = $(id);
  node.textContent = message || "";
  node.hidden = !message;
}

function replaceChildren(node, children) {
  node.replaceChildren(...children);
}

/** An error text: its first line, with the whole text (a traceback) behind a disclosure. */
function errorText(text) {
  const value = String(text || "");
  const first = value.split("\n", 1)[0];
  const summary = first.length > 240 ? `${first.slice(0, 240)}…` : first;
  if (summary === value) return el("code", { class: "error-text" }, value);
  return el("details", { class: "error-details" },
    el("summary", {}, el("code", { class: "error-text" }, summary)),
    el("pre", { class: "pre pre-error" }, value));
}

function badge(status, extraClass = "") {
  return el("span", { class: `badge st-${status} ${extraClass}`.trim() }, status);
}

// ---- formatting --------------------------------------------------------------------------

function fmtNumber(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}

function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Number(seconds);
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return `${minutes}m ${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  const hours = Math.floor(minutes / 60);
  return `${hours}h ${String(minutes % 60).padStart(2, "0")}m`;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

function fmtAgo(iso) {
  const d = new Date(iso);
  if (!iso || Number.isNaN(d.getTime())) return "–";
  const s = Math.round((Date.now() - d.getTime()) / 1000);
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return d.toLocaleDateString(undefined, { dateStyle: "medium" });
}

/** A range value: a date as it is, an ISO UTC datetime shortened ("2024-03-01 05:00 UTC"). */
function fmtRangeValue(value) {
  if (typeof value !== "string") return "–";
  const m = value.match(/^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(:\d{2})?Z$/);
  if (!m) return value;
  return `${m[1]} ${m[2]}${m[3] && m[3] !== ":00" ? m[3] : ""} UTC`;
}

function intervalText(item) {
  const n = item.interval_units || 1;
  if (item.cron) return `cron “${item.cron}”`;
  if (item.interval_type === "custom") return `every ${fmtNumber(n)} s`;
  if (n === 1) {
    const words = { day: "daily", hour: "hourly", week: "weekly", month: "monthly", year: "yearly" };
    return words[item.interval_type] || `every ${item.interval_type}`;
  }
  return `every ${fmtNumber(n)} ${item.interval_type}s`;
}

/** Short label in a grid cell: "01-03" for a date, "05:00" for a datetime. */
function cellLabel(dataDate) {
  if (typeof dataDate !== "string") return "";
  if (/^\d{4}-\d{2}-\d{2}$/.test(dataDate)) return dataDate.slice(5);
  const m = dataDate.match(/T(\d{2}:\d{2})/);
  return m ? m[1] : "";
}

function plural(n, word) {
  return `${fmtNumber(n)} ${word}${n === 1 ? "" : "s"}`;
}

function randomKey() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ---- session and API ---------------------------------------------------------------------

const state = {
  session: loadSession(),
  transfers: new Map(),
  transfersLoaded: false,
};

function loadSession() {
  try {
    const value = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
    if (value && typeof value.token === "string" && Number.isInteger(value.team_id)) return value;
  } catch {
    // corrupt storage: sign in again
  }
  return null;
}

function saveSession(session) {
  state.session = session;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
}

function signOut(message) {
  state.session = null;
  state.transfers = new Map();
  state.transfersLoaded = false;
  sessionStorage.removeItem(SESSION_KEY);
  render();
  showMessage("signin-error", message || "");
}

async function api(method, path, { body, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, cache: "no-store" };
  const session = state.session;
  if (session && path.startsWith("/v1/")) init.headers.Authorization = `Bearer ${session.token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "NETWORK_ERROR", null, null);
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    const error = payload && payload.error ? payload.error : {};
    const requestId = (payload && payload.meta && payload.meta.request_id) || response.headers.get("X-Request-ID");
    const code = typeof error.code === "string" ? error.code : `HTTP_${response.status}`;
    const failure = new ApiError(response.status, code, serverMessage(payload), requestId);
    if (response.status === 401 && session && state.session === session && path.startsWith("/v1/")) {
      signOut(`Your session has ended: ${apiErrorText(failure)} Sign in again.`);
    }
    throw failure;
  }
  return payload;
}

function teamPath(path) {
  return `/v1/teams/${encodeURIComponent(state.session.team_id)}${path}`;
}

async function ensureTransfers(force = false) {
  if (state.transfersLoaded && !force) return state.transfers;
  const page = await api("GET", teamPath("/transfers?limit=1000"));
  state.transfers = new Map(page.data.map((t) => [t.id, t]));
  state.transfersLoaded = true;
  return state.transfers;
}

/** A person by e-mail: the signed-in user's own; another member's when the API gives it. */
function userName(id, email = null) {
  if (email) return email;
  if (state.session && state.session.user_id === id) return state.session.email;
  return `user ${id}`;
}

function transferName(id) {
  const t = state.transfers.get(id);
  return t ? t.name : `transfer ${id}`;
}

// ---- routing and refresh loop ------------------------------------------------------------

let generation = 0;
let timer = null;
let current = null;

function parseRoute() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  const detail = path.match(/^\/backfills\/(\d+)\/?$/);
  if (detail) return { name: "detail", id: Number(detail[1]) };
  if (path === "/new") return { name: "new", params: new URLSearchParams(query || "") };
  if (path === "/pipelines") return { name: "pipelines" };
  const pipeline = path.match(/^\/pipelines\/(\d+)\/?$/);
  if (pipeline) return { name: "pipeline", id: Number(pipeline[1]), params: new URLSearchParams(query || "") };
  return { name: "list" };
}

function alive(gen) {
  return gen === generation && state.session !== null;
}

function render() {
  generation += 1;
  clearTimeout(timer);
  for (const section of document.querySelectorAll(".view")) section.hidden = true;
  showMessage("flash", "");
  const signedIn = state.session !== null;
  $("nav").hidden = !signedIn;
  $("who").hidden = !signedIn;
  if (!signedIn) {
    current = null;
    document.title = "Sign in · backfill";
    $("view-signin").hidden = false;
    $("signin-email").focus();
    return;
  }
  setText("who-email", state.session.email);
  setText("who-team", state.session.team_id);
  const route = parseRoute();
  const view = VIEWS[route.name];
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === route.name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  current = { view, route };
  $(view.section).hidden = false;
  view.enter(route, generation);
  if (view.refresh) tick(generation);
}

/** Refresh the current view now, then every REFRESH_MS while it stays on screen. */
async function tick(gen) {
  if (!alive(gen)) return;
  try {
    await current.view.refresh(current.route, gen);
  } catch (error) {
    if (alive(gen)) current.view.failed(error);
  }
  if (!alive(gen)) return;
  clearTimeout(timer);
  timer = setTimeout(() => tick(gen), REFRESH_MS);
}

/** Refresh at once (after a user action), keeping the same view. */
function refreshNow() {
  if (!current || !current.view.refresh) return;
  generation += 1;
  clearTimeout(timer);
  tick(generation);
}

// ---- sign-in -----------------------------------------------------------------------------

function setupSignIn() {
  $("signin-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const email = $("signin-email").value.trim();
    const password = $("signin-password").value;
    if (!email || !password) {
      showMessage("signin-error", "Enter your email and your password.");
      (email ? $("signin-password") : $("signin-email")).focus();
      return;
    }
    const button = $("signin-submit");
    button.disabled = true;
    showMessage("signin-error", "");
    try {
      const res = await api("POST", "/web/session", { body: { email, password } });
      const data = res.data;
      if (!Number.isInteger(data.team_id)) {
        showMessage("signin-error", "Your account is not a member of any team.");
        return;
      }
      $("signin-password").value = "";
      saveSession({ token: data.token, team_id: data.team_id, email: data.email, user_id: data.user_id });
      render();
    } catch (error) {
      const message = error.status === 401 ? "Wrong email or password." : `Sign-in failed: ${apiErrorText(error)}`;
      showMessage("signin-error", message);
    } finally {
      button.disabled = false;
    }
  });
  $("sign-out").addEventListener("click", async () => {
    // Revoke the token on the server (DELETE /v1/me/token), then forget it here whatever
    // the answer: an unreachable server must not keep the user signed in on this page.
    try {
      await api("DELETE", "/v1/me/token");
    } catch {
      // already revoked or expired (401), or offline: nothing more to do
    }
    signOut("");
  });
}

// ---- progress bars -----------------------------------------------------------------------

function progressBar(bf, large = false) {
  const total = bf.transfer_runs_total;
  const parts = [
    ["COMPLETED", bf.transfer_runs_completed],
    ["FAILED", bf.transfer_runs_failed],
    ["RUNNING", bf.transfer_runs_running],
    ["CANCELLED", bf.transfer_runs_cancelled],
  ];
  const label = `${fmtNumber(bf.transfer_runs_completed)} of ${fmtNumber(total)} completed, `
    + `${fmtNumber(bf.transfer_runs_failed)} failed, ${fmtNumber(bf.transfer_runs_running)} running, `
    + `${fmtNumber(bf.transfer_runs_cancelled)} cancelled`;
  const bar = el("div", { class: `progress${large ? " progress-large" : ""}`, role: "img", "aria-label": label, title: label });
  for (const [status, count] of parts) {
    if (!count || !total) continue;
    const segment = el("span", { class: `seg-${status}`, "data-status": status });
    segment.style.width = `${(100 * count) / total}%`;
    bar.append(segment);
  }
  return bar;
}

function progressText(bf) {
  // Progress as the server defines it: finished (completed + failed) of the intervals
  // that will run; cancelled intervals are listed apart, never counted as done.
  const m = bf.metrics || {};
  const bits = [`${fmtNumber(m.finished_runs ?? 0)}/${fmtNumber(m.runs_to_run ?? bf.transfer_runs_total)} finished`];
  if (bf.transfer_runs_failed) bits.push(`${fmtNumber(bf.transfer_runs_failed)} failed`);
  if (bf.transfer_runs_running) bits.push(`${fmtNumber(bf.transfer_runs_running)} running`);
  if (bf.transfer_runs_cancelled) bits.push(`${fmtNumber(bf.transfer_runs_cancelled)} cancelled`);
  return bits.join(" · ");
}

function statusBadges(bf) {
  return el("span", { class: "badges" }, badge(bf.status), bf.paused ? el("span", { class: "badge badge-paused" }, "PAUSED") : null);
}

// ---- list view ---------------------------------------------------------------------------

const listView = {
  section: "view-list",

  enter() {
    document.title = "Backfills · backfill";
    const filter = sessionStorage.getItem(FILTER_KEY) === "all" ? "all" : "unfinished";
    $(filter === "all" ? "filter-all" : "filter-unfinished").checked = true;
    showMessage("list-error", "");
  },

  filter() {
    return $("filter-all").checked ? "all" : "unfinished";
  },

  async refresh(route, gen) {
    const filter = this.filter();
    const query = filter === "all" ? `?limit=${LIST_LIMIT}&status=${ALL_STATUSES}` : `?limit=${LIST_LIMIT}`;
    const [page] = await Promise.all([api("GET", teamPath(`/backfills${query}`)), ensureTransfers()]);
    if (!alive(gen) || filter !== this.filter()) return;
    showMessage("list-error", "");
    this.renderRows(page.data);
    const empty = page.data.length === 0;
    $("list-empty").hidden = !empty;
    if (empty) {
      setText("list-empty", filter === "all"
        ? "No backfills yet. Create one with “New backfill”."
        : "No unfinished backfills. Choose “All” to see finished ones, or create a new backfill.");
    }
    const more = page.meta.total > page.data.length;
    $("list-more").hidden = !more;
    if (more) setText("list-more", `Showing the newest ${page.data.length} of ${fmtNumber(page.meta.total)} backfills.`);
    setText("list-updated", `Updated ${new Date().toLocaleTimeString()}.`);
  },

  failed(error) {
    showMessage("list-error", `Could not load the backfills: ${apiErrorText(error)}`);
  },

  renderRows(items) {
    const tbody = $("backfill-rows");
    const existing = new Map(Array.from(tbody.children, (tr) => [Number(tr.dataset.backfillId), tr]));
    const sameOrder = items.length === existing.size
      && items.every((bf, i) => Number(tbody.children[i].dataset.backfillId) === bf.transfer_backfill_id);
    const rows = items.map((bf) => {
      const signature = JSON.stringify([bf.updated_time, bf.status, bf.paused, bf.name, bf.transfer_runs_completed,
        bf.transfer_runs_failed, bf.transfer_runs_running, bf.transfer_runs_cancelled, transferName(bf.transfer_id),
        fmtAgo(bf.created_time)]);
      const old = existing.get(bf.transfer_backfill_id);
      if (old && old.dataset.signature === signature) return old;
      const tr = this.row(bf);
      tr.dataset.signature = signature;
      if (old && sameOrder) old.replaceWith(tr);
      return tr;
    });
    if (!sameOrder) replaceChildren(tbody, rows);
  },

  row(bf) {
    const id = bf.transfer_backfill_id;
    const href = `#/backfills/${id}`;
    return el("tr", { "data-backfill-id": id, "data-status": bf.status },
      el("td", { class: "nowrap" }, el("a", { href }, `#${id}`)),
      el("td", { class: "col-name" }, el("a", { href, class: "name-link" }, bf.name)),
      el("td", { class: "col-pipeline" }, transferName(bf.transfer_id)),
      el("td", { class: "col-range" },
        el("span", { class: "nowrap" }, fmtRangeValue(bf.range_start_date)), " → ",
        el("span", { class: "nowrap" }, fmtRangeValue(bf.range_end_date)),
        el("div", { class: "muted small" }, intervalText(bf))),
      el("td", {}, progressBar(bf), el("div", { class: "progress-text" }, progressText(bf))),
      el("td", {}, statusBadges(bf)),
      el("td", { class: "nowrap", title: fmtTime(bf.created_time) }, fmtAgo(bf.created_time)),
    );
  },
};

function setupList() {
  for (const radio of document.querySelectorAll('input[name="list-filter"]')) {
    radio.addEventListener("change", () => {
      sessionStorage.setItem(FILTER_KEY, listView.filter());
      refreshNow();
    });
  }
}

// ---- backfill view -----------------------------------------------------------------------

const detailView = {
  section: "view-detail",
  d: null,

  enter(route) {
    this.d = {
      id: route.id,
      backfill: null,
      runsSignature: null,
      runsFetchedAt: 0,
      gridLayout: null,
      gridScrolled: false,
      selectedRunId: null,
      log: null,
      busy: false,
      aggregate: {},
      coverage: null, // the coverage the aggregated grid was drawn from
      chosen: new Set(), // run ids of failed intervals chosen to re-run
      chosenPeriods: new Map(), // aggregated cells chosen to re-run their failed intervals: key → {first, last, failed}
      transferCheckedAt: 0,
    };
    document.title = `Backfill #${route.id} · backfill`;
    $("grid-zoom").hidden = true;
    $("grid").classList.remove("aggregated");
    setText("detail-name", `Backfill #${route.id}`);
    setText("detail-id", "");
    setText("detail-summary", "Loading…");
    $("detail-status").hidden = true;
    $("detail-paused").hidden = true;
    for (const id of ["detail-error", "action-error", "rerun-error"]) showMessage(id, "");
    $("cancel-confirm").hidden = true;
    $("run-panel").hidden = true;
    $("error-report").hidden = true;
    replaceChildren($("grid"), []);
    replaceChildren($("grid-legend"), []);
    replaceChildren($("detail-settings"), []);
    replaceChildren($("detail-progress"), []);
    $("grid-note").hidden = true;
    $("detail-load-error").hidden = true;
    this.updateButtons();
    this.updateChosen();
  },

  /** The pipeline's files may stop loading while it runs (the last good version goes on):
   * say so, re-reading the transfer every few seconds. */
  async checkTransfer(bf, gen) {
    const d = this.d;
    if (Date.now() - d.transferCheckedAt < TRANSFER_CHECK_MS) return;
    d.transferCheckedAt = Date.now();
    const res = await api("GET", teamPath(`/transfers/${bf.transfer_id}`));
    if (!alive(gen) || this.d !== d) return;
    const t = res.data;
    const box = $("detail-load-error");
    box.hidden = !t.load_error;
    box.textContent = t.load_error
      ? `The files of pipeline ${t.uuid} do not load; its last good version (${t.version}) keeps running: ${t.load_error}`
      : "";
  },

  async refresh(route, gen) {
    const d = this.d;
    const [res] = await Promise.all([api("GET", teamPath(`/backfills/${d.id}`)), ensureTransfers()]);
    if (!alive(gen)) return;
    showMessage("detail-error", "");
    this.renderBackfill(res.data);
    const bf = res.data;
    await this.checkTransfer(bf, gen);
    if (!alive(gen)) return;
    const signature = [bf.status, bf.paused, bf.transfer_runs_created, bf.transfer_runs_completed, bf.transfer_runs_failed,
      bf.transfer_runs_running, bf.transfer_runs_cancelled, bf.updated_time].join("|");
    const stale = signature !== d.runsSignature || Date.now() - d.runsFetchedAt > RUNS_FORCE_REFRESH_MS;
    if (stale && aggregatable(bf)) {
      const coverage = await api("GET", teamPath(coveragePath(bf)));
      if (!alive(gen)) return;
      d.runsSignature = signature;
      d.runsFetchedAt = Date.now();
      this.renderAggregatedGrid(bf, coverage.data);
      if (intervalWindow(d.aggregate)) await this.loadDayRuns(gen);
    } else if (stale) {
      const runs = await api("GET",
        teamPath(`/backfills/${d.id}/runs?limit=${RUN_LIMIT}&sort_field=data_date&sort_direction=asc`));
      if (!alive(gen)) return;
      d.runsSignature = signature;
      d.runsFetchedAt = Date.now();
      this.renderGrid(d.backfill, runs.data, runs.meta.total);
    }
    if (d.selectedRunId !== null && d.log && !d.log.complete) {
      try {
        await this.loadRun(gen); // tail the log of a run still going
      } catch (error) {
        if (alive(gen)) showMessage("run-panel-error", `Could not load the run: ${apiErrorText(error)}`);
      }
    }
  },

  failed(error) {
    const message = error.status === 404
      ? `Backfill #${this.d.id} was not found in team ${state.session.team_id}.`
      : `Could not load the backfill: ${apiErrorText(error)}`;
    showMessage("detail-error", message);
    if (!this.d.backfill) setText("detail-summary", "");
  },

  renderBackfill(bf) {
    this.d.backfill = bf;
    this.updateChosen();
    document.title = `${bf.name} · backfill`;
    setText("detail-name", bf.name);
    setText("detail-id", `#${bf.transfer_backfill_id}`);
    const status = $("detail-status");
    status.hidden = false;
    status.className = `badge st-${bf.status}`;
    status.textContent = bf.status;
    $("detail-paused").hidden = !bf.paused;
    setText("detail-summary", `${transferName(bf.transfer_id)} · ${fmtRangeValue(bf.range_start_date)} → `
      + `${fmtRangeValue(bf.range_end_date)} · ${intervalText(bf)} · ${bf.timezone}`);

    this.renderCounts(bf);

    const m = bf.metrics;
    setText("metric-progress", `${(m.progress * 100).toFixed(m.progress > 0 && m.progress < 0.1 ? 1 : 0)} %`);
    setText("metric-mean", fmtDuration(m.duration_mean_seconds));
    setText("metric-p95", fmtDuration(m.duration_p95_seconds));
    setText("metric-rows", fmtNumber(m.rows));
    let eta = "–";
    if (isFinal(bf)) eta = "done";
    else if (bf.paused) eta = "paused";
    else if (m.estimated_seconds_remaining !== null) eta = fmtDuration(m.estimated_seconds_remaining);
    setText("metric-eta", eta);

    replaceChildren($("detail-progress"), [progressBar(bf, true)]);
    this.renderSettings(bf);
    this.renderErrorReport(bf);
    this.updateButtons();
  },

  renderSettings(bf) {
    const items = [
      ["Pipeline", `${transferName(bf.transfer_id)} (${bf.transfer_uuid}, id ${bf.transfer_id})`],
      ["Range", `${fmtRangeValue(bf.range_start_date)} → ${fmtRangeValue(bf.range_end_date)} (inclusive)`],
      ["Interval", intervalText(bf)],
      ["Timezone", bf.timezone],
      ["Max active runs", fmtNumber(bf.max_active_runs)],
      ["Run order", bf.run_order.replace("_", " ")],
      ["Reprocess", bf.reprocess],
      ["Retries per interval", fmtNumber(bf.retries)],
      ["Created", `${fmtTime(bf.created_time)}${bf.created_user_id ? ` by ${userName(bf.created_user_id, bf.created_user_email)}` : ""}`],
      ["Started", fmtTime(bf.start_time)],
      ["Ended", fmtTime(bf.end_time)],
    ];
    if (bf.removed_time) {
      items.push(["Cancelled", `${fmtTime(bf.removed_time)}${bf.removed_user_id ? ` by ${userName(bf.removed_user_id, bf.removed_user_email)}` : ""}`]);
    }
    if (bf.block_uuids) items.push(["Blocks", bf.block_uuids.join(", ")]);
    if (bf.variables && Object.keys(bf.variables).length) items.push(["Variables", JSON.stringify(bf.variables)]);
    replaceChildren($("detail-settings"), items.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
  },

  renderErrorReport(bf) {
    const box = $("error-report");
    box.hidden = bf.error_report.length === 0;
    const signature = JSON.stringify(bf.error_report);
    if (box.dataset.signature === signature) return; // keep open disclosures open
    box.dataset.signature = signature;
    replaceChildren($("error-report-list"), bf.error_report.map((e) => el("li", {},
      el("strong", {}, e.transfer_run_date), " ", errorText(e.error))));
  },

  updateButtons() {
    const bf = this.d ? this.d.backfill : null;
    const busy = !bf || this.d.busy;
    const status = bf ? bf.status : null;
    const final = isFinal(bf);
    const set = (id, enabled, why) => {
      const button = $(id);
      button.disabled = busy || !enabled;
      if (!enabled && why) button.title = why;
      else button.removeAttribute("title");
    };
    $("action-start").hidden = !can(bf, "start");
    set("action-start", can(bf, "start"), "");
    set("action-pause", can(bf, "pause"),
      final ? `A ${status} backfill cannot be paused.` : "The backfill is paused.");
    set("action-resume", can(bf, "resume"),
      final ? `A ${status} backfill cannot be resumed.` : "The backfill is not paused.");
    set("action-retry", can(bf, "retry"), "Only a FAILED backfill can be retried.");
    set("action-cancel", can(bf, "cancel"), `A ${status} backfill can no longer be cancelled.`);
    if ($("action-cancel").disabled) $("cancel-confirm").hidden = true;
    $("cancel-yes").disabled = busy;
  },

  async act(body, verb) {
    const d = this.d;
    if (!d || !d.backfill || d.busy) return;
    d.busy = true;
    this.updateButtons();
    showMessage("action-error", "");
    try {
      const res = await api("PATCH", teamPath(`/backfills/${d.id}`), { body });
      if (this.d !== d || !state.session) return;
      d.busy = false;
      d.runsSignature = null;
      this.renderBackfill(res.data);
      refreshNow();
    } catch (error) {
      if (this.d === d) showMessage("action-error", `Could not ${verb} the backfill: ${apiErrorText(error)}`);
    } finally {
      d.busy = false;
      if (this.d === d) this.updateButtons();
    }
  },

  /** Every count on the page (cards and grid legend) from one source: the backfill's
   * counters, which are exact at every read. */
  counts(bf) {
    const queued = Math.max(0, bf.transfer_runs_created - bf.transfer_runs_completed - bf.transfer_runs_failed
      - bf.transfer_runs_cancelled - bf.transfer_runs_running);
    return {
      COMPLETED: bf.transfer_runs_completed,
      FAILED: bf.transfer_runs_failed,
      RUNNING: bf.transfer_runs_running,
      QUEUED: queued,
      CANCELLED: bf.transfer_runs_cancelled,
      PENDING: isFinal(bf) ? 0 : Math.max(0, bf.transfer_runs_total - bf.transfer_runs_created),
    };
  },

  renderCounts(bf) {
    const counts = this.counts(bf);
    setText("count-total", fmtNumber(bf.transfer_runs_total));
    for (const s of GRID_STATUSES) setText(`count-${s.toLowerCase()}`, fmtNumber(counts[s]));
  },

  renderLegend(bf) {
    const counts = this.counts(bf);
    replaceChildren($("grid-legend"), GRID_STATUSES.map((s) => el("li", { "data-status": s },
      el("span", { class: `dot st-${s}`, "aria-hidden": "true" }), `${s.toLowerCase()} ${fmtNumber(counts[s])}`)));
  },

  renderAggregatedGrid(bf, coverage) {
    const d = this.d;
    d.coverage = coverage;
    this.drawAggregated();
    this.renderLegend(bf);
    const pending = coverage.counts.MISSING;
    $("grid-note").hidden = pending === 0;
    setText("grid-note", !pending ? "" : isFinal(bf)
      ? `${plural(pending, "interval")} never queued: the backfill is ${bf.status}.`
      : `${plural(pending, "interval")} pending, not queued yet.`);
  },

  drawAggregated() {
    const d = this.d;
    renderAggregated(el, $("grid"), $("grid-zoom"), d.coverage, d.aggregate, {
      runCell: (run) => this.runCell(run),
      wantRuns: () => this.loadDayRuns(generation).catch((error) => {
        if (this.d === d) showMessage("detail-error", `Could not load the runs of this day: ${apiErrorText(error)}`);
      }),
      periodClick: (b, event, button) => {
        if (!event.ctrlKey && !event.metaKey) return false;
        this.togglePeriod(b, button);
        return true;
      },
      chosen: (b) => d.chosenPeriods.has(`${b.first}-${b.last}`),
      zoomed: () => {
        d.aggregate.runs = null;
        d.chosen.clear();
        d.chosenPeriods.clear();
        this.updateChosen();
      },
    });
  },

  /** The runs of this backfill whose intervals start on the local days of intervals
   * first..last (the transfer's run listing over that window, pages of RUN_LIMIT). */
  async runsOfPeriod(first, last, status = null) {
    const d = this.d;
    const win = periodWindow(d.coverage, d.aggregate, first, last);
    const found = [];
    for (let offset = 0, total = 1; offset < total && offset < 20 * RUN_LIMIT; offset += RUN_LIMIT) {
      const query = new URLSearchParams({
        start_date: new Date(win.lo).toISOString(), end_date: new Date(win.hi).toISOString(), limit: String(RUN_LIMIT),
        offset: String(offset), sort_field: "data_date", sort_direction: "asc",
      });
      if (status) query.set("status", status);
      const page = await api("GET", teamPath(`/transfers/${d.backfill.transfer_id}/runs?${query}`));
      total = page.meta.total;
      found.push(...page.data.filter((r) => r.transfer_backfill_id === d.id && win.inDays(r.interval_start)));
    }
    return found;
  },

  /** At the finest zoom: the zoomed-in day's runs, drawn as the plain grid's cells. */
  async loadDayRuns(gen) {
    const d = this.d;
    const day = intervalWindow(d.aggregate);
    if (!day) return;
    const items = await this.runsOfPeriod(day.from, day.to - 1);
    if (!alive(gen) || this.d !== d || !intervalWindow(d.aggregate) || intervalWindow(d.aggregate).key !== day.key) return;
    d.aggregate.runs = { key: day.key, items };
    this.drawAggregated();
  },

  /** Ctrl/⌘-click on an aggregated cell: choose (or not) its failed intervals. */
  togglePeriod(b, button) {
    const d = this.d;
    const key = `${b.first}-${b.last}`;
    if (d.chosenPeriods.has(key)) d.chosenPeriods.delete(key);
    else if (b.counts.FAILED) d.chosenPeriods.set(key, { first: b.first, last: b.last, failed: b.counts.FAILED });
    button.classList.toggle("chosen", d.chosenPeriods.has(key));
    this.updateChosen();
  },

  /** A run's cell in the grid (plain, or the finest zoom of the aggregated one). */
  runCell(run) {
    return this.fillRunCell(el("button", {
      type: "button",
      class: "cell",
      "data-run-id": run.id,
      "data-date": run.data_date,
      "aria-pressed": String(run.id === this.d.selectedRunId),
    }, el("span", { class: "glyph", "aria-hidden": "true" }), el("span", { class: "label", "aria-hidden": "true" },
      cellLabel(run.data_date))), run);
  },

  renderGrid(bf, runs, materialized) {
    const d = this.d;
    const grid = $("grid");
    grid.classList.remove("aggregated");
    $("grid-zoom").hidden = true;
    const pending = Math.max(0, bf.transfer_runs_total - materialized);
    const drawnPending = Math.min(pending, Math.max(0, MAX_CELLS - runs.length));
    // Runs are materialized in run order: newest first leaves the oldest intervals pending.
    const pendingFirst = bf.run_order === "newest_first";
    const layout = `${pendingFirst}|${drawnPending}|${runs.map((r) => r.id).join(",")}`;
    if (layout === d.gridLayout) {
      const cells = grid.querySelectorAll("[data-run-id]"); // same runs, same order: update in place
      runs.forEach((run, i) => this.fillRunCell(cells[i], run));
    } else {
      const focused = document.activeElement;
      const focusedId = focused && grid.contains(focused) && focused.dataset ? focused.dataset.runId : null;
      const runCells = runs.map((run) => this.runCell(run));
      const pendingCells = Array.from({ length: drawnPending }, () => el("div", {
        class: "cell st-PENDING",
        "data-status": "PENDING",
        "aria-hidden": "true",
        title: "pending: not queued yet",
      }));
      const cells = pendingFirst ? [...pendingCells, ...runCells] : [...runCells, ...pendingCells];
      grid.classList.toggle("dense", cells.length > DENSE_CELLS);
      replaceChildren(grid, cells);
      if (!d.gridScrolled && pendingFirst && runCells.length && grid.scrollHeight > grid.clientHeight) {
        // a tall grid shows its runs first, not the intervals still pending before them
        grid.scrollTop = Math.max(0, runCells[0].offsetTop - grid.clientHeight / 3);
        d.gridScrolled = true;
      }
      d.gridLayout = layout;
      if (focusedId) {
        const again = grid.querySelector(`[data-run-id="${CSS.escape(focusedId)}"]`);
        if (again) again.focus();
      }
    }

    this.renderLegend(bf); // the same numbers as the cards

    const notes = [];
    if (materialized > runs.length) {
      notes.push(`Showing the first ${fmtNumber(runs.length)} of ${fmtNumber(materialized)} interval runs.`);
    }
    if (pending) {
      notes.push(isFinal(bf)
        ? `${plural(pending, "interval")} never queued: the backfill is ${bf.status} (empty cells).`
        : `${plural(pending, "interval")} pending, not queued yet (empty cells).`);
    }
    if (drawnPending < pending) notes.push(`${fmtNumber(pending - drawnPending)} of them are not drawn.`);
    $("grid-note").hidden = notes.length === 0;
    setText("grid-note", notes.join(" "));
  },

  /** Status, colour, glyph and labels of a run's cell (only when they changed). */
  fillRunCell(cell, run) {
    const attempt = run.attempt > 1 ? `, attempt ${run.attempt}` : "";
    const label = `${run.data_date}: ${run.status}${attempt}`;
    if (cell.getAttribute("aria-label") === label) return cell;
    cell.className = `cell st-${run.status}`;
    cell.classList.toggle("chosen", this.d.chosen.has(run.id));
    cell.dataset.status = run.status;
    cell.setAttribute("aria-label", label);
    cell.title = label;
    cell.querySelector(".glyph").textContent = GLYPHS[run.status] || "?";
    return cell;
  },

  async openRun(runId) {
    const d = this.d;
    d.selectedRunId = runId;
    d.log = { offset: 0, text: "", complete: false, attempt: null };
    for (const cell of $("grid").querySelectorAll("[data-run-id]")) {
      cell.setAttribute("aria-pressed", String(Number(cell.dataset.runId) === runId));
    }
    const panel = $("run-panel");
    panel.hidden = false;
    setText("run-title", "Interval run");
    $("run-status").hidden = true;
    replaceChildren($("run-details"), []);
    $("run-error-box").hidden = true;
    $("run-blocks-box").hidden = true;
    setText("run-log", "Loading…");
    showMessage("run-panel-error", "");
    const gen = generation;
    try {
      await this.loadRun(gen);
    } catch (error) {
      if (alive(gen)) showMessage("run-panel-error", `Could not load the run: ${apiErrorText(error)}`);
    }
    panel.scrollIntoView({ block: "nearest" });
  },

  async loadRun(gen) {
    const d = this.d;
    const runId = d.selectedRunId;
    const log = d.log;
    const [runRes, logRes] = await Promise.all([
      api("GET", teamPath(`/transfer_runs/${runId}`)),
      api("GET", teamPath(`/transfer_runs/${runId}/logs?offset=${log.offset}`)),
    ]);
    if (!alive(gen) || d.selectedRunId !== runId || d.log !== log) return;
    const run = runRes.data;
    if (log.attempt !== null && log.attempt !== run.attempt) {
      // a new attempt: read its output from the start on the next refresh
      d.log = { offset: 0, text: "", complete: false, attempt: run.attempt };
    } else {
      log.attempt = run.attempt;
      const chunk = logRes.data;
      if (chunk.offset === log.offset) {
        log.text += chunk.content;
        log.offset = chunk.next_offset;
      }
      log.complete = chunk.complete && FINAL_RUN.has(run.status);
    }
    this.renderRun(run);
  },

  renderRun(run) {
    setText("run-title", `Interval ${run.data_date}`);
    const status = $("run-status");
    status.hidden = false;
    status.className = `badge st-${run.status}`;
    status.textContent = run.status;
    const items = [
      ["Run", `#${run.id}`],
      ["Interval", `${fmtRangeValue(run.interval_start)} → ${fmtRangeValue(run.interval_end)}`],
      ["Attempt", fmtNumber(run.attempt)],
      ["Pipeline version", run.pipeline_version || "–"],
      ["Queued", fmtTime(run.queued_time)],
      ["Started", fmtTime(run.started_time)],
      ["Ended", fmtTime(run.ended_time)],
      ["Duration", fmtDuration(run.total_duration)],
      ["Rows", fmtNumber(run.total_rows)],
    ];
    replaceChildren($("run-details"), items.map(([k, v]) => el("div", {}, el("dt", {}, k), el("dd", {}, v))));
    $("run-error-box").hidden = !run.message;
    setText("run-error", run.message || "");
    const blocks = run.query_details || [];
    $("run-blocks-box").hidden = blocks.length === 0;
    replaceChildren($("run-blocks"), blocks.map((b) => el("tr", {},
      el("td", {}, el("code", {}, b.block_uuid)),
      el("td", {}, b.status ? badge(b.status) : "–"),
      el("td", { class: "nowrap" }, fmtDuration(b.duration_seconds)),
      el("td", {}, fmtNumber(b.rows)),
      el("td", { class: "col-error" }, b.error ? errorText(b.error) : "–"),
    )));
    const bf = this.d.backfill;
    const rerun = $("run-rerun");
    rerun.dataset.runId = String(run.id);
    rerun.disabled = this.d.busy || !can(bf, "rerun") || !FINAL_RUN.has(run.status);
    rerun.title = rerun.disabled
      ? (bf && !can(bf, "rerun") ? `A ${bf.status} backfill cannot re-run intervals.` : "The interval is queued or running.")
      : "Queue this interval again as a new attempt.";
    const log = this.d.log;
    let text = log.text;
    if (!text) text = log.complete ? "(no output captured)" : "(waiting for output…)";
    const pre = $("run-log");
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.textContent = text;
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  },

  /** The chosen intervals as a runs:rerun body: run ids, the failed runs of the chosen
   * aggregated cells, or every failed run when the cells chosen hold all of them. */
  async chosenBody() {
    const d = this.d;
    const periods = [...d.chosenPeriods.values()];
    const failed = periods.reduce((n, p) => n + p.failed, 0);
    if (periods.length && !d.chosen.size && d.coverage && failed === d.coverage.counts.FAILED) {
      return { statuses: ["FAILED"] };
    }
    const ids = new Set(d.chosen);
    for (const p of periods) {
      for (const run of await this.runsOfPeriod(p.first, p.last, "FAILED")) ids.add(run.id);
    }
    return { run_ids: [...ids] };
  },

  /** Re-run intervals (runs:rerun) as new attempts: `chosen` → the selection, else the
   * run ids given (one run's panel). */
  async rerun(runIds, fromPanel) {
    const d = this.d;
    if (!d || !d.backfill || d.busy || !(runIds === "chosen" || runIds.length)) return;
    d.busy = true;
    this.updateButtons();
    const where = fromPanel ? "run-panel-error" : "rerun-error";
    showMessage(where, "");
    try {
      const body = runIds === "chosen" ? await this.chosenBody() : { run_ids: runIds };
      if (body.run_ids && !body.run_ids.length) {
        showMessage(where, "The chosen intervals have no failed run any more: nothing to re-run.");
        return;
      }
      const res = await api("POST", teamPath(`/backfills/${d.id}/runs:rerun`), { body });
      if (this.d !== d || !state.session) return;
      d.chosen.clear();
      d.chosenPeriods.clear();
      d.runsSignature = null;
      if (d.log) d.log.complete = false; // follow the open run into its new attempt
      d.busy = false;
      this.renderBackfill(res.data.backfill);
      refreshNow();
    } catch (error) {
      if (this.d === d) showMessage(where, `Could not re-run: ${apiErrorText(error)}`);
    } finally {
      d.busy = false;
      if (this.d === d) {
        this.updateButtons();
        this.updateChosen();
      }
    }
  },

  /** Ctrl/⌘-click: add or remove a failed interval from the selection to re-run. */
  toggleChosen(cell) {
    const id = Number(cell.dataset.runId);
    if (this.d.chosen.has(id)) this.d.chosen.delete(id);
    else if (cell.dataset.status === "FAILED") this.d.chosen.add(id);
    cell.classList.toggle("chosen", this.d.chosen.has(id));
    this.updateChosen();
  },

  /** "Select failed": the failed intervals in view (run cells, or aggregated cells). */
  chooseFailed() {
    const d = this.d;
    for (const cell of $("grid").querySelectorAll('[data-run-id][data-status="FAILED"]')) {
      d.chosen.add(Number(cell.dataset.runId));
      cell.classList.add("chosen");
    }
    for (const cell of $("grid").querySelectorAll("button.agg-cell[data-failed]")) {
      const failed = Number(cell.dataset.failed);
      if (!failed) continue;
      d.chosenPeriods.set(`${cell.dataset.first}-${cell.dataset.last}`,
        { first: Number(cell.dataset.first), last: Number(cell.dataset.last), failed });
      cell.classList.add("chosen");
    }
    this.updateChosen();
  },

  clearChosen() {
    this.d.chosen.clear();
    this.d.chosenPeriods.clear();
    for (const cell of $("grid").querySelectorAll(".chosen")) cell.classList.remove("chosen");
    this.updateChosen();
  },

  updateChosen() {
    const d = this.d;
    if (!d) return;
    let n = d.chosen.size;
    for (const p of d.chosenPeriods.values()) n += p.failed;
    const bf = d.backfill;
    const allowed = can(bf, "rerun");
    $("rerun-bar").hidden = !allowed;
    $("rerun-selected").disabled = d.busy || !n;
    $("rerun-selected").textContent = n ? `Re-run ${plural(n, "interval")}` : "Re-run selected";
    $("rerun-clear").hidden = !n;
    setText("rerun-count", n ? `${plural(n, "failed interval")} selected` : "");
  },

  closeRun() {
    this.d.selectedRunId = null;
    this.d.log = null;
    $("run-panel").hidden = true;
    for (const cell of $("grid").querySelectorAll('[aria-pressed="true"]')) cell.setAttribute("aria-pressed", "false");
  },
};

const FINAL_RUN = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
const TRANSFER_CHECK_MS = 5000;

function setupDetail() {
  $("action-start").addEventListener("click", () => detailView.act({ status: "SCHEDULED" }, "start"));
  $("action-pause").addEventListener("click", () => detailView.act({ paused: true }, "pause"));
  $("action-resume").addEventListener("click", () => detailView.act({ paused: false }, "resume"));
  $("action-retry").addEventListener("click", () => detailView.act({ status: "SCHEDULED" }, "retry"));
  $("action-cancel").addEventListener("click", () => {
    $("cancel-confirm").hidden = false;
    $("cancel-no").focus();
  });
  $("cancel-no").addEventListener("click", () => {
    $("cancel-confirm").hidden = true;
    $("action-cancel").focus();
  });
  $("cancel-yes").addEventListener("click", async () => {
    $("cancel-confirm").hidden = true;
    await detailView.act({ status: "CANCELLED" }, "cancel");
  });
  $("grid").addEventListener("click", (event) => {
    const cell = event.target.closest("[data-run-id]");
    if (!cell) return;
    if (event.ctrlKey || event.metaKey) detailView.toggleChosen(cell);
    else detailView.openRun(Number(cell.dataset.runId));
  });
  $("rerun-select-failed").addEventListener("click", () => detailView.chooseFailed());
  $("rerun-clear").addEventListener("click", () => detailView.clearChosen());
  $("rerun-selected").addEventListener("click", () => detailView.rerun("chosen", false));
  $("run-rerun").addEventListener("click", (event) => {
    detailView.rerun([Number(event.currentTarget.dataset.runId)], true);
  });
  $("run-close").addEventListener("click", () => detailView.closeRun());
}

// ---- create view -------------------------------------------------------------------------

const newView = {
  section: "view-new",
  previewed: null, // {key, idempotencyKey} of the values last previewed successfully
  busy: false,

  async enter(route, gen) {
    document.title = "New backfill · backfill";
    showMessage("new-error", "");
    this.fillTimezones();
    const select = $("f-transfer");
    const wanted = route.params.get("transfer") || select.value;
    try {
      await ensureTransfers(true);
    } catch (error) {
      if (alive(gen)) showMessage("new-error", `Could not load the pipelines: ${apiErrorText(error)}`);
      return;
    }
    if (!alive(gen)) return;
    const options = Array.from(state.transfers.values())
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((t) => el("option", { value: t.id }, `${t.name} (${t.uuid})`));
    if (options.length === 0) {
      showMessage("new-error", "This team has no pipelines yet: add them to the project and sync.");
    }
    replaceChildren(select, [el("option", { value: "" }, "Choose a pipeline…"), ...options]);
    if (wanted && state.transfers.has(Number(wanted))) select.value = String(wanted);
    else if (options.length === 1) select.value = options[0].value;
    this.transferChanged();
    this.prefill(route.params);
    this.formChanged();
    if (route.params.get("preview") === "1") this.preview();
  },

  /** Values given in the address (the coverage page links here with a range and reprocess). */
  prefill(params) {
    if (params.has("interval_type")) {
      $("f-interval_type").value = params.get("interval_type");
      this.intervalChanged();
    }
    for (const field of ["range_start", "range_end", "reprocess", "timezone", "interval_units"]) {
      if (params.has(field)) $(`f-${field}`).value = params.get(field);
    }
  },

  fillTimezones() {
    const list = $("timezones");
    if (list.children.length || typeof Intl.supportedValuesOf !== "function") return;
    replaceChildren(list, ["UTC", ...Intl.supportedValuesOf("timeZone")].map((tz) => el("option", { value: tz })));
  },

  transferChanged() {
    const t = state.transfers.get(Number($("f-transfer").value));
    $("f-timezone").placeholder = t ? `${t.timezone || "UTC"} (the pipeline's)` : "the pipeline's";
    const hint = $("variables-hint");
    const own = t && Object.keys(t.variables || {}).length ? t.variables : null;
    hint.textContent = own ? `Pipeline variables: ${JSON.stringify(own)}` : "";
    // The placeholder shows this pipeline's own variables (what an override looks like).
    $("f-variables").placeholder = own ? JSON.stringify(own, null, 2) : t ? "this pipeline has no variables" : '{"key": "value"}';
    $("f-retries").placeholder = t ? `${t.retries} (the pipeline's)` : "the pipeline's";
    const blocks = t ? t.blocks : [];
    $("f-blocks").hidden = blocks.length < 2;
    replaceChildren($("f-block-list"), blocks.map((b) => el("label", { class: "block-choice" },
      el("input", { type: "checkbox", name: "block", value: b.uuid, checked: true }), ` ${b.uuid} `,
      el("span", { class: "muted" }, b.upstream.length ? `(${b.type}, after ${b.upstream.join(", ")})` : `(${b.type})`))));
  },

  intervalChanged() {
    const type = $("f-interval_type").value;
    $("cron-field").hidden = type !== "custom";
    const dateOnly = ["day", "week", "month", "year"].includes(type);
    for (const id of ["f-range_start", "f-range_end"]) {
      const input = $(id);
      const wantType = dateOnly ? "date" : "datetime-local";
      if (input.type === wantType) continue;
      const value = input.value;
      input.type = wantType;
      if (!value) continue;
      input.value = dateOnly ? value.slice(0, 10) : `${value.slice(0, 10)}T00:00`;
    }
  },

  /** The form as a request body, and the problems found before asking the server. */
  read() {
    const errors = {};
    const value = (id) => $(id).value.trim();
    const transferId = Number(value("f-transfer"));
    if (!transferId) errors.transfer_id = "Choose a pipeline.";
    const body = {
      range_start: value("f-range_start"),
      range_end: value("f-range_end"),
      interval_type: value("f-interval_type"),
      run_order: value("f-run_order"),
      reprocess: value("f-reprocess"),
    };
    if (!body.range_start) errors.range_start = `${fieldLabel("range_start")} is required: the start of the first interval.`;
    if (!body.range_end) errors.range_end = `${fieldLabel("range_end")} is required: the start of the last interval.`;
    const name = value("f-name");
    if (name) body.name = name;
    const timezone = value("f-timezone");
    if (timezone) body.timezone = timezone;
    if (body.interval_type === "custom" && value("f-cron")) body.cron = value("f-cron");
    const boxes = Array.from($("f-block-list").querySelectorAll("input[name=block]"));
    const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
    if (boxes.length && chosen.length === 0) errors.block_uuids = "Select at least one block to run.";
    else if (chosen.length < boxes.length) body.block_uuids = chosen;
    for (const field of ["interval_units", "max_active_runs", "retries"]) {
      const input = $(`f-${field}`);
      const raw = input.value.trim();
      if (!raw) {
        if (input.validity && input.validity.badInput) errors[field] = `${fieldLabel(field)} must be a whole number.`;
        continue;
      }
      const n = Number(raw);
      if (!Number.isInteger(n)) errors[field] = `${fieldLabel(field)} must be a whole number, not “${raw}”.`;
      else body[field] = n;
    }
    const variables = $("f-variables").value.trim();
    if (variables) {
      try {
        const parsed = JSON.parse(variables);
        if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
          errors.variables = 'Variables must be a JSON object, like {"currency": "USD"}.';
        } else {
          body.variables = parsed;
        }
      } catch (error) {
        errors.variables = `Variables is not valid JSON: ${error.message}.`;
      }
    }
    return { transferId, body, errors, key: JSON.stringify([transferId, body]) };
  },

  clearErrors() {
    showMessage("new-error", "");
    for (const field of FORM_FIELDS) {
      const input = this.input(field);
      showMessage(`err-${field}`, "");
      if (input) {
        input.removeAttribute("aria-invalid");
        input.removeAttribute("aria-describedby");
      }
    }
  },

  input(field) {
    return $(field === "transfer_id" ? "f-transfer" : `f-${field}`);
  },

  showFieldErrors(errors, summary) {
    let first = null;
    for (const [field, message] of Object.entries(errors)) {
      const input = this.input(field);
      showMessage(`err-${field}`, message);
      if (input) {
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", `err-${field}`);
        if (field === "cron") $("cron-field").hidden = false;
        first = first || input;
      }
    }
    showMessage("new-error", summary);
    if (first) first.focus();
  },

  /** A refusal of the server next to the field(s) it names (by their labels). */
  showServerError(error, what) {
    const text = apiErrorText(error);
    const named = Object.fromEntries(fieldsNamed(error.serverMessage, FORM_FIELDS).map((field) => [field, text]));
    const refused = error.status >= 400 && error.status < 500; // else the server or the network failed
    this.showFieldErrors(named, `${what} ${refused ? "refused" : "failed"}: ${text}`);
    const other = error.status === 409 && error.serverMessage ? error.serverMessage.match(/backfill (\d+)/) : null;
    if (other) {
      $("new-error").append(" ", el("a", { href: `#/backfills/${other[1]}` }, `Open backfill #${other[1]}`));
    }
  },

  formChanged() {
    const { key } = this.read();
    const fresh = this.previewed !== null && this.previewed.key === key;
    $("start-button").disabled = this.busy || !fresh;
    $("preview").classList.toggle("stale", !fresh);
    setText("start-hint", fresh ? "" : this.previewed ? "The values changed: preview again." : "Preview the intervals first.");
  },

  async preview() {
    const form = this.read();
    this.clearErrors();
    if (Object.keys(form.errors).length) {
      this.showFieldErrors(form.errors, "Fix the highlighted fields.");
      return;
    }
    this.busy = true;
    $("preview-button").disabled = true;
    this.formChanged();
    try {
      const res = await api("POST", teamPath(`/transfers/${form.transferId}/backfills:dry_run`), { body: form.body });
      this.previewed = { key: form.key, idempotencyKey: randomKey() };
      this.renderPreview(res.data);
    } catch (error) {
      this.previewed = null;
      $("preview").hidden = true;
      this.showServerError(error, "Preview");
    } finally {
      this.busy = false;
      $("preview-button").disabled = false;
      this.formChanged();
    }
  },

  renderPreview(dry) {
    $("preview").hidden = false;
    const skippedNote = dry.transfer_runs_skipped
      ? `${fmtNumber(dry.transfer_runs_skipped)} skipped because of reprocess “${dry.reprocess}”.`
      : "none skipped.";
    setText("preview-summary", `${plural(dry.transfer_runs_to_run, "interval")} would run `
      + `(${fmtNumber(dry.transfer_runs_total)} in the range, ${intervalText(dry)}, ${dry.timezone}); ${skippedNote} `
      + `Name: “${dry.name}”.`);
    setText("preview-run-count", `(${fmtNumber(dry.transfer_runs_to_run)}, in run order)`);
    const shown = dry.intervals.slice(0, PREVIEW_SHOWN);
    $("preview-none").hidden = shown.length > 0;
    replaceChildren($("preview-intervals"), shown.map((iv) => el("li", { "data-start": iv.interval_start },
      /^\d{4}-\d{2}-\d{2}$/.test(iv.data_date)
        ? iv.data_date
        : `${fmtRangeValue(iv.interval_start)} → ${fmtRangeValue(iv.interval_end)}`)));
    const more = dry.transfer_runs_to_run - shown.length;
    $("preview-more").hidden = more <= 0;
    setText("preview-more", `…and ${fmtNumber(more)} more.`);
    $("preview-skipped-box").hidden = dry.transfer_runs_skipped === 0;
    setText("preview-skip-count", `(${fmtNumber(dry.transfer_runs_skipped)})`);
    replaceChildren($("preview-skipped"), dry.skipped_intervals.slice(0, PREVIEW_SHOWN)
      .map((iv) => el("li", {}, iv.data_date)));
  },

  async start() {
    const form = this.read();
    this.clearErrors();
    if (Object.keys(form.errors).length) {
      this.showFieldErrors(form.errors, "Fix the highlighted fields.");
      return;
    }
    if (!this.previewed || this.previewed.key !== form.key) {
      showMessage("new-error", "Preview the intervals of these values before starting.");
      return;
    }
    this.busy = true;
    this.formChanged();
    try {
      const res = await api("POST", teamPath(`/transfers/${form.transferId}/backfills`), {
        body: form.body,
        headers: { "Idempotency-Key": this.previewed.idempotencyKey },
      });
      this.previewed = null;
      $("preview").hidden = true;
      location.hash = `#/backfills/${res.data.transfer_backfill_id}`;
    } catch (error) {
      this.showServerError(error, "Start");
    } finally {
      this.busy = false;
      this.formChanged();
    }
  },
};

function setupNew() {
  const form = $("new-form");
  form.addEventListener("input", () => newView.formChanged());
  form.addEventListener("change", (event) => {
    if (event.target.id === "f-transfer") newView.transferChanged();
    if (event.target.id === "f-interval_type") newView.intervalChanged();
    newView.formChanged();
  });
  $("preview-button").addEventListener("click", () => newView.preview());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    newView.start();
  });
}

const pipelineViews = makePipelineViews({
  $, el, api, teamPath, setText, showMessage, replaceChildren, ensureTransfers, state, alive, fmtNumber,
});
const VIEWS = {
  list: listView,
  detail: detailView,
  new: newView,
  pipelines: pipelineViews.pipelinesView,
  pipeline: pipelineViews.pipelineView,
};

// ---- start -------------------------------------------------------------------------------

setupSignIn();
setupList();
setupDetail();
setupNew();
pipelineViews.setup();
window.addEventListener("hashchange", render);
render();
