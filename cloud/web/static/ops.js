// The ops dashboard: filters -> /api/v1/analytics/<chart> -> plotly charts, CSV downloads.
"use strict";

Api.storageKey = "storelens.ops.token";

const CHARTS = [
  "footfall-hourly", "footfall-daily", "peak-hours", "dwell", "heatmap", "flows", "paths",
  "conversion", "conversion-hourly", "member-share", "coupon-uplift", "try-ons",
  "checkout-queue", "entry-to-checkout", "staff", "devices",
];
const PLOT_CONFIG = { displaylogo: false, responsive: true, modeBarButtonsToRemove: ["lasso2d", "select2d"] };
const COLORS = { now: "#2f6f8f", before: "#b0b8c0", peak: "#d9534f", alt: "#e0a030" };
// heatStore: the store the heatmap shows once the service picked one (null: let it pick the
// selected store with most visits, so the chart never opens on an empty floor).
const state = { stores: [], data: {}, heatStore: null };

const $ = (sel, root = document) => root.querySelector(sel);
const pct = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)}%`);
const num = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en"));

function layout(extra = {}) {
  return {
    margin: { l: 48, r: 12, t: 8, b: 40 },
    height: 280,
    legend: { orientation: "h", y: -0.25 },
    font: { family: "system-ui, sans-serif", size: 11 },
    paper_bgcolor: "rgba(0,0,0,0)",
    plot_bgcolor: "rgba(0,0,0,0)",
    ...extra,
  };
}

function filterParams(overrides = {}) {
  const form = $("#filters");
  const stores = [...form.querySelectorAll("input[name=store]:checked")].map((i) => i.value);
  const params = new URLSearchParams({ hour_from: form.hour_from.value, hour_to: form.hour_to.value });
  // No dates yet: the service's default period ends today on the stores' clocks (their time
  // zone), not the browser's; the form then shows the period it answered for.
  if (form.start.value) params.set("start", form.start.value);
  if (form.end.value) params.set("end", form.end.value);
  if (stores.length && stores.length < state.stores.length) params.set("stores", stores.join(","));
  for (const [k, v] of Object.entries(overrides)) params.set(k, v);
  return params;
}

// -- empty charts: said in words (plotly draws an empty chart as axes from -1 to 1) --------
const noVisitors = (d) => !d.comparison.totals.visitors && !d.comparison.previous_totals.visitors;
const EMPTY = {
  "footfall-hourly": (d) => noVisitors(d) && "No visitors were counted in this period (nor the one before).",
  "footfall-daily": (d) => noVisitors(d) && "No visitors were counted in this period (nor the one before).",
  "peak-hours": (d) => noVisitors(d) && "No visitors were counted in this period (nor the one before).",
  dwell: (d) => !d.rows.length && "No zone visits in this period.",
  "dwell-hist": (d) => !d.rows.length && "No zone visits in this period.",
  heatmap: (d) => !d.points && (d.store ? `No floor paths of store ${d.store} in this period.` : "No store."),
  flows: (d) => !d.rows.length && "No finished visits in this period.",
  paths: (d) => !d.rows.length && "No finished visits in this period.",
  conversion: (d) => !d.rows.length && "No visitors or sales in this period.",
  "conversion-hourly": (d) => !d.rows.length && "No visitors or sales in this period.",
  "member-share": (d) => !d.rows.length && "No finished visits in this period.",
  "coupon-uplift": (d) => !d.rows.some((r) => r.members) && "No members with marketing consent.",
  "try-ons": (d) => !d.totals.sessions && `No fitting-room sessions in this period (${num(d.totals.visits)} visits).`,
  "checkout-queue": (d) => !d.rows.length && "No checkout stays in this period.",
  "entry-to-checkout": (d) => !d.rows.some((r) => r.median_entry_to_checkout_s !== null) && `No sale linked to a visit in this period (${num(d.totals.sales)} sales).`,
  devices: (d) => !d.rows.length && "No devices registered for these stores.",
};

function showEmpty(chart, message) {
  const div = document.getElementById(`plot-${chart}`);
  if (window.Plotly) Plotly.purge(div);
  div.replaceChildren(el("p", { class: "empty" }, message));
  caption(chart, "");
  section(chart).dataset.empty = "1";
}

// -- renderers: one per chart, each gets the API's JSON body -----------------------------
const RENDER = {
  "footfall-hourly"(d) {
    const peaks = d.rows.filter((r) => r.peak);
    plot("footfall-hourly", [
      { x: d.rows.map((r) => r.hour), y: d.rows.map((r) => r.visitors), name: "Visitors", type: "scatter", mode: "lines", line: { color: COLORS.now } },
      { x: d.rows.map((r) => r.hour), y: d.rows.map((r) => r.previous_visitors), name: "Previous period", type: "scatter", mode: "lines", line: { color: COLORS.before, dash: "dot" } },
      { x: peaks.map((r) => r.hour), y: peaks.map((r) => r.visitors), name: "Peak hour of the day", type: "scatter", mode: "markers", marker: { color: COLORS.peak, size: 8 } },
    ]);
    caption("footfall-hourly", `Entrances ${num(d.comparison.totals.entrances)}, confirmed visits ${num(d.comparison.totals.visits)}.`);
  },
  "footfall-daily"(d) {
    const peaks = d.rows.filter((r) => r.peak);
    plot("footfall-daily", [
      { x: d.rows.map((r) => r.day), y: d.rows.map((r) => r.visitors), name: "Visitors", type: "bar", marker: { color: d.rows.map((r) => (r.peak ? COLORS.peak : COLORS.now)) } },
      { x: d.rows.map((r) => r.day), y: d.rows.map((r) => r.previous_visitors), name: "Previous period", type: "scatter", mode: "lines+markers", line: { color: COLORS.before, dash: "dot" } },
    ]);
    caption("footfall-daily", peaks.length ? `Busiest: ${peaks.map((r) => `${r.day} (${num(r.visitors)})`).join(", ")}.` : "No visitors in this period.");
  },
  "peak-hours"(d) {
    plot("peak-hours", [
      { x: d.rows.map((r) => r.hour_of_day), y: d.rows.map((r) => r.avg_visitors_per_day), name: "Visitors per day", type: "bar", marker: { color: d.rows.map((r) => (r.peak ? COLORS.peak : COLORS.now)) } },
      { x: d.rows.map((r) => r.hour_of_day), y: d.rows.map((r) => r.previous_avg_visitors_per_day), name: "Previous period", type: "scatter", mode: "lines", line: { color: COLORS.before, dash: "dot" } },
    ], { xaxis: { title: { text: "hour of day" }, dtick: 2 } });
    const peaks = d.rows.filter((r) => r.peak).map((r) => `${r.hour_of_day}:00`);
    caption("peak-hours", peaks.length ? `Peak hours: ${peaks.join(", ")}.` : "");
  },
  dwell(d) {
    const zones = d.rows.map((r) => r.zone);
    plot("dwell", [{
      type: "box", name: "Dwell (s)", x: zones,
      q1: d.rows.map((r) => r.q1_s), median: d.rows.map((r) => r.median_s), q3: d.rows.map((r) => r.q3_s),
      lowerfence: d.rows.map((r) => r.min_s), upperfence: d.rows.map((r) => r.p90_s), mean: d.rows.map((r) => r.mean_s),
      marker: { color: COLORS.now },
    }], { yaxis: { title: { text: "seconds (whiskers: min, p90)" }, type: "log" }, showlegend: false });
    caption("dwell", d.rows.map((r) => `${r.rank}. ${r.zone} (${num(r.visits)} visits, median ${r.median_s}s)`).join(" · "));
    RENDER["dwell-hist"](d);
  },
  "dwell-hist"(d) {
    const zones = d.rows.map((r) => r.zone);
    plot("dwell-hist", d.bins.map((bin, i) => ({
      type: "bar", name: bin.replace("dwell_", "").replace("_plus", "+").replaceAll("_", "–"), x: zones, y: d.rows.map((r) => r[bin]),
      marker: { color: `hsl(${200 - i * 30}, 55%, ${38 + i * 6}%)` },
    })), { barmode: "stack", yaxis: { title: { text: "zone visits" } } });
    caption("dwell-hist", "Zone visits by how long people stayed.");
  },
  heatmap(d) {
    const g = d.grid;
    // Empty cells stay blank (null) so the floor reads as "nobody was here".
    const z = g.z.map((row) => row.map((v) => (v > 0 ? v : null)));
    plot("heatmap", [{ type: "heatmap", x: g.x, y: g.y, z, colorscale: "YlOrRd", reversescale: true, colorbar: { title: { text: "s" } }, hovertemplate: "%{x} m, %{y} m: %{z} s<extra></extra>" }], {
      xaxis: { title: { text: "metres" }, constrain: "domain" },
      yaxis: { scaleanchor: "x", autorange: "reversed" },
      height: 300,
    });
    caption("heatmap", d.store ? `Store ${d.store}: seconds of presence per ${g.cell_m} m cell (${num(d.points)} samples along visitors' paths).` : "No store.");
  },
  flows(d) {
    const names = [...new Set(d.rows.flatMap((r) => [r.from_zone, r.to_zone]))].sort();
    const from = names.filter((n) => n !== "(exit)");
    const to = names.filter((n) => n !== "(entry)");
    const z = from.map((a) => to.map((b) => (d.rows.find((r) => r.from_zone === a && r.to_zone === b) || { moves: 0 }).moves));
    plot("flows", [{ type: "heatmap", x: to, y: from, z, colorscale: "Blues", reversescale: true, text: z, texttemplate: "%{text}", hovertemplate: "%{y} → %{x}: %{z}<extra></extra>" }], {
      xaxis: { title: { text: "to" }, dtick: 1, tickangle: -60 }, yaxis: { title: { text: "from" }, automargin: true, dtick: 1 },
      margin: { l: 100, r: 12, t: 8, b: 90 }, height: 340,
    });
    const top = d.rows.filter((r) => r.from_zone !== "(entry)" && r.to_zone !== "(exit)").slice(0, 3);
    caption("flows", top.map((r) => `${r.from_zone} → ${r.to_zone} (${num(r.moves)})`).join(" · "));
  },
  paths(d) {
    const rows = [...d.rows].reverse();
    plot("paths", [{ type: "bar", orientation: "h", y: rows.map((r) => r.path), x: rows.map((r) => r.visits), marker: { color: COLORS.now } }], {
      margin: { l: 220, r: 12, t: 8, b: 30 }, yaxis: { automargin: true, tickfont: { size: 10 } }, showlegend: false,
    });
    caption("paths", "Visits by the sequence of zones they went through.");
  },
  conversion(d) {
    const byStore = group(d.rows, "store");
    plot("conversion", Object.entries(byStore).map(([store, rows]) => ({
      type: "scatter", mode: "lines+markers", name: store, x: rows.map((r) => r.day), y: rows.map((r) => r.conversion),
    })), { yaxis: { tickformat: ".0%", title: { text: "transactions / visitors" } } });
    const c = d.comparison;
    const uncounted = c.uncounted_store_days ? ` (${num(c.transactions - c.counted_transactions)} more on ${num(c.uncounted_store_days)} store-days without visitor counts)` : "";
    caption("conversion", `${num(c.counted_transactions)} transactions by ${num(c.visitors)} visitors${uncounted}; revenue ${num(c.revenue)}.`);
  },
  "conversion-hourly"(d) {
    plot("conversion-hourly", [
      { type: "bar", name: "Conversion", x: d.rows.map((r) => r.hour_of_day), y: d.rows.map((r) => r.conversion), marker: { color: COLORS.now } },
    ], { yaxis: { tickformat: ".0%" }, xaxis: { title: { text: "hour of day" }, dtick: 2 }, showlegend: false });
    caption("conversion-hourly", "POS transactions / visitors by hour of the day (store-days that counted visitors).");
  },
  "member-share"(d) {
    const byStore = group(d.rows, "store");
    plot("member-share", Object.entries(byStore).map(([store, rows]) => ({
      type: "scatter", mode: "lines+markers", name: store, x: rows.map((r) => r.day), y: rows.map((r) => r.member_share),
    })), { yaxis: { tickformat: ".0%", title: { text: "member visits / visits" } } });
    const c = d.comparison;
    caption("member-share", `Share ${pct(c.member_share)} (previous period ${pct(c.previous_member_share)}).`);
  },
  "coupon-uplift"(d) {
    const g = Object.fromEntries(d.rows.map((r) => [r.group, r]));
    const groups = ["offered", "holdout"];
    const colors = { offered: COLORS.now, holdout: COLORS.alt };
    const traces = groups.flatMap((name) => [
      { type: "bar", name, legendgroup: name, marker: { color: colors[name] }, x: ["Purchase rate", "Coupons / member"], y: [g[name].purchase_rate, g[name].redemption_per_member] },
      { type: "bar", name, legendgroup: name, showlegend: false, marker: { color: colors[name] }, x: ["Spend / member"], y: [g[name].spend_per_member], xaxis: "x2", yaxis: "y2" },
    ]);
    plot("coupon-uplift", traces, {
      barmode: "group", grid: { rows: 1, columns: 2 },
      xaxis: { domain: [0, 0.62] }, xaxis2: { domain: [0.72, 1], anchor: "y2" }, yaxis2: { anchor: "x2" },
    });
    const u = d.uplift_pct;
    caption("coupon-uplift", `Members: ${num(g.offered.members)} offered, ${num(g.holdout.members)} holdout. Uplift: spend/member ${u.spend_per_member ?? "–"}%, purchase rate ${u.purchase_rate ?? "–"}%.`);
  },
  "try-ons"(d) {
    const byStore = group(d.rows, "store");
    plot("try-ons", Object.entries(byStore).flatMap(([store, rows]) => [
      { type: "bar", name: `${store} try-on rate`, x: rows.map((r) => r.day), y: rows.map((r) => r.tryon_rate) },
      { type: "scatter", mode: "lines+markers", name: `${store} median min`, x: rows.map((r) => r.day), y: rows.map((r) => (r.median_tryon_s === null ? null : r.median_tryon_s / 60)), yaxis: "y2" },
    ]), { yaxis: { tickformat: ".0%", title: { text: "visits with a try-on" } }, yaxis2: { overlaying: "y", side: "right", title: { text: "minutes" } } });
    const t = d.totals;
    caption("try-ons", `${num(t.sessions)} fitting-room sessions in ${num(t.tryon_visits)} of ${num(t.visits)} visits (${pct(t.tryon_rate)}), median ${t.median_tryon_s === null ? "–" : Math.round(t.median_tryon_s / 6) / 10} min; members who tried on and bought: ${pct(t.member_tryon_conversion)}. The camera sees people, not garments.`);
  },
  "checkout-queue"(d) {
    const byStore = group(d.rows, "store");
    plot("checkout-queue", Object.entries(byStore).flatMap(([store, rows]) => [
      { type: "bar", name: `${store} queue`, x: rows.map((r) => r.hour_of_day), y: rows.map((r) => r.avg_queue) },
      { type: "scatter", mode: "lines+markers", name: `${store} median wait (s)`, x: rows.map((r) => r.hour_of_day), y: rows.map((r) => r.median_wait_s), yaxis: "y2" },
    ]), { xaxis: { title: { text: "hour of day" }, dtick: 2 }, yaxis: { title: { text: "people waiting" } }, yaxis2: { overlaying: "y", side: "right", title: { text: "seconds" } } });
    const t = d.totals;
    caption("checkout-queue", `${num(t.checkouts)} checkout stays, median wait ${t.median_wait_s ?? "–"} s, average queue ${t.avg_queue ?? "–"} (max ${t.max_queue ?? "–"}).`);
  },
  "entry-to-checkout"(d) {
    const byStore = group(d.rows, "store");
    plot("entry-to-checkout", Object.entries(byStore).map(([store, rows]) => ({
      type: "scatter", mode: "lines+markers", name: store, x: rows.map((r) => r.day), y: rows.map((r) => (r.median_entry_to_checkout_s === null ? null : r.median_entry_to_checkout_s / 60)),
    })), { yaxis: { title: { text: "median minutes, entry to checkout" } } });
    const t = d.totals;
    caption("entry-to-checkout", `${num(t.sales)} sales: ${num(t.linked_member)} members' and ${num(t.linked_time)} by time at the till linked to their visit, ${num(t.unmatched)} unmatched, ${num(t.pending)} pending; median ${t.median_entry_to_checkout_s === null ? "–" : Math.round(t.median_entry_to_checkout_s / 6) / 10} min.`);
  },
  staff(d) {
    const byStore = group(d.rows, "store");
    plot("staff", Object.entries(byStore).map(([store, rows]) => ({
      type: "bar", name: store, x: rows.map((r) => r.day), y: rows.map((r) => r.staff_visits),
    })), { yaxis: { title: { text: "staff visits" } } });
    caption("staff", `${num(d.totals.staff_visits)} staff visits (badge or staff-only zone), left out of footfall, dwell, heatmap, flows, paths and conversion.`);
  },
  devices(d) {
    const cols = ["store", "device", "health", "last_seen", "fps", "cameras_online", "cameras_offline", "outbox_depth", "outbox_age_s", "lost_events"];
    const table = el("table", { class: "devices" },
      el("thead", {}, el("tr", {}, cols.map((c) => el("th", {}, c.replaceAll("_", " "))))),
      el("tbody", {}, d.rows.map((r) => el("tr", { class: `health-${r.health.replace(" ", "-")}` },
        cols.map((c) => el("td", {}, c === "health" ? el("span", { class: "badge" }, r.health) : r[c] ?? "–"))))));
    $("#plot-devices").replaceChildren(table);
    caption("devices", `${d.rows.length} devices; silent for over ${d.stale_after_s / 60} min counts as stale.`);
  },
};

