// A large backfill's grid (SPEC §8): above a few thousand intervals, cells per month, week
// or day, coloured by the share of each status, on rows that carry the time axis (a year
// per row for months and weeks, a month per row for days). A cell zooms into its period;
// "Zoom out" goes back. Drawn from the backfill's coverage spans
// (GET /v1/teams/{team}/backfills/{id}/coverage): every interval of the backfill by the
// status of its own run, MISSING while it is not queued yet.

export const AGGREGATE_ABOVE = 5000;
const MAX_CELLS = 1500;
const ORDER = ["COMPLETED", "FAILED", "RUNNING", "QUEUED", "CANCELLED", "MISSING"];
const COLOURS = {
  COMPLETED: "var(--st-completed)", FAILED: "var(--st-failed)", RUNNING: "var(--st-running)",
  QUEUED: "var(--st-queued)", CANCELLED: "var(--st-cancelled)", MISSING: "#eef0f4",
};
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const ABSOLUTE = new Set(["second", "minute", "hour"]);
const DAY = 86400000;
const pad = (n) => String(n).padStart(2, "0");

/** Whether a backfill's intervals can be drawn aggregated (fixed steps, or whole days). */
export function aggregatable(bf) {
  if (bf.transfer_runs_total <= AGGREGATE_ABOVE) return false;
  if (ABSOLUTE.has(bf.interval_type)) return true;
  return bf.interval_type === "day" && (bf.interval_units || 1) === 1;
}

const FORMATS = new Map();

/** One formatter per zone and kind (building one costs far more than using it). */
function formatter(timeZone, kind) {
  const key = `${kind}|${timeZone}`;
  if (!FORMATS.has(key)) {
    FORMATS.set(key, kind === "parts"
      ? new Intl.DateTimeFormat("en-GB", {
        timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
        second: "2-digit", hourCycle: "h23",
      })
      : new Intl.DateTimeFormat("sv-SE", { timeZone, dateStyle: "short", timeStyle: "short" }));
  }
  return FORMATS.get(key);
}

/** UTC offset (ms) of a zone at an instant. */
function offsetAt(ms, timeZone) {
  const parts = formatter(timeZone, "parts").formatToParts(new Date(ms));
  const get = (type) => Number(parts.find((p) => p.type === type).value);
  return Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second")) - Math.floor(ms / 1000) * 1000;
}

/** Local day numbers (days since 1970-01-01 in the zone) of instants: the offset is read
 * twice per UTC day, and per instant only on a day when it changes. */
function localDays(timeZone) {
  const cache = new Map();
  return (ms) => {
    const utcDay = Math.floor(ms / DAY);
    let off = cache.get(utcDay);
    if (off === undefined) {
      const a = offsetAt(utcDay * DAY, timeZone);
      off = a === offsetAt(utcDay * DAY + DAY - 1, timeZone) ? a : null;
      cache.set(utcDay, off);
    }
    return Math.floor((ms + (off === null ? offsetAt(ms, timeZone) : off)) / DAY);
  };
}

/** The local day of every interval of the coverage (Int32Array) and its status (array). */
function perInterval(coverage) {
  const days = new Int32Array(coverage.total);
  const statuses = new Array(coverage.total);
  const daily = coverage.interval_type === "day";
  const dayOf = localDays(coverage.timezone);
  const firstDay = dayOf(Date.parse(coverage.start));
  let i = 0;
  for (const span of coverage.spans) {
    const start = Date.parse(span.start);
    const step = span.count > 1 ? (Date.parse(span.last_start) - start) / (span.count - 1) : 0;
    for (let k = 0; k < span.count; k += 1, i += 1) {
      days[i] = daily ? firstDay + i : dayOf(start + k * step);
      statuses[i] = span.status;
    }
  }
  return { days, statuses };
}

function civil(day) {
  const d = new Date(day * DAY);
  return { y: d.getUTCFullYear(), m: d.getUTCMonth(), d: d.getUTCDate(), weekday: (d.getUTCDay() + 6) % 7 };
}

const KEYS = {
  month: (day) => { const c = civil(day); return { key: `${c.y}-${pad(c.m + 1)}`, row: String(c.y), label: `${MONTHS[c.m]} ${c.y}` }; },
  week: (day) => {
    const monday = day - civil(day).weekday;
    const c = civil(monday);
    return { key: `w${monday}`, row: String(civil(monday + 3).y), label: `week of ${c.y}-${pad(c.m + 1)}-${pad(c.d)}` };
  },
  day: (day) => { const c = civil(day); return { key: `d${day}`, row: `${MONTHS[c.m]} ${c.y}`, label: `${c.y}-${pad(c.m + 1)}-${pad(c.d)}` }; },
};

