// The mobile POS: member lookup, suggestions, offers, basket with coupons, and the store's
// fulfillment queue kept live by the push stream.
"use strict";

Api.storageKey = "storelens.pos.token";

const $ = (sel, root = document) => root.querySelector(sel);
const money = (v) => (v === null || v === undefined ? "–" : `€${Number(v).toFixed(2)}`);
const state = { store: null, member: null, basket: new Map(), products: new Map(), tasks: new Map() };

const COUPON_WORDS = {
  unknown: "No coupon has this code.",
  wrong_store: "This coupon can only be used in another store.",
  redeemed: "This coupon has already been used.",
  expired: "This coupon has expired.",
  not_yet_valid: "This coupon is not valid yet.",
  voided: "This coupon was cancelled.",
  min_spend: "The basket does not reach this coupon's minimum spend.",
  no_matching_items: "Nothing in the basket qualifies for this coupon.",
};
const OFFER_WORDS = {
  cap_reached: "This member has had enough offers for now.",
  declined_recently: "The member declined this offer recently.",
  no_marketing_consent: "The member has not agreed to marketing offers.",
  holdout: "This member is in the comparison group and gets no offers.",
  not_eligible: "This offer no longer applies to this member.",
  unknown_offer: "This offer no longer exists.",
};
const REJECT_REASONS = { not_in_stock: "Not in stock", damaged: "Damaged", no_capacity: "No capacity today" };
const STEP_LABEL = { accept: "Accept", pick: "Picked", pack: "Packed", ready: "Ready for pickup", "picked-up": "Collected", deliver: "Delivered" };

function minutes(seconds) {
  const m = Math.round(seconds / 60);
  return m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function clock(epoch) {
  return new Date(epoch * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// -- sign-in -------------------------------------------------------------------------------
async function start() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) {
    Api.setToken(fromLink);
    history.replaceState(null, "", location.pathname);
  }
  if (!Api.token()) return signedOut();
  let me;
  try {
    me = await Api.call("GET", "/api/v1/auth/me");
  } catch (err) {
    return signedOut(err.status === 401 ? "This device token is not valid (revoked or mistyped)." : err.message);
  }
  if (me.kind !== "pos") return signedOut("This is an ops login; sign in with a POS device token.");
  state.store = me.store;
  showWho(`${me.store} · ${me.subject}`);
  $("#signin").hidden = true;
  $("#app").hidden = false;
  loadTasks();
  Push.start();
}

function signedOut(message = "") {
  Push.stop();
  Api.signOut();
  showWho("");
  $("#app").hidden = true;
  $("#signin").hidden = false;
  const error = $("#signin-error");
  error.textContent = message;
  error.hidden = !message;
}

// -- member --------------------------------------------------------------------------------
async function lookup(query) {
  notice("");
  const q = query.trim();
  const body = /^m_/.test(q) ? { member_id: q } : { card_number: q };
  let member;
  try {
    member = await Api.call("POST", "/api/v1/pos/members/lookup", body);
  } catch (err) {
    $("#member").hidden = true;
    return notice(err.status === 404 ? "No member holds this card. Check the number or enroll the customer." : err.message);
  }
  state.member = member;
  state.basket.clear();
  renderMember(member);
  $("#member").hidden = false;
  await Promise.allSettled([loadActivity(member), loadRecommendations(member), loadOffers(member)]);
  renderBasket();
}

function renderMember(m) {
  $("#member-name").textContent = m.name || `Member ${m.id}`;
  $("#member-tier").textContent = m.tier;
  $("#member-score").textContent = `score ${m.score}`;
  $("#member-consent").textContent = m.marketing ? "offers OK" : "no marketing";
  $("#member-coupons").replaceChildren(...m.coupons.map((c) => el("option", { value: c.code }, describeCoupon(c))));
  $("#member").dataset.member = m.id;
  renderOnline(m);
}

// The web shop's product views and cart adds, with this store's stock, and the categories
// the member is likely to buy soon (propensity; only with marketing consent).
function renderOnline(m) {
  const likely = Object.entries(m.propensity || {}).filter(([, p]) => p >= 0.2)
    .map(([c, p]) => el("li", { class: "likely" }, `likely to buy ${c} soon (${Math.round(100 * p)}%)`));
  const viewed = (m.online_interest || []).map((r) => el("li", { class: "viewed", "data-sku": r.sku },
    `${r.name || r.sku}: ${r.cart_adds ? "in cart online" : `viewed online${r.views > 1 ? ` ${r.views}x` : ""}`}, `,
    r.in_stock_here ? `in stock here${r.shelf_location ? ` (${r.shelf_location})` : ""}` : "not in stock here"));
  const items = [...viewed, ...likely];
  $("#online").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "Nothing viewed online lately.")]));
}