function group(rows, key) {
  const out = {};
  for (const r of rows) (out[r[key]] ||= []).push(r);
  return out;
}

// Charts with one point per local day: the days are categories (ISO dates sort as text), so a
// one-day period shows "2026-12-02", not a millisecond time axis around midnight.
const DAY_CHARTS = new Set(["footfall-daily", "conversion", "member-share", "try-ons", "entry-to-checkout"]);
// Counts, rates and durations are never negative: an all-zero series sits on 0, not on -1..1.
const FLOOR_PLANS = new Set(["heatmap", "flows"]);

function plot(chart, traces, extra = {}) {
  if (DAY_CHARTS.has(chart)) extra.xaxis = { type: "category", categoryorder: "category ascending", ...extra.xaxis };
  if (!FLOOR_PLANS.has(chart)) {
    extra.yaxis = { rangemode: "nonnegative", ...extra.yaxis };
    if (extra.yaxis2) extra.yaxis2 = { rangemode: "nonnegative", ...extra.yaxis2 };
  }
  const div = document.getElementById(`plot-${chart}`);
  div.querySelector("p.empty")?.remove();
  delete section(chart).dataset.empty;
  Plotly.react(div, traces, layout(extra), PLOT_CONFIG);
}

function caption(chart, text) {
  $(`section[data-chart="${chart}"] .caption`).textContent = text;
}

