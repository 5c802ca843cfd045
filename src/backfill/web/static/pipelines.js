// The pipelines page (#/pipelines: each pipeline's blocks drawn as a graph, its load error)
// and a pipeline's page (#/pipelines/{id}: its coverage heatmap over all backfills, where a
// span or "all gaps" opens the create form prefilled with reprocess missing / failed).
// The views get the page's helpers from app.js (makePipelineViews(ctx)).
import { apiErrorText } from "./api_errors.js";
import { heatmap, rangeOf } from "./coverage_map.js";

const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 150;
const NODE_H = 34;
const GAP_X = 60;
const GAP_Y = 18;
const DAILY_DAYS = 365;
const HOURLY_DAYS = 14;
const STATUS_ORDER = ["COMPLETED", "FAILED", "RUNNING", "QUEUED", "CANCELLED", "MISSING"];

function svg(tag, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

/** Blocks in layers: a block sits one layer right of its deepest upstream block. */
export function layers(blocks) {
  const byId = new Map(blocks.map((b) => [b.uuid, b]));
  const depth = new Map();
  const visit = (b, seen = new Set()) => {
    if (depth.has(b.uuid)) return depth.get(b.uuid);
    if (seen.has(b.uuid)) return 0; // a cycle cannot load; draw it flat rather than loop
    seen.add(b.uuid);
    const ups = (b.upstream || []).map((u) => byId.get(u)).filter(Boolean);
    const d = ups.length ? 1 + Math.max(...ups.map((u) => visit(u, seen))) : 0;
    depth.set(b.uuid, d);
    return d;
  };
  blocks.forEach((b) => visit(b));
  const columns = [];
  for (const b of blocks) (columns[depth.get(b.uuid)] ||= []).push(b);
  return columns;
}

/** An SVG drawing of the DAG: boxes (uuid and type) and arrows from upstream to downstream. */
export function dagSvg(blocks, label) {
  const columns = layers(blocks);
  const rows = Math.max(1, ...columns.map((c) => c.length));
  const width = columns.length * (NODE_W + GAP_X) - GAP_X + 20;
  const height = rows * (NODE_H + GAP_Y) - GAP_Y + 20;
  const root = svg("svg", { class: "dag", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label });
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" });
  marker.append(svg("path", { d: "M0,0 L10,5 L0,10 z", class: "dag-arrowhead" }));
  defs.append(marker);
  root.append(defs);
  const at = new Map();
  columns.forEach((column, x) => column.forEach((b, y) => at.set(b.uuid, { x: 10 + x * (NODE_W + GAP_X), y: 10 + y * (NODE_H + GAP_Y) })));
  for (const b of blocks) {
    for (const up of b.upstream || []) {
      const from = at.get(up);
      const to = at.get(b.uuid);
      if (!from || !to) continue;
      root.append(svg("line", {
        class: "dag-edge", x1: from.x + NODE_W, y1: from.y + NODE_H / 2, x2: to.x, y2: to.y + NODE_H / 2,
        "marker-end": "url(#arrow)",
      }));
    }
  }
  for (const b of blocks) {
    const p = at.get(b.uuid);
    const group = svg("g", { class: `dag-node dag-${b.type}`, "data-block": b.uuid });
    group.append(svg("title", {}, `${b.uuid} (${b.type})${b.upstream && b.upstream.length ? ` after ${b.upstream.join(", ")}` : ""}`));
    group.append(svg("rect", { x: p.x, y: p.y, width: NODE_W, height: NODE_H, rx: 6 }));
    group.append(svg("text", { x: p.x + 10, y: p.y + 15, class: "dag-name" }, b.uuid.length > 20 ? `${b.uuid.slice(0, 19)}…` : b.uuid));
    group.append(svg("text", { x: p.x + 10, y: p.y + 28, class: "dag-type" }, b.type));
    root.append(group);
  }
  return root;
}

function isoDate(ms) {
  return new Date(ms).toISOString().slice(0, 10);
}

/** A pipeline's load error (its files as they are now do not load) as the page says it. */
function loadErrorText(t) {
  return `The latest version of this pipeline does not load, the last good one (${t.version}) keeps running: ${t.load_error}`;
}

export function makePipelineViews(ctx) {
  const { $, el, api, teamPath, setText, showMessage, replaceChildren, ensureTransfers, state, alive, fmtNumber } = ctx;

  const pipelinesView = {
    section: "view-pipelines",

    enter() {
      document.title = "Pipelines · backfill";
      showMessage("pipelines-error", "");
      this.signature = null;
    },

    /** The cards, redrawn when a pipeline changed (a new version, a load error). */
    async refresh(_route, gen) {
      await ensureTransfers(true);
      if (!alive(gen)) return;
      showMessage("pipelines-error", "");
      const items = Array.from(state.transfers.values()).sort((a, b) => a.name.localeCompare(b.name));
      const signature = JSON.stringify(items.map((t) => [t.id, t.version, t.load_error, t.name]));
      if (signature === this.signature) return;
      this.signature = signature;
      $("pipelines-empty").hidden = items.length > 0;
      setText("pipelines-empty", "This team has no pipelines yet: add them to the project directory and sync.");
      replaceChildren($("pipeline-cards"), items.map((t) => el("article", { class: "card pipeline-card", "data-pipeline": t.uuid },
        el("div", { class: "view-head" },
          el("h2", {}, el("a", { href: `#/pipelines/${t.id}` }, t.name)),
          el("span", { class: "muted" }, `${t.uuid} · ${t.timezone || "UTC"} · ${t.blocks.length} block${t.blocks.length === 1 ? "" : "s"}`),
          el("a", { class: "btn btn-small", href: `#/pipelines/${t.id}` }, "Coverage"),
          el("a", { class: "btn btn-small", href: `#/new?transfer=${t.id}` }, "New backfill")),
        t.load_error ? el("p", { class: "notice notice-error load-error", role: "alert" }, loadErrorText(t)) : null,
        el("div", { class: "dag-box" }, dagSvg(t.blocks, `Blocks of ${t.name}`)))));
    },

    failed(error) {
      showMessage("pipelines-error", `Could not load the pipelines: ${apiErrorText(error)}`);
    },
  };

  const pipelineView = {
    section: "view-pipeline",
    d: null,

    defaults(interval) {
      const today = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
      const days = interval === "hour" ? HOURLY_DAYS : DAILY_DAYS;
      return { start: isoDate(today - (days - 1) * 86400000), end: isoDate(today) };
    },

    enter(route) {
      const p = route.params;
      const interval = p.get("interval") === "hour" ? "hour" : "day";
      const fallback = this.defaults(interval);
      this.d = { id: route.id, interval, start: p.get("start") || fallback.start, end: p.get("end") || fallback.end, coverage: null, selected: null, signature: null };
      document.title = "Pipeline coverage · backfill";
      $("cov-interval").value = interval;
      $("cov-start").value = this.d.start;
      $("cov-end").value = this.d.end;
      showMessage("cov-error", "");
      setText("cov-summary", "Loading…");
      replaceChildren($("cov-map"), []);
      replaceChildren($("cov-spans"), []);
      $("cov-selection").hidden = true;
      $("cov-load-error").hidden = true;
    },

    async refresh(_route, gen) {
      const d = this.d;
      await ensureTransfers();
      if (!alive(gen)) return;
      const t = (await api("GET", teamPath(`/transfers/${d.id}`))).data; // its load error as of now
      if (!alive(gen)) return;
      $("cov-load-error").hidden = !t.load_error;
      setText("cov-load-error", t.load_error ? loadErrorText(t) : "");
      setText("cov-title", t ? `${t.name}` : `Pipeline ${d.id}`);
      setText("cov-subtitle", t ? `${t.uuid} · ${t.timezone || "UTC"}` : "");
      const hour = d.interval === "hour";
      const query = new URLSearchParams({ start: hour ? `${d.start}T00:00` : d.start, end: hour ? `${d.end}T23:00` : d.end, interval_type: d.interval });
      const res = await api("GET", teamPath(`/transfers/${d.id}/coverage?${query}`));
      if (!alive(gen)) return;
      showMessage("cov-error", "");
      const signature = JSON.stringify(res.data.spans);
      if (signature === d.signature) return; // unchanged: keep the selection and the focus
      d.signature = signature;
      d.coverage = res.data;
      this.draw();
    },

    failed(error) {
      const message = error.status === 404 ? `Pipeline ${this.d.id} was not found in this team.`
        : `Could not load the coverage: ${apiErrorText(error)}`;
      showMessage("cov-error", message);
      setText("cov-summary", "");
    },

    draw() {
      const c = this.d.coverage;
      const counts = STATUS_ORDER.filter((s) => c.counts[s]).map((s) => `${fmtNumber(c.counts[s])} ${s.toLowerCase()}`);
      setText("cov-summary", `${fmtNumber(c.total)} ${c.interval_type === "hour" ? "hours" : "days"} in ${c.timezone}: ${counts.join(", ")}`);
      replaceChildren($("cov-legend"), STATUS_ORDER.map((s) => el("li", {}, el("span", { class: `dot st-${s}` }), s.toLowerCase())));
      replaceChildren($("cov-map"), heatmap(el, c));
      $("cov-map").classList.toggle("hourly", c.interval_type === "hour");
      const gaps = c.spans.map((s, i) => [s, i]).filter(([s]) => s.status === "MISSING");
      const failures = c.spans.map((s, i) => [s, i]).filter(([s]) => s.status === "FAILED" || s.status === "CANCELLED");
      $("cov-all-gaps").disabled = gaps.length === 0;
      $("cov-all-gaps").textContent = gaps.length ? `Backfill all gaps (${fmtNumber(gaps.reduce((n, [s]) => n + s.count, 0))})` : "No gaps";
      $("cov-all-failed").disabled = failures.length === 0;
      $("cov-all-failed").textContent = failures.length
        ? `Re-run failed and cancelled (${fmtNumber(failures.reduce((n, [s]) => n + s.count, 0))})` : "Nothing failed";
      replaceChildren($("cov-spans"), c.spans.map((s, i) => el("tr", { "data-span": i },
        el("td", {}, el("span", { class: `badge st-${s.status}` }, s.status)),
        el("td", {}, rangeOf(c, i, i).range_start),
        el("td", {}, rangeOf(c, i, i).range_end),
        el("td", { class: "num" }, fmtNumber(s.count)),
        el("td", {}, s.backfill_id ? el("a", { href: `#/backfills/${s.backfill_id}` }, `#${s.backfill_id}`) : "–"),
        el("td", {}, s.status === "COMPLETED" || s.status === "RUNNING" || s.status === "QUEUED" ? ""
          : el("a", { class: "btn btn-small", href: this.createLink(i, i, s.status === "MISSING" ? "missing" : "failed") },
            "Backfill this span")))));
      this.select(this.d.selected);
    },

    createLink(first, last, reprocess) {
      const c = this.d.coverage;
      const range = rangeOf(c, first, last);
      const params = new URLSearchParams({
        transfer: this.d.id, interval_type: c.interval_type, timezone: c.timezone, reprocess, preview: "1", ...range,
      });
      return `#/new?${params}`;
    },

    gapRange(statuses) {
      const spans = this.d.coverage.spans;
      const picked = spans.map((s, i) => i).filter((i) => statuses.includes(spans[i].status));
      return picked.length ? [picked[0], picked[picked.length - 1]] : null;
    },

    select(spanIndex) {
      const d = this.d;
      d.selected = spanIndex;
      for (const cell of $("cov-map").querySelectorAll(".hm-cell.selected")) cell.classList.remove("selected");
      const bar = $("cov-selection");
      if (spanIndex === null || !d.coverage || !d.coverage.spans[spanIndex]) {
        bar.hidden = true;
        return;
      }
      const span = d.coverage.spans[spanIndex];
      for (const cell of $("cov-map").querySelectorAll(`.hm-cell[data-span="${spanIndex}"]`)) cell.classList.add("selected");
      const range = rangeOf(d.coverage, spanIndex, spanIndex);
      setText("cov-selection-text", `${span.status}: ${fmtNumber(span.count)} interval${span.count === 1 ? "" : "s"}, ${range.range_start} → ${range.range_end}`
        + (span.backfill_id ? ` (backfill #${span.backfill_id})` : ""));
      const link = $("cov-selection-create");
      const runnable = span.status === "MISSING" || span.status === "FAILED" || span.status === "CANCELLED";
      link.hidden = !runnable;
      if (runnable) link.href = this.createLink(spanIndex, spanIndex, span.status === "MISSING" ? "missing" : "failed");
      bar.hidden = false;
    },
  };

  function setup() {
    $("cov-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const params = new URLSearchParams({ interval: $("cov-interval").value, start: $("cov-start").value, end: $("cov-end").value });
      location.hash = `#/pipelines/${pipelineView.d.id}?${params}`;
    });
    $("cov-interval").addEventListener("change", () => {
      const fallback = pipelineView.defaults($("cov-interval").value);
      $("cov-start").value = fallback.start;
      $("cov-end").value = fallback.end;
    });
    $("cov-map").addEventListener("click", (event) => {
      const cell = event.target.closest(".hm-cell");
      if (cell) pipelineView.select(Number(cell.dataset.span));
    });
    $("cov-all-gaps").addEventListener("click", () => {
      const r = pipelineView.gapRange(["MISSING"]);
      if (r) location.hash = pipelineView.createLink(r[0], r[1], "missing");
    });
    $("cov-all-failed").addEventListener("click", () => {
      const r = pipelineView.gapRange(["FAILED", "CANCELLED"]);
      if (r) location.hash = pipelineView.createLink(r[0], r[1], "failed");
    });
  }

  return { pipelinesView, pipelineView, setup };
}
