// A large backfill's grid (SPEC §8): above a few thousand intervals, cells per month, week
// or day, coloured by the share of each status, on rows that carry the time axis (a year
// per row for months and weeks, a month per row for days). A cell zooms into its period;
// "Zoom out" goes back. Drawn from the backfill's coverage spans
// (GET /v1/teams/{team}/backfills/{id}/coverage, `coveragePath`): every interval of the
// backfill by the status of its own run, MISSING while it is not queued yet. An interval
// belongs to the local day (backfill's zone) its start falls on, whatever its type: days /
// weeks / months / years by calendar arithmetic from the first start; fixed steps and cron
// by their span's day, the spans being cut at local midnight (`?split=day`), so every day,
// week and month counts exactly the intervals that start in it however irregular the
// series (cron such as `0 9 * * 1-5`, DST days). Calendar series are not cut: one span per
// interval would only make the answer larger. At the finest zoom (one day) the page draws
// that day's runs as the plain grid's cells (`hooks.runCell`), fetched by the page
// (`hooks.wantRuns`).

export const AGGREGATE_ABOVE = 5000;
const MAX_CELLS = 1500;
const ORDER = ["COMPLETED", "FAILED", "RUNNING", "QUEUED", "CANCELLED", "MISSING"];
const COLOURS = {
  COMPLETED: "var(--st-completed)", FAILED: "var(--st-failed)", RUNNING: "var(--st-running)",
  QUEUED: "var(--st-queued)", CANCELLED: "var(--st-cancelled)", MISSING: "#eef0f4",
};
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const DAY = 86400000;
const pad = (n) => String(n).padStart(2, "0");