function section(chart) {
  return $(`section[data-chart="${chart}"]`);
}

async function loadChart(chart, overrides = {}) {
  const box = section(chart);
  box.dataset.state = "loading";
  try {
    const d = await Api.call("GET", `/api/v1/analytics/${chart}?${filterParams(overrides)}`);
    state.data[chart] = d;
    const empty = EMPTY[chart]?.(d);
    if (empty) showEmpty(chart, empty);
    else RENDER[chart](d);
    box.dataset.rows = d.rows.length;
    if (chart === "heatmap" && d.store) {
      state.heatStore = d.store;
      $(".heat-store").value = d.store;
    }
    if (chart === "dwell") {
      if (empty) showEmpty("dwell-hist", EMPTY["dwell-hist"](d));
      section("dwell-hist").dataset.rows = d.rows.length;
      section("dwell-hist").dataset.state = "ready";
    }
    box.dataset.state = "ready";
    return d;
  } catch (err) {
    box.dataset.state = "error";
    caption(chart, err.message);
    if (err.status === 401) signedOut();
    throw err;
  }
}

function setKpi(name, value, previous, deltaPct) {
  const box = $(`.kpi[data-kpi="${name}"]`);
  box.querySelector(".value").textContent = value;
  const delta = box.querySelector(".delta");
  delta.textContent = deltaPct === null || deltaPct === undefined ? `previous ${previous}` : `${deltaPct > 0 ? "+" : ""}${deltaPct}% vs ${previous}`;
  delta.className = `delta ${deltaPct > 0 ? "up" : deltaPct < 0 ? "down" : ""}`;
}

