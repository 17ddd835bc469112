// Ops page module: contacts and responses per engagement scoring plan (/api/v1/scoring/report).
// Self-contained: it adds its own card to the dashboard and reloads with the date filters.
"use strict";

(() => {
  const CHART = "scoring-plans";

  function card() {
    let box = document.querySelector(`section[data-chart="${CHART}"]`);
    if (box) return box;
    box = el("section", { class: "card chart wide", "data-chart": CHART },
      el("header", {}, el("h2", {}, "Scoring plans: contacts and responses")),
      el("div", { class: "plot", id: `plot-${CHART}` }),
      el("p", { class: "caption" }));
    document.querySelector("#dashboard").append(box);
    return box;
  }

  function period() {
    const form = document.querySelector("#filters");
    const since = new Date(`${form.start.value}T00:00:00`).getTime() / 1000;
    const until = new Date(`${form.end.value}T00:00:00`).getTime() / 1000 + 86400;
    const out = Number.isFinite(since) && Number.isFinite(until) ? { since, until } : {};
    // The stores ticked in the filters (none or all: the caller's whole scope, as the charts).
    const boxes = [...form.querySelectorAll("input[name=store]")];
    const picked = boxes.filter((i) => i.checked).map((i) => i.value);
    if (picked.length && picked.length < boxes.length) out.stores = picked.join(",");
    return out;
  }

  function render(d) {
    const plans = d.plans;
    const div = document.getElementById(`plot-${CHART}`);
    const box = card();
    // Said in words, like every chart of the page: plotly draws no data as axes from -1 to 1.
    if (!plans.some((p) => p.contacts || p.responses || p.buyers)) {
      Plotly.purge(div);
      div.replaceChildren(el("p", { class: "empty" }, plans.length
        ? "No scoring contacts or responses in this period."
        : "No scoring plan."));
      box.dataset.empty = "1";
    } else {
      delete box.dataset.empty;
      if (div.querySelector("p.empty")) div.replaceChildren();
      plotPlans(div, plans);
    }
    const fmt = (v, pct) => (v === null || v === undefined ? "–" : pct ? `${(100 * v).toFixed(1)}%` : String(v));
    box.querySelector(".caption").textContent = plans.map((p) =>
      `${p.plan}: ${p.members} members, ${fmt(p.contacts_per_member)} contacts each, ` +
      `${fmt(p.contacts_per_response)} contacts per response, buyer rate ${fmt(p.buyer_rate, true)}`,
    ).join(" · ") || "No scoring plan.";
  }

  function plotPlans(div, plans) {
    const bar = (name, key, color) => ({
      type: "bar", name, x: plans.map((p) => p.plan), y: plans.map((p) => p[key]), marker: { color },
    });
    Plotly.react(div, [
      bar("Contacts", "contacts", "#2f6f8f"),
      bar("Responses", "responses", "#e0a030"),
      bar("Buyers among its members", "buyers", "#5a9e6f"),
    ], {
      margin: { l: 48, r: 12, t: 8, b: 40 }, height: 280, barmode: "group",
      legend: { orientation: "h", y: -0.25 }, font: { family: "system-ui, sans-serif", size: 11 },
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    }, { displaylogo: false, responsive: true });
  }

  async function load() {
    const box = card();
    box.dataset.state = "loading";
    try {
      const d = await Api.call("GET", `/api/v1/scoring/report?${new URLSearchParams(period())}`);
      render(d);
      box.dataset.rows = d.plans.length;
      box.dataset.state = "ready";
    } catch (err) {
      box.dataset.state = "error";
      box.querySelector(".caption").textContent = err.message;
    }
  }

  const dashboard = document.querySelector("#dashboard");
  new MutationObserver(() => { if (!dashboard.hidden) load(); })
    .observe(dashboard, { attributes: true, attributeFilter: ["hidden"] });
  document.querySelector("#filters").addEventListener("submit", () => setTimeout(load, 0));
})();