/** Whether a backfill's grid is drawn aggregated: above AGGREGATE_ABOVE intervals, any type. */
export function aggregatable(bf) {
  return bf.transfer_runs_total > AGGREGATE_ABOVE;
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

function civil(day) {
  const d = new Date(day * DAY);
  return { y: d.getUTCFullYear(), m: d.getUTCMonth(), d: d.getUTCDate(), weekday: (d.getUTCDay() + 6) % 7 };
}

const CALENDAR_DAYS = { day: 1, week: 7 };
const CALENDAR_MONTHS = { month: 1, year: 12 };

/** Whether a series (a backfill or its coverage) steps by the calendar (days … years). */
function isCalendar(series) {
  return !series.cron && (series.interval_type in CALENDAR_DAYS || series.interval_type in CALENDAR_MONTHS);
}

/** The coverage a backfill's aggregated grid is drawn from: cut at local midnight unless
 * its intervals step by the calendar (their days are arithmetic, see calendarDay). */
export function coveragePath(bf) {
  return `/backfills/${bf.transfer_backfill_id}/coverage${isCalendar(bf) ? "" : "?split=day"}`;
}

/** The local day of interval i of a calendar series (days, weeks, months, years): the
 * series' rule, boundary k from the first start's local date, a month's day clamped. */
function calendarDay(coverage, firstDay) {
  const units = coverage.interval_units || 1;
  if (CALENDAR_DAYS[coverage.interval_type]) {
    const step = CALENDAR_DAYS[coverage.interval_type] * units;
    return (i) => firstDay + i * step;
  }
  const step = CALENDAR_MONTHS[coverage.interval_type] * units;
  const anchor = civil(firstDay);
  return (i) => {
    const months = anchor.m + i * step;
    const y = anchor.y + Math.floor(months / 12);
    const m = ((months % 12) + 12) % 12;
    const last = new Date(Date.UTC(y, m + 1, 0)).getUTCDate();
    return Math.floor(Date.UTC(y, m, Math.min(anchor.d, last)) / DAY);
  };
}

/** The start of interval k of a span, for its label: its starts read evenly spaced
 * between its first and last start (exact for fixed steps; a span lies within one local
 * day, so a cron's spacing inside it is its times of day): in absolute time, else in
 * wall-clock time when only that spacing is whole seconds (a cron across a fall-back
 * overlap, where one interval is an hour longer). */
function spanClock(span, timeZone) {
  const start = Date.parse(span.start);
  const last = Date.parse(span.last_start);
  const steps = Math.max(1, span.count - 1);
  const step = (last - start) / steps;
  const wallStart = start + offsetAt(start, timeZone);
  const wallStep = (last + offsetAt(last, timeZone) - wallStart) / steps;
  const wall = !Number.isInteger(step / 1000) && Number.isInteger(wallStep / 1000);
  return { wall, start, step, wallStart, wallStep };
}

/** The local day of every interval of the coverage (Int32Array) and its status (array):
 * a calendar series by arithmetic, any other by the day of its span's start (its spans are
 * cut at local midnight: coveragePath). */
function perInterval(coverage) {
  const days = new Int32Array(coverage.total);
  const statuses = new Array(coverage.total);
  const dayOf = localDays(coverage.timezone);
  const byCalendar = isCalendar(coverage) ? calendarDay(coverage, dayOf(Date.parse(coverage.start))) : null;
  let i = 0;
  for (const span of coverage.spans) {
    if (byCalendar) {
      for (let k = 0; k < span.count; k += 1) days[i + k] = byCalendar(i + k);
    } else {
      days.fill(dayOf(Date.parse(span.start)), i, i + span.count);
    }
    statuses.fill(span.status, i, i + span.count);
    i += span.count;
  }
  return { days, statuses, dayOf, calendar: byCalendar !== null };
}

/** UTC ms of the local midnight that starts local day `day` in a zone. */
function midnight(day, timeZone) {
  const guess = day * DAY - offsetAt(day * DAY, timeZone);
  return day * DAY - offsetAt(guess, timeZone);
}

/** The UTC bounds [lo, hi) of the local days of intervals first..last, an hour wider on
 * each side (a query window; `inDays` keeps the runs that belong). */
export function periodWindow(coverage, view, first, last) {
  const from = view.data.days[first];
  const to = view.data.days[last];
  return {
    lo: midnight(from, coverage.timezone) - 3600000,
    hi: midnight(to + 1, coverage.timezone) + 3600000,
    inDays: (iso) => {
      const day = view.data.dayOf(Date.parse(iso));
      return day >= from && day <= to;
    },
  };
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
  return `${b.label}: ${b.total} interval${b.total === 1 ? "" : "s"}, ${parts.join(", ")}`;
}

const FINER = { month: "day", week: "day", day: "interval" };

/** "YYYY-MM-DD HH:MM" (the coverage's zone) of the start of interval i; the date of a
 * calendar interval. */
function intervalLabel(coverage, data, i) {
  if (data.calendar) {
    const c = civil(data.days[i]);
    return `${c.y}-${pad(c.m + 1)}-${pad(c.d)}`;
  }
  let at = 0;
  for (const span of coverage.spans) {
    if (i < at + span.count) {
      const c = spanClock(span, coverage.timezone);
      const k = i - at;
      if (c.wall) return new Date(c.wallStart + k * c.wallStep).toISOString().slice(0, 16).replace("T", " ");
      return formatter(coverage.timezone, "label").format(new Date(c.start + k * c.step));
    }
    at += span.count;
  }
  return String(i);
}

/** The zoomed-in day when the grid shows single intervals: {from, to, key}, else null. */
export function intervalWindow(view) {
  const top = view.stack && view.stack[view.stack.length - 1];
  return top && top.level === "interval" ? { from: top.from, to: top.to, key: `${top.from}-${top.to}` } : null;
}

/** The cells of one day's intervals: its runs (as the plain grid draws them, so a click
 * opens the run and Ctrl-click chooses it) in the order of the coverage's statuses, and a
 * pending cell for each interval not queued yet. Until the runs are there, plain cells. */
function intervalCells(el, coverage, view, top, hooks) {
  const key = `${top.from}-${top.to}`;
  const runs = view.runs && view.runs.key === key ? view.runs.items : null;
  const cells = [];
  let next = 0;
  for (let i = top.from; i < top.to; i += 1) {
    const s = view.data.statuses[i];
    if (runs && s !== "MISSING" && next < runs.length) {
      cells.push(hooks.runCell(runs[next]));
      next += 1;
    } else {
      const label = `${intervalLabel(coverage, view.data, i)}: ${s === "MISSING" ? "pending, not queued yet" : s}`;
      const status = s === "MISSING" ? "PENDING" : s;
      cells.push(el("span", { class: `cell st-${status}`, "data-status": status, title: label, role: "img", "aria-label": label }));
    }
  }
  if (runs) cells.push(...runs.slice(next).map(hooks.runCell)); // queued since the coverage was read
  return el("div", { class: "agg-cells" }, ...cells);
}

/**
 * Draw the aggregated grid into `grid` and its controls into `bar`. `view` keeps the zoom
 * ({stack: [{level, from, to}]}) and the runs of the zoomed-in day across refreshes.
 * `hooks`: runCell(run) → the plain grid's cell of a run; wantRuns() → fetch the runs of
 * intervalWindow(view); periodClick(bucket, event) → true when the page handled the click
 * (Ctrl-click chooses a period); chosen(bucket) → whether it is chosen; zoomed() → the
 * zoom changed.
 */
export function renderAggregated(el, grid, bar, coverage, view, hooks) {
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
  const draw = () => {
    hooks.zoomed();
    renderAggregated(el, grid, bar, coverage, view, hooks);
    if (intervalWindow(view)) hooks.wantRuns();
  };
  let rows;
  if (top.level === "interval") {
    rows = [el("div", { class: "agg-row" }, el("span", { class: "agg-axis" }, intervalLabel(coverage, view.data, top.from).slice(0, 10))),
      intervalCells(el, coverage, view, top, hooks)];
  } else {
    const found = buckets(view.data, top.level, top.from, top.to);
    const byRow = [];
    for (const b of found) {
      if (!byRow.length || byRow[byRow.length - 1].row !== b.row) byRow.push({ row: b.row, items: [] });
      byRow[byRow.length - 1].items.push(b);
    }
    rows = byRow.map((r) => el("div", { class: "agg-row" }, el("span", { class: "agg-axis" }, r.row), ...r.items.map((b) => {
      const button = el("button", {
        type: "button", class: `agg-cell agg-${top.level}${hooks.chosen(b) ? " chosen" : ""}`, title: describe(b),
        "aria-label": describe(b), "data-first": b.first, "data-last": b.last, "data-total": b.total,
        "data-failed": b.counts.FAILED || 0,
      });
      button.style.background = share(b.counts, b.total); // CSSOM: allowed by the page's CSP
      button.addEventListener("click", (event) => {
        if (hooks.periodClick(b, event, button)) return;
        view.stack.push({ level: FINER[top.level], from: b.first, to: b.last + 1 });
        draw();
      });
      return button;
    })));
  }
  grid.classList.add("aggregated");
  grid.replaceChildren(...rows);
  const levels = { month: "months", week: "weeks", day: "days" };
  const zoomOut = el("button", { type: "button", class: "btn btn-small", id: "agg-zoom-out" }, "Zoom out");
  zoomOut.disabled = view.stack.length <= 1;
  zoomOut.addEventListener("click", () => {
    view.stack.pop();
    draw();
  });
  const total = `${coverage.total.toLocaleString("en-US")} intervals`;
  const text = top.level === "interval"
    ? `${total}, one cell each on ${intervalLabel(coverage, view.data, top.from).slice(0, 10)} — select one for its error and `
      + "its log; Ctrl- or ⌘-click failed ones to choose them."
    : `${total} by ${levels[top.level]} — a cell's colours are the shares of each status; select one to zoom in, Ctrl- or `
      + "⌘-click to choose its failed intervals.";
  bar.replaceChildren(el("span", {}, text), zoomOut);
  bar.hidden = false;
  view.renderMs = performance.now() - t0;
  grid.dataset.renderMs = String(Math.round(view.renderMs));
}