function renderKpis() {
  const f = state.data["footfall-daily"];
  const c = state.data.conversion;
  const m = state.data["member-share"];
  if (f) setKpi("visitors", num(f.comparison.totals.visitors), num(f.comparison.previous_totals.visitors), f.comparison.change_pct.visitors);
  if (c) {
    const change = c.comparison.previous_transactions ? Math.round(1000 * (c.comparison.transactions - c.comparison.previous_transactions) / c.comparison.previous_transactions) / 10 : null;
    setKpi("transactions", num(c.comparison.transactions), num(c.comparison.previous_transactions), change);
    setKpi("conversion", pct(c.comparison.conversion), pct(c.comparison.previous_conversion), c.comparison.change_pct);
  }
  if (m) setKpi("member_share", pct(m.comparison.member_share), pct(m.comparison.previous_member_share), m.comparison.change_pct);
  if (f) $("#compare-note").textContent = `Compared with ${f.previous.start} – ${f.previous.end}.`;
}

async function refresh() {
  notice("");
  document.body.dataset.loading = "1";
  const heatStore = state.heatStore;
  const results = await Promise.allSettled(CHARTS.map((chart) => loadChart(chart, chart === "heatmap" && heatStore ? { stores: heatStore } : {})));
  const failed = results.filter((r) => r.status === "rejected");
  if (failed.length) notice(`Some charts could not load: ${failed[0].reason.message}`);
  const form = $("#filters");
  const answered = results.find((r) => r.status === "fulfilled");
  if (answered && !form.end.value) {
    form.start.value = answered.value.filters.start;
    form.end.value = answered.value.filters.end;
  }
  renderKpis();
  delete document.body.dataset.loading;
}