/** Buckets of intervals [from, to) at a level: {key, row, label, first, last, counts, total}. */
export function buckets(data, level, from, to) {
  const out = [];
  const keyOf = KEYS[level];
  let current = null;
  let lastDay = null;
  let lastKey = null;
  for (let i = from; i < to; i += 1) {
    const day = data.days[i];
    if (day !== lastDay) {
      lastKey = keyOf(day);
      lastDay = day;
    }
    if (!current || current.key !== lastKey.key) {
      current = { ...lastKey, first: i, last: i, counts: {}, total: 0 };
      out.push(current);
    }
    current.last = i;
    current.total += 1;
    const s = data.statuses[i];
    current.counts[s] = (current.counts[s] || 0) + 1;
  }
  return out;
}

/** The coarsest-first level whose cells fit: day, else week, else month. */
function defaultLevel(data, from, to) {
  const spanDays = data.days[to - 1] - data.days[from] + 1;
  if (spanDays <= MAX_CELLS) return "day";
  if (spanDays / 7 <= MAX_CELLS) return "week";
  return "month";
}

function share(counts, total) {
  let at = 0;
  const stops = [];
  for (const s of ORDER) {
    if (!counts[s]) continue;
    const next = at + (counts[s] / total) * 100;
    stops.push(`${COLOURS[s]} ${at.toFixed(2)}% ${next.toFixed(2)}%`);
    at = next;
  }
  return `linear-gradient(to top, ${stops.join(", ")})`;
}

function describe(b) {
  const parts = ORDER.filter((s) => b.counts[s]).map((s) => `${b.counts[s]} ${s.toLowerCase()}`);
  return `${b.label}: ${b.total} intervals, ${parts.join(", ")}`;
}

const FINER = { month: "day", week: "day", day: "interval" };

/** "YYYY-MM-DD HH:MM" (the coverage's zone) of the start of interval i. */
function intervalLabel(coverage, i) {
  let at = 0;
  for (const span of coverage.spans) {
    if (i < at + span.count) {
      const start = Date.parse(span.start);
      const step = span.count > 1 ? (Date.parse(span.last_start) - start) / (span.count - 1) : 0;
      return formatter(coverage.timezone, "label").format(new Date(start + (i - at) * step));
    }
    at += span.count;
  }
  return String(i);
}

/**
 * Draw the aggregated grid into `grid` and its controls into `bar`. `view` keeps the zoom
 * ({stack: [{level, from, to}]}) across refreshes.
 */
export function renderAggregated(el, grid, bar, coverage, view) {
  const t0 = performance.now();
  if (!view.data || view.total !== coverage.total || view.signature !== JSON.stringify(coverage.spans)) {
    view.data = perInterval(coverage);
    view.total = coverage.total;
    view.signature = JSON.stringify(coverage.spans);
  }
  if (!view.stack || !view.stack.length) {
    view.stack = [{ level: defaultLevel(view.data, 0, coverage.total), from: 0, to: coverage.total }];
  }
  const top = view.stack[view.stack.length - 1];
  const draw = () => renderAggregated(el, grid, bar, coverage, view);
  let rows;
  if (top.level === "interval") {
    const cells = [];
    for (let i = top.from; i < top.to; i += 1) {
      const s = view.data.statuses[i];
      const label = `${intervalLabel(coverage, i)}: ${s}`;
      cells.push(el("span", { class: `agg-cell st-${s}`, "data-status": s, title: label, role: "img", "aria-label": label }));
    }
    rows = [el("div", { class: "agg-row" }, el("span", { class: "agg-axis" }, intervalLabel(coverage, top.from).slice(0, 10)), ...cells)];
  } else {
    const found = buckets(view.data, top.level, top.from, top.to);
    const byRow = [];
    for (const b of found) {
      if (!byRow.length || byRow[byRow.length - 1].row !== b.row) byRow.push({ row: b.row, items: [] });
      byRow[byRow.length - 1].items.push(b);
    }
    rows = byRow.map((r) => el("div", { class: "agg-row" }, el("span", { class: "agg-axis" }, r.row), ...r.items.map((b) => {
      const button = el("button", {
        type: "button", class: `agg-cell agg-${top.level}`, title: describe(b), "aria-label": describe(b),
        "data-first": b.first, "data-total": b.total, "data-failed": b.counts.FAILED || 0,
      });
      button.style.background = share(b.counts, b.total); // CSSOM: allowed by the page's CSP
      button.addEventListener("click", () => {
        view.stack.push({ level: FINER[top.level], from: b.first, to: b.last + 1 });
        draw();
      });
      return button;
    })));
  }
  grid.classList.add("aggregated");
  grid.replaceChildren(...rows);
  const levels = { month: "months", week: "weeks", day: "days", interval: "intervals" };
  const zoomOut = el("button", { type: "button", class: "btn btn-small", id: "agg-zoom-out" }, "Zoom out");
  zoomOut.disabled = view.stack.length <= 1;
  zoomOut.addEventListener("click", () => {
    view.stack.pop();
    draw();
  });
  bar.replaceChildren(el("span", {}, `${coverage.total.toLocaleString("en-US")} intervals by ${levels[top.level]}`
    + " — a cell's colours are the shares of each status; select one to zoom in."), zoomOut);
  bar.hidden = false;
  view.renderMs = performance.now() - t0;
  grid.dataset.renderMs = String(Math.round(view.renderMs));
}