function describeCoupon(c) {
  const off = c.kind === "percent" ? `${c.value}% off` : `${money(c.value)} off`;
  const on = c.scope === "basket" ? "the basket" : `${c.scope} ${c.scope_value}`;
  return `${off} ${on}${c.min_spend ? ` over ${money(c.min_spend)}` : ""}`;
}

async function loadActivity(m) {
  const list = $("#activity");
  list.replaceChildren(el("li", { class: "muted" }, "Loading…"));
  try {
    const v = await Api.call("GET", `/api/v1/pos/members/${encodeURIComponent(m.id)}/visit-today`);
    if (!v.visits_today) {
      list.replaceChildren(el("li", { class: "muted" }, m.tracking ? "Not seen in this store today." : "In-store tracking is off for this member."));
      return;
    }
    const since = v.in_store ? `in store since ${clock(v.started_at)}` : `visited at ${clock(v.started_at)}`;
    const items = [el("li", { class: "visit-summary" }, `${since}, ${Math.round(v.minutes_in_store)} min${v.visits_today > 1 ? ` (${v.visits_today} visits today)` : ""}`)];
    if (v.tryons) items.push(el("li", { class: "tryons" }, `Fitting room: ${v.tryons} session${v.tryons > 1 ? "s" : ""}, ${v.tryon_minutes} min`));
    for (const z of v.zones) items.push(el("li", {}, `${z.zone}${z.kind === "fitting_room" ? " (try-on)" : ""}: ${minutes(z.dwell_s)}`));
    list.replaceChildren(...items);
  } catch (err) {
    list.replaceChildren(el("li", { class: "error" }, err.message));
  }
}

async function product(sku) {
  if (!state.products.has(sku)) {
    state.products.set(sku, Api.call("GET", `/api/v1/catalog/products/${encodeURIComponent(sku)}`).catch(() => ({ sku })));
  }
  return state.products.get(sku);
}

// Only pictures served by this app are shown; anything else gets a local placeholder so the
// page never reaches outside the store network.
function pictureUrl(p) {
  const url = p.image_url || "";
  if (url.startsWith("/") && !url.startsWith("//")) return url;
  const q = new URLSearchParams({ name: p.name || p.sku, category: p.category || "" });
  return `/static/products/${encodeURIComponent(p.sku)}.svg?${q}`;
}

async function loadRecommendations(m) {
  const list = $("#recs");
  list.replaceChildren(el("li", { class: "muted" }, "Loading…"));
  try {
    const recs = await Api.call("GET", `/api/v1/pos/members/${encodeURIComponent(m.id)}/recommendations?limit=6`);
    const cards = await Promise.all(recs.items.map(async (r) => {
      const p = { ...(await product(r.sku)), ...r, image_url: r.image_url ?? (await product(r.sku)).image_url };
      return el("li", { class: "rec", "data-sku": r.sku },
        el("img", { src: pictureUrl(p), alt: r.name, loading: "lazy", width: 160, height: 160 }),
        el("div", { class: "name" }, r.name),
        el("div", { class: "why" }, r.reason),
        el("button", { type: "button", class: "link", onclick: () => addToBasket(r.sku) }, "Add to basket"));
    }));
    list.replaceChildren(...(cards.length ? cards : [el("li", { class: "muted" }, "No suggestions.")]));
  } catch (err) {
    list.replaceChildren(el("li", { class: "error" }, err.message));
  }
}