async function downloadCsv(chart) {
  const overrides = chart === "heatmap" && state.heatStore ? { stores: state.heatStore } : {};
  const params = filterParams(overrides);
  try {
    const text = await Api.call("GET", `/api/v1/analytics/${chart}.csv?${params}`, undefined, { text: true });
    const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "text/csv" })), download: `storelens-${chart}-${params.get("start")}-${params.get("end")}.csv` });
    document.body.append(link);
    link.click();
    link.remove();
  } catch (err) {
    notice(`CSV download failed: ${err.message}`);
  }
}

function fillHeatStores() {
  const picked = [...document.querySelectorAll("input[name=store]:checked")].map((i) => i.value);
  const select = $(".heat-store");
  const keep = select.value;
  const options = picked.length ? picked : state.stores.map((s) => s.id);
  select.replaceChildren(...options.map((id) => el("option", { value: id }, id)));
  if (options.includes(keep)) select.value = keep;
  else state.heatStore = null; // its store left the selection: the service picks again
}

async function start() {
  showWho("");
  $("#login").hidden = true;
  let me;
  try {
    me = await Api.call("GET", "/api/v1/auth/me");
  } catch (err) {
    return signedOut(err.status === 401 ? "" : err.message);
  }
  if (me.kind !== "ops") return signedOut("This page is for ops users; POS devices use /pos.");
  showWho(`${me.subject} (${me.role})`);
  const stores = await Api.call("GET", "/api/v1/stores?limit=1000");
  state.stores = stores.items;
  $("#store-list").replaceChildren(...state.stores.map((s) =>
    el("label", { class: "check" }, el("input", { type: "checkbox", name: "store", value: s.id, checked: true, onchange: fillHeatStores }), ` ${s.name}`)));
  fillHeatStores();
  $("#dashboard").hidden = false;
  await refresh();
}

