// Coverage heatmap of a pipeline (SPEC §8): pure drawing from the coverage spans of the
// team API (GET /v1/teams/{team}/transfers/{id}/coverage). A calendar (weeks × weekdays,
// month labels) for a daily series, days × hours for an hourly one; every cell is a
// button titled with its interval and status. Cells are created as elements with text
// and classes only (the page's CSP allows no inline style or script).

const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** Wall-clock parts of an instant in a time zone: {y, m, d, hh, mm, weekday (0 = Monday)}. */
export function wallClock(iso, timeZone) {
  const parts = new Intl.DateTimeFormat("en-GB", {
    timeZone, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit",
    weekday: "short", hourCycle: "h23",
  }).formatToParts(new Date(iso));
  const get = (type) => parts.find((p) => p.type === type).value;
  return {
    y: Number(get("year")), m: Number(get("month")), d: Number(get("day")),
    hh: Number(get("hour")), mm: Number(get("minute")), weekday: WEEKDAYS.indexOf(get("weekday")),
  };
}

const pad = (n) => String(n).padStart(2, "0");
export const dateText = (w) => `${w.y}-${pad(w.m)}-${pad(w.d)}`;
export const localText = (w) => `${dateText(w)}T${pad(w.hh)}:${pad(w.mm)}`;

/** Every interval of the coverage: {index, start (ISO), status, span}. */
export function intervals(coverage) {
  const out = [];
  let index = 0;
  coverage.spans.forEach((span, spanIndex) => {
    const spanStart = Date.parse(span.start);
    const spanLast = Date.parse(span.last_start);
    const step = span.count > 1 ? (spanLast - spanStart) / (span.count - 1) : 0;
    for (let k = 0; k < span.count; k += 1) {
      out.push({ index, start: new Date(spanStart + k * step).toISOString(), status: span.status, span: spanIndex });
      index += 1;
    }
  });
  return out;
}

/** The local date of each interval of a daily series: day k is the first day plus k days. */
function dailyDates(coverage, cells) {
  const w = wallClock(coverage.start, coverage.timezone);
  const base = Date.UTC(w.y, w.m - 1, w.d);
  return cells.map((c) => {
    const day = new Date(base + c.index * 86400000);
    return { y: day.getUTCFullYear(), m: day.getUTCMonth() + 1, d: day.getUTCDate(), weekday: (day.getUTCDay() + 6) % 7 };
  });
}

function cellButton(el, cell, label) {
  return el("button", {
    type: "button",
    class: `hm-cell st-${cell.status}`,
    "data-index": cell.index,
    "data-span": cell.span,
    "data-status": cell.status,
    "data-date": label,
    title: `${label}: ${cell.status}`,
    "aria-label": `${label}: ${cell.status}`,
  });
}

/** A calendar: one column per week (Monday first), one row per weekday, month labels on top. */
function calendar(el, coverage, cells) {
  const dates = dailyDates(coverage, cells);
  const lead = dates.length ? dates[0].weekday : 0;
  const weeks = Math.ceil((lead + cells.length) / 7);
  const months = el("div", { class: "hm-months", "data-weeks": weeks });
  const body = el("div", { class: "hm-calendar" });
  body.append(...WEEKDAYS.map((name, row) => el("span", { class: `hm-weekday hm-row-${row + 1}` }, row % 2 ? "" : name)));
  for (let i = 0; i < lead; i += 1) body.append(el("span", { class: "hm-blank", "aria-hidden": "true" }));
  let lastMonth = null;
  cells.forEach((cell, i) => {
    const date = dates[i];
    const button = cellButton(el, cell, dateText(date));
    body.append(button);
    const week = Math.floor((lead + i) / 7);
    if (date.m !== lastMonth && date.d <= 7) {
      const label = el("span", { class: "hm-month", "data-week": week }, date.m === 1 || lastMonth === null
        ? `${MONTHS[date.m - 1]} ${date.y}` : MONTHS[date.m - 1]);
      label.style.gridColumn = String(week + 2); // CSSOM, which the page's CSP allows
      months.append(label);
      lastMonth = date.m;
    }
  });
  return [months, body];
}

/** Days × hours: one row per local day (labelled), one column per local hour (labelled). */
function dayByHour(el, coverage, cells) {
  const head = el("div", { class: "hm-hours" }, el("span", { class: "hm-daylabel" }, ""),
    ...Array.from({ length: 24 }, (_, h) => el("span", { class: "hm-hour" }, h % 3 ? "" : pad(h))));
  const rows = [];
  let row = null;
  let rowDate = null;
  for (const cell of cells) {
    const w = wallClock(cell.start, coverage.timezone);
    const date = dateText(w);
    if (date !== rowDate) {
      row = { date, slots: new Array(24).fill(null) };
      rows.push(row);
      rowDate = date;
    }
    row.slots[w.hh] = cellButton(el, cell, `${date} ${pad(w.hh)}:${pad(w.mm)}`);
  }
  const body = el("div", { class: "hm-dayhour" }, ...rows.map((r) => el("div", { class: "hm-dayrow" },
    el("span", { class: "hm-daylabel" }, r.date),
    ...r.slots.map((slot) => slot || el("span", { class: "hm-blank", "aria-hidden": "true" })))));
  return [head, body];
}

/** The heatmap elements of a coverage (daily: calendar, hourly: day × hour, else a strip). */
export function heatmap(el, coverage) {
  const cells = intervals(coverage);
  if (coverage.interval_type === "day" && (coverage.interval_units || 1) === 1) return calendar(el, coverage, cells);
  if (coverage.interval_type === "hour" && (coverage.interval_units || 1) === 1) return dayByHour(el, coverage, cells);
  return [el("div", { class: "hm-strip" }, ...cells.map((c) => cellButton(el, c, c.start)))];
}

/** The range of create-form values that covers spans [first..last] of a coverage. */
export function rangeOf(coverage, first, last) {
  const start = wallClock(coverage.spans[first].start, coverage.timezone);
  const end = wallClock(coverage.spans[last].last_start, coverage.timezone);
  const calendarType = ["day", "week", "month", "year"].includes(coverage.interval_type);
  return calendarType
    ? { range_start: dateText(start), range_end: dateText(end) }
    : { range_start: localText(start), range_end: localText(end) };
}