async function loadOffers(m) {
  const box = $("#offers");
  if (!m.marketing) {
    box.replaceChildren(el("p", { class: "muted" }, "No offers: the member has not agreed to marketing."));
    return;
  }
  try {
    const data = await Api.call("GET", `/api/v1/pos/members/${encodeURIComponent(m.id)}/offers`);
    box.replaceChildren(...(data.offers.length ? data.offers.map(offerCard) : [el("p", { class: "muted" }, "No offers right now.")]));
  } catch (err) {
    box.replaceChildren(el("p", { class: "error" }, err.message));
  }
}

function offerCard(o) {
  const card = el("div", { class: "offer", "data-offer": o.template_id },
    el("strong", {}, o.name),
    el("span", { class: "muted" }, o.why || o.description),
    el("div", { class: "actions" },
      el("button", { type: "button", class: "shown", onclick: () => offerAction(card, o, "shown") }, "Shown"),
      el("button", { type: "button", class: "secondary declined", onclick: () => offerAction(card, o, "declined") }, "Declined")),
    el("span", { class: "result" }));
  return card;
}

async function offerAction(card, o, action) {
  const m = state.member;
  for (const b of card.querySelectorAll("button")) b.disabled = true;
  try {
    const out = await Api.call("POST", `/api/v1/pos/members/${encodeURIComponent(m.id)}/offers/${encodeURIComponent(o.template_id)}/${action}`);
    card.dataset.state = action;
    if (action === "shown") {
      card.querySelector(".result").textContent = `Coupon ${out.code}: ${describeCoupon(out)}, valid until ${new Date(out.expires_at * 1000).toLocaleDateString()}.`;
      m.coupons.push(out);
      renderMember(m);
    } else {
      card.querySelector(".result").textContent = "Noted: not offered again for a while.";
    }
  } catch (err) {
    const reason = err.body && err.body.detail && err.body.detail.reason;
    card.querySelector(".result").textContent = OFFER_WORDS[reason] || err.message;
    for (const b of card.querySelectorAll("button")) b.disabled = false;
  }
}

// -- basket and coupons --------------------------------------------------------------------
function addToBasket(sku) {
  sku = sku.trim();
  if (!sku) return;
  state.basket.set(sku, (state.basket.get(sku) || 0) + 1);
  renderBasket();
}

function renderBasket() {
  const rows = [...state.basket].map(([sku, qty]) => el("div", { class: "basket-line", "data-sku": sku },
    el("span", {}, sku),
    el("input", { type: "number", min: 1, value: qty, "aria-label": `Quantity of ${sku}`, onchange: (e) => {
      const n = Number(e.target.value);
      if (n > 0) state.basket.set(sku, n);
      else state.basket.delete(sku);
      renderBasket();
    } }),
    el("button", { type: "button", class: "link", onclick: () => { state.basket.delete(sku); renderBasket(); } }, "Remove")));
  $("#basket-lines").replaceChildren(...(rows.length ? rows : [el("p", { class: "muted" }, "Empty.")]));
}

function basketItems() {
  return [...state.basket].map(([sku, qty]) => ({ sku, qty }));
}

function couponMessage(err) {
  const detail = err.body && err.body.detail;
  if (detail && detail.reason && COUPON_WORDS[detail.reason]) return COUPON_WORDS[detail.reason];
  return err.message;
}

async function checkCoupon() {
  const code = $("#basket").coupon.value.trim();
  const out = $("#basket-result");
  if (!code) return (out.textContent = "Type or scan a coupon code first.");
  if (!state.basket.size) return (out.textContent = "Add items to the basket first.");
  try {
    const v = await Api.call("POST", "/api/v1/pos/coupons/validate", { code, member_id: state.member.id, items: basketItems() });
    out.textContent = v.valid ? `Coupon OK: ${money(v.discount)} off.` : COUPON_WORDS[v.reason] || `Coupon refused (${v.reason}).`;
    out.className = v.valid ? "ok" : "error";
  } catch (err) {
    out.textContent = err.status === 429 ? "Too many coupon attempts; wait a minute." : err.message;
    out.className = "error";
  }
}