function signedOut(message = "") {
  Api.signOut();
  showWho("");
  $("#dashboard").hidden = true;
  $("#login").hidden = false;
  const error = $("#login-error");
  error.textContent = message;
  error.hidden = !message;
}

function setup() {
  const form = $("#filters");
  for (let h = 0; h < 24; h++) form.hour_from.append(el("option", { value: h }, `${h}:00`));
  for (let h = 1; h <= 24; h++) form.hour_to.append(el("option", { value: h }, `${h}:00`));
  form.hour_to.value = "24";
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    refresh();
  });
  $(".heat-store").addEventListener("change", () => {
    state.heatStore = $(".heat-store").value;
    loadChart("heatmap", { stores: state.heatStore }).catch(() => {});
  });
  for (const button of document.querySelectorAll("button.csv")) {
    button.addEventListener("click", () => downloadCsv(button.dataset.csv));
  }
  $("#login").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target;
    try {
      const { token } = await Api.call("POST", "/api/v1/auth/login", { username: f.username.value, password: f.password.value });
      Api.setToken(token);
      f.password.value = "";
      await start();
    } catch (err) {
      signedOut(err.status === 401 ? "Wrong user name or password." : err.message);
    }
  });
  $("#sign-out").addEventListener("click", () => signedOut());
  if (Api.token()) start();
  else signedOut();
}

setup();