async function completeSale(e) {
  e.preventDefault();
  const out = $("#basket-result");
  if (!state.basket.size) return (out.textContent = "Add items to the basket first.");
  const code = $("#basket").coupon.value.trim();
  // One ID per attempt: a retry after a lost answer cannot record the sale twice.
  const id = `pos-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  try {
    const sale = await Api.call("POST", "/api/v1/pos/sales", { id, member_id: state.member.id, items: basketItems(), coupon_codes: code ? [code] : [] });
    const parts = [`Sale ${sale.sale_id} recorded: ${money(sale.subtotal)}`];
    if (sale.discount) parts.push(`− ${money(sale.discount)} (${sale.redeemed.map((r) => r.code).join(", ")})`);
    parts.push(`= ${money(sale.total)}.`);
    if (sale.issued.length) parts.push(`New coupon for next time: ${sale.issued.map((c) => c.code).join(", ")}.`);
    out.textContent = parts.join(" ");
    out.className = "ok";
    out.dataset.sale = sale.sale_id;
    state.basket.clear();
    $("#basket").coupon.value = "";
    renderBasket();
    const fresh = await Api.call("GET", `/api/v1/pos/members/${encodeURIComponent(state.member.id)}`);
    state.member = fresh;
    renderMember(fresh);
  } catch (err) {
    out.textContent = err.status === 409 ? `Sale not recorded: ${couponMessage(err)}` : err.message;
    out.className = "error";
  }
}

// -- fulfillment tasks ---------------------------------------------------------------------
async function loadTasks() {
  try {
    const list = await Api.call("GET", "/api/v1/fulfillment/tasks");
    for (const [id, t] of state.tasks) if (isOpen(t)) state.tasks.delete(id);
    for (const t of list) state.tasks.set(t.id, t);
    renderTasks();
  } catch (err) {
    notice(`Orders could not load: ${err.message}`);
  }
}

function isOpen(t) {
  return Array.isArray(t.next_actions) && t.next_actions.length > 0;
}

function upsertTask(t) {
  if (t.store_id !== state.store) return;
  state.tasks.set(t.id, t);
  renderTasks();
}

function renderTasks() {
  const tasks = [...state.tasks.values()].sort((a, b) => (a.deadline ?? Infinity) - (b.deadline ?? Infinity));
  $("#tasks").replaceChildren(...tasks.map(taskCard));
  const open = tasks.filter(isOpen).length;
  $("#tasks-empty").hidden = tasks.length > 0;
  const count = $("#task-count");
  count.textContent = open;
  count.hidden = open === 0;
}

function deadlineText(t) {
  if (!t.deadline) return "";
  const left = t.deadline - Date.now() / 1000;
  const what = t.state === "brokered" ? "Accept" : "Collect";
  return left < 0 ? `${what} deadline passed ${minutes(-left)} ago` : `${what} by ${clock(t.deadline)} (${minutes(left)} left)`;
}

function taskCard(t) {
  const card = el("div", { class: "task card", "data-task": t.id, "data-state": t.state, "data-order": t.order_id },
    el("div", { class: "row" }, el("strong", {}, `${t.kind === "pickup" ? "Pickup" : "Ship"} · ${t.order_id}`), el("span", { class: "state" }, t.state.replaceAll("_", " "))),
    el("span", { class: `deadline${t.deadline && t.deadline < Date.now() / 1000 ? " late" : ""}` }, deadlineText(t)),
    el("ul", {}, t.items.map((i) => el("li", {}, `${i.quantity} × ${i.name || i.sku}${i.shelf_location ? ` — shelf ${i.shelf_location}` : ""}`))),
    t.tracking_number ? el("span", { class: "muted" }, `Shipped with ${t.carrier}, tracking ${t.tracking_number}`) : null,
    el("div", { class: "actions" }, (t.next_actions || []).map((a) => actionControl(t, a))),
    el("span", { class: "result error" }));
  return card;
}

function actionControl(t, action) {
  if (action === "reject") {
    const select = el("select", { "aria-label": "Reason" }, Object.entries(REJECT_REASONS).map(([v, label]) => el("option", { value: v }, label)));
    return el("span", { class: "row" }, select, el("button", { type: "button", class: "danger", "data-action": "reject", onclick: () => step(t, "reject", { reason: select.value }) }, "Reject"));
  }
  if (action === "ship") {
    const carrier = el("input", { placeholder: "Carrier", value: "Colissimo", "aria-label": "Carrier", size: 9 });
    const tracking = el("input", { placeholder: "Tracking number", "aria-label": "Tracking number", size: 14 });
    return el("span", { class: "row" }, carrier, tracking, el("button", { type: "button", "data-action": "ship", onclick: () => {
      if (!tracking.value.trim()) return showTaskError(t, "Enter the tracking number first.");
      step(t, "ship", { carrier: carrier.value.trim(), tracking_number: tracking.value.trim() });
    } }, "Ship"));
  }
  if (!(action in STEP_LABEL)) return null;
  return el("button", { type: "button", "data-action": action, onclick: () => step(t, action) }, STEP_LABEL[action]);
}

function showTaskError(t, message) {
  const box = $(`.task[data-task="${t.id}"] .result`);
  if (box) box.textContent = message;
}

async function step(t, action, extra = {}) {
  const path = action === "picked-up" ? "picked-up" : action;
  try {
    const out = await Api.call("POST", `/api/v1/fulfillment/tasks/${encodeURIComponent(t.id)}/${path}`, { version: t.version, request_id: `${t.id}-${action}-${t.version}`, ...extra });
    upsertTask(out.task);
  } catch (err) {
    if (err.status === 409) {
      await loadTasks();
      showTaskError(t, "Someone else already handled this order, or it changed. The list is up to date now.");
    } else if (err.status === 404) {
      state.tasks.delete(t.id);
      renderTasks();
      notice("That order is no longer assigned to this store.");
    } else {
      showTaskError(t, err.message);
    }
  }
}

// -- push: Server-Sent Events read with fetch() ---------------------------------------------
// EventSource cannot send the Authorization header the API needs, so the stream is read with
// fetch(); the reconnect logic EventSource would give is here: back-off, Last-Event-ID, and a
// visible state.
const Push = {
  controller: null,
  active: false,
  timer: null,
  lastId: null,
  retryMs: 1000,
  stopped: true,

  start() {
    this.stopped = false;
    this.connect();
  },
  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
    this.show(null);
  },
  // Give up the current connection (a dead network may not close it for minutes) and retry.
  drop(retryMs) {
    if (this.stopped) return;
    if (retryMs !== undefined) this.retryMs = retryMs;
    if (this.active) this.controller.abort(); // connect() then schedules the retry
    else if (this.timer) this.schedule();
  },
  schedule() {
    this.show("reconnecting");
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.connect();
    }, this.retryMs);
    this.retryMs = Math.min(Math.max(this.retryMs * 2, 1000), 15000);
  },
  show(mode) {
    const badge = $("#push");
    badge.hidden = !mode;
    badge.className = `push ${mode || ""}`;
    badge.textContent = mode === "live" ? "Live" : "Reconnecting…";
    document.body.dataset.push = mode || "off";
  },
  async connect() {
    if (this.stopped || this.active) return;
    this.active = true;
    this.controller = new AbortController();
    const headers = { Authorization: `Bearer ${Api.token()}`, Accept: "text/event-stream" };
    if (this.lastId) headers["Last-Event-ID"] = this.lastId;
    try {
      const response = await fetch("/api/v1/pos/stream", { headers, signal: this.controller.signal, cache: "no-store" });
      if (response.status === 401) return signedOut("This device was signed out (token revoked or expired).");
      if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
      this.show("live");
      notice("");
      this.retryMs = 1000;
      loadTasks(); // anything that happened while we were away
      await this.read(response.body.getReader());
    } catch (err) {
      // aborted, network down or server gone: all mean "try again shortly"
    } finally {
      this.active = false;
    }
    if (!this.stopped) this.schedule();
  },
  async read(reader) {
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        this.dispatch(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
      }
    }
  },
  dispatch(block) {
    let id = null, kind = "message", data = "";
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") id = value;
      else if (field === "event") kind = value;
      else if (field === "data") data += (data ? "\n" : "") + value;
      else if (field === "retry" && Number(value) > 0) this.retryMs = Number(value);
    }
    if (id) this.lastId = id;
    if (!data) return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch {
      return; // a damaged message must not stop the stream
    }
    onPush(kind, msg.payload || {});
  },
};

function onPush(kind, payload) {
  if (kind === "task" && payload.task) upsertTask(payload.task);
  else if (kind === "member_alert") showAlert(payload);
  else if (kind === "coupon_issued") onCouponIssued(payload);
}

function onCouponIssued(p) {
  const current = state.member && state.member.id === p.member_id;
  const who = current ? state.member.name || "this member" : `member ${p.member_id}`;
  // A push names the coupon by its last characters only; the full code comes with the card.
  notice(`New coupon ${p.code_hint || ""} for ${who}${p.name ? ` (${p.name})` : ""}.`, "info");
  if (current) {
    Api.call("GET", `/api/v1/pos/members/${encodeURIComponent(p.member_id)}`)
      .then((fresh) => {
        state.member = fresh;
        renderMember(fresh);
      })
      .catch(() => {});
  }
}

function showAlert(p) {
  const who = p.name || `member ${p.member_id}`;
  $("#alert-text").textContent = `High-intent member in store: ${who}${p.tier ? ` (${p.tier})` : ""} — ${p.message || ""}`;
  $("#alert").dataset.member = p.member_id || "";
  $("#alert").hidden = false;
}

// -- wiring --------------------------------------------------------------------------------
function selectTab(name) {
  for (const b of document.querySelectorAll("[role=tab]")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
  $("#tab-member").hidden = name !== "member";
  $("#tab-tasks").hidden = name !== "tasks";
}

function setup() {
  $("#signin").addEventListener("submit", (e) => {
    e.preventDefault();
    Api.setToken(e.target.token.value.trim());
    e.target.token.value = "";
    start();
  });
  $("#sign-out").addEventListener("click", () => signedOut());
  $("#lookup").addEventListener("submit", (e) => {
    e.preventDefault();
    lookup(e.target.q.value);
  });
  for (const b of document.querySelectorAll("[role=tab]")) b.addEventListener("click", () => selectTab(b.dataset.tab));
  $("#basket-add").addEventListener("click", () => {
    addToBasket($("#basket").sku.value);
    $("#basket").sku.value = "";
  });
  $("#coupon-check").addEventListener("click", checkCoupon);
  $("#basket").addEventListener("submit", completeSale);
  $("#alert-close").addEventListener("click", () => ($("#alert").hidden = true));
  $("#alert-open").addEventListener("click", () => {
    $("#alert").hidden = true;
    selectTab("member");
    lookup($("#alert").dataset.member);
  });
  window.addEventListener("offline", () => {
    notice("Network lost. Orders and sales cannot be saved until it is back.");
    Push.drop();
  });
  window.addEventListener("online", () => {
    notice("Network back.", "ok");
    Push.drop(0);
    loadTasks();
  });
  // Deadlines count down on screen (only the text: inputs being typed in stay as they are).
  setInterval(() => {
    for (const t of state.tasks.values()) {
      const span = $(`.task[data-task="${t.id}"] .deadline`);
      if (span) span.textContent = deadlineText(t);
    }
  }, 30000);
  start();
}

setup();
