// trading-bot dashboard: polls the JSON API and updates text in place (no re-render, no flicker).
// Every time shown is exchange time (New York, labelled ET); freshness is an age in seconds.
"use strict";
const REFRESH = parseFloat(document.body.dataset.refresh) * 1000;
const STALE = parseFloat(document.body.dataset.stale);
const TZ = "America/New_York";
const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);
const now = () => Date.now() / 1000;
const fmt = (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
const age = (t) => (t ? `${Math.max(0, now() - t).toFixed(0)}s ago` : "–");
const ET_TIME = new Intl.DateTimeFormat("en-GB", { timeZone: TZ, hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
const ET_DAY = new Intl.DateTimeFormat("en-CA", { timeZone: TZ, year: "numeric", month: "2-digit", day: "2-digit" });
// One clock on the page (issue 30): every time shown is on the engine's clock. In the demo
// that clock is simulated: wall-clock stamps (link, quotes, alerts) are shifted by the
// engine's offset, and the header says "simulated".
let clockOffset = 0;
const clock = (t) => (t ? `${ET_TIME.format(new Date((t + clockOffset) * 1000))} ET` : "–");
const stamp = (t) => (t ? `${ET_DAY.format(new Date(t * 1000))} ${clock(t)}` : "–");
let loggedIn = document.body.dataset.loggedIn === "yes";
let lastAnswer = 0;
// Marked stale while the engine does not answer (the cards' "big" figures are too).
const STALE_MARKED = ["engine-clock", "link-since", "link-age", "link-heard", "link-quote", "spy-age", "open-pnl-why"];
function set(id, text, cls) { const el = $(id); if (el.textContent !== String(text)) el.textContent = text; if (cls !== undefined) el.className = cls; }
// Engine-supplied text only ever goes in as text nodes (never innerHTML): an alert
// message or an error naming a contract cannot inject markup.
function el(tag, attrs, ...children) {
  const ns = ["svg", "line", "path", "circle", "text", "title", "polyline"].includes(tag) ? "http://www.w3.org/2000/svg" : null;
  const node = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== "") node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}
function show(state, cls, text, spinner) {
  state.replaceChildren(...(spinner ? [el("span", { class: "spinner" }), " "] : []), cls ? el("span", { class: cls }, text) : text);
}
function signed(v) { return v === null || v === undefined ? "" : v >= 0 ? "good" : "bad"; }

async function api(op) {
  let r;
  try { r = await fetch(`/api/${op}`, { headers: { Accept: "application/json" } }); }
  catch (e) { throw { code: "web_unreachable", message: "dashboard server unreachable" }; }
  const body = await r.json().catch(() => ({ ok: false, error: { code: "bad_reply" } }));
  if (!body.ok) throw body.error || { code: "error" };
  return body.data;
}

// Rows keyed by id: cells change in place, rows come and go without redrawing the table.
function syncRows(tbody, items, key, cells, rowClass) {
  const seen = new Set();
  for (const item of items) {
    const id = String(item[key]); seen.add(id);
    let tr = tbody.querySelector(`tr[data-id="${CSS.escape(id)}"]`);
    const values = cells(item);
    if (!tr) { tr = document.createElement("tr"); tr.dataset.id = id; values.forEach(() => tr.appendChild(document.createElement("td"))); tbody.appendChild(tr); }
    values.forEach(([text, cls, title], i) => {
      const td = tr.children[i]; if (td.textContent !== String(text)) td.textContent = text;
      td.className = cls || ""; if (title) td.title = title; else td.removeAttribute("title");
    });
    tr.className = rowClass ? rowClass(item) : "";
  }
  for (const tr of [...tbody.children]) if (!seen.has(tr.dataset.id)) tr.remove();
}

function leg(l) { return [`${fmt(l.price)} ${l.status}`, l.status === "submitted" ? "good" : "bad"]; }
// A blank figure says why (hover, and the "?" mark): a blank is not zero.
function blank(v, d, why, cls) { return v === null || v === undefined ? ["– ?", "muted", why || "no figure"] : [fmt(v, d), cls]; }

async function refresh() {
  try {
    const [st, pos, orders, trades, hist, alerts] = await Promise.all(
      ["status", "positions", "orders", "trades", "pnl_history", "alerts"].map(api));
    lastAnswer = now();
    $("banner").classList.add("hidden");
    for (const id of STALE_MARKED) $(id).classList.remove("stale");
    document.body.classList.remove("unreachable");
    const link = st.link;
    // The engine's own clock (the schedule runs on it; simulated in the demo and the tests).
    const engClock = Date.parse(st.engine.clock) / 1000;
    clockOffset = st.engine.simulated && !Number.isNaN(engClock) ? engClock - st.engine.now : 0;
    set("clock-kind", st.engine.simulated ? "simulated clock: every time on this page is the engine's" : "", st.engine.simulated ? "warn" : "");
    set("engine-clock", Number.isNaN(engClock) ? "–" : clock(engClock - clockOffset), now() - st.engine.now > STALE ? "stale" : "");
    set("link-state", link.state, `big state-${link.state}`);
    set("link-since", clock(link.since));
    set("link-age", age(link.updated_at), now() - link.updated_at > STALE ? "stale" : "");
    set("link-reason", link.note ? `${link.note} (${link.reason})` : (link.reason || ""), link.read_only ? "sub bad" : "sub");
    // IB's last refusal, named, with its age (issue 30): code, meaning, fix.
    const rf = st.refusal;
    set("link-refusal", rf ? `IB ${rf.code} ${rf.cause.replaceAll("_", " ")}${rf.subject ? ` (${rf.subject})` : ""}, ${age(rf.time)}: ${rf.meaning}. Fix: ${rf.fix}` : "no IB refusal", rf ? (rf.severity === "error" ? "sub bad" : "sub warn") : "sub muted");
    const md = st.market_data || {}, pc = st.pacing || {};
    set("link-mdtype", md.type === 1 ? "live" : `${md.name} (type ${md.type}) — not for live sales`, md.type === 1 ? "" : "warn");
    set("link-rate", pc.peak_rate === undefined ? "–" : `${pc.peak_rate}/s peak (IB allows ${pc.limit}/s, throttle ${pc.throttle}/s)`);
    set("link-heard", age(link.last_message_at), link.last_message_age > STALE ? "stale" : "");
    set("link-quote", age(link.last_quote_at), link.last_quote_age > STALE ? "stale" : "");
    set("gw-linked", link.gateway_linked ? "yes" : "NO", link.gateway_linked ? "good" : "bad");
    set("gw-login", link.logged_in ? "yes" : "NO", link.logged_in ? "good" : "bad");
    set("account", st.account || "–", st.account_reason ? "bad" : ""); set("mode", st.mode);
    set("account-reason", st.account_reason ? `no orders: ${st.account_reason}` : "");
    set("ready", st.ready_to_trade ? "yes" : "no", st.ready_to_trade ? "good" : "warn");
    set("paused-flag", st.paused ? "paused" : st.kill_switch ? "kill switch ON" : "running", st.paused || st.kill_switch ? "warn" : "good");
    const spyStale = !st.spy.time || now() - st.spy.time > STALE;
    set("spy", fmt(st.spy.price), spyStale ? "big stale" : "big");
    set("spy-bid", fmt(st.spy.bid)); set("spy-ask", fmt(st.spy.ask));
    set("spy-age", st.spy.time ? `${clock(st.spy.time)}, ${age(st.spy.time)}` : "no quote yet", spyStale ? "stale" : "");
    const warnings = (st.warnings || []).join("; ");
    set("warnings", warnings); $("warnings").classList.toggle("hidden", !warnings);
    set("trade-date", st.entry.trade_date);
    set("entry-slots", st.entry.slots.map((s) => `${s.slot} ET ${s.state}${s.reason ? ` (${s.reason})` : ""}`).join(", ") || "–");
    set("open-lots", st.open_lots); set("unprotected", st.unprotected_lots, st.unprotected_lots ? "bad" : "");
    syncRows($("lots").tBodies[0], pos.lots, "id", (l) => [
      [l.id], [l.local_symbol + (l.imported ? " (imported)" : "")], [l.qty],
      blank(l.dte, 0, "no expiry"), blank(l.delta, 3, l.mid_reason || "no greeks yet"),
      blank(l.otm_dollars, 2, "no underlying price"), blank(l.otm_pct, 1, "no underlying price"),
      [fmt(l.entry_price)],
      l.mid === null ? blank(null, 2, l.mid_reason) : [fmt(l.mid), l.mid_age > STALE ? "stale" : "", `quote at ${clock(l.mid_time)}`],
      [l.mid_age === null ? "–" : `${fmt(l.mid_age, 0)}s`, l.mid_age > STALE ? "stale" : ""],
      blank(l.pnl, 2, l.mid_reason, signed(l.pnl)), blank(l.max_profit_pct, 1, l.mid_reason, signed(l.max_profit_pct)),
      blank(l.to_tp, 2, l.mid_reason), blank(l.to_sl, 2, l.mid_reason), blank(l.premium_at_risk, 2, l.mid_reason),
      [fmt(l.age_days, 1)], leg(l.tp), leg(l.sl)], (l) => (l.protected ? "" : "unprotected"));
    const t = pos.totals;
    set("tot-pnl", t.pnl === null ? "–" : fmt(t.pnl), t.pnl === null ? "muted" : signed(t.pnl));
    set("tot-pct", fmt(t.pnl_pct, 1), signed(t.pnl_pct));
    set("tot-risk", fmt(t.premium_at_risk));
    set("tot-prem", `premium ${fmt(t.premium)}`);
    set("tot-why", t.pnl_reason ? `Total blank: ${t.pnl_reason}` : "");
    set("open-pnl", pos.lots.length ? (t.pnl === null ? "–" : fmt(t.pnl)) : "no open lot", t.pnl === null ? "big muted" : `big ${signed(t.pnl)}`);
    set("open-pnl-why", t.pnl_reason || "");
    const pts = hist.points;
    const today = pts.find((p) => p.date === st.entry.trade_date);
    set("realized-today", fmt(today ? today.realized : 0));
    set("realized-total", pts.length ? fmt(pts[pts.length - 1].cumulative) : "0.00");
    syncRows($("days").tBodies[0], pts.slice().reverse(), "date", (p) => [
      [p.date], [fmt(p.realized), signed(p.realized)], [fmt(p.cumulative), signed(p.cumulative)],
      blank(p.unrealized, 2, "no end-of-day snapshot"), blank(p.equity, 2, "no end-of-day snapshot", signed(p.equity))]);
    syncRows($("orders").tBodies[0], orders.orders, "order_ref", (o) => [
      [o.order_id ?? "–"], [o.role], [o.local_symbol || "–"], [o.action], [o.order_type], [o.qty],
      [fmt(o.lmt_price)], [fmt(o.aux_price)], [o.status], [o.order_ref]]);
    syncRows($("trades").tBodies[0], trades.trades, "lot_id", (tr) => [
      [tr.lot_id], [tr.local_symbol], [tr.qty], [fmt(tr.entry_price)], [fmt(tr.exit_price)],
      [tr.close_reason], [fmt(tr.realized_pnl), signed(tr.realized_pnl)], [stamp(tr.exit_time)]]);
    drawChart(pts);
    syncList(alerts.alerts);
  } catch (err) {
    const down = err && (err.code === "engine_unreachable" || err.code === "web_unreachable");
    if (down) {
      $("banner").classList.remove("hidden");
      set("banner-detail", `${err.code === "web_unreachable" ? "(dashboard server down)" : ""} · last answer ${lastAnswer ? age(lastAnswer) : "never"}; figures below are old`);
      document.body.classList.add("unreachable");
    }
    // Every figure and age on the page is now as old as the last answer: mark them all.
    document.querySelectorAll(".big").forEach((e) => e.classList.add("stale"));
    for (const id of STALE_MARKED) $(id).classList.add("stale");
    document.querySelectorAll("#lots tbody td").forEach((e) => e.classList.add("stale"));
  }
}

function syncList(items) {
  const ul = $("alerts");
  const shown = items.slice(0, 30);
  const key = JSON.stringify(shown.map((a) => [a.time, a.kind, a.count, a.message, a.severity]));
  if (ul.dataset.key === key) return;
  ul.dataset.key = key;
  ul.replaceChildren(...shown.map((a) => el("li",
    { class: a.severity === "critical" || a.severity === "error" ? "bad" : a.severity === "warning" ? "warn" : "" },
    `${clock(a.time)} `, el("b", {}, a.kind), `${a.count > 1 ? ` ×${a.count}` : ""}: ${a.message}`)));
}

// Equity = realized cumulative + the open P&L of that day's snapshot; realized drawn beside it.
function drawChart(points) {
  const svg = $("chart");
  const key = JSON.stringify(points);
  if (svg.dataset.key === key) return;
  svg.dataset.key = key;
  if (!points.length) { svg.replaceChildren(el("text", { x: 10, y: 90, fill: "#8b98a5" }, "no closed trade or daily snapshot yet")); return; }
  const eq = (p) => (p.equity === null || p.equity === undefined ? p.cumulative : p.equity);
  const ys = points.flatMap((p) => [p.cumulative, eq(p)]);
  const lo = Math.min(0, ...ys), hi = Math.max(0, ...ys), span = hi - lo || 1;
  const x = (i) => (points.length === 1 ? 300 : 10 + (i * 580) / (points.length - 1));
  const y = (v) => 170 - ((v - lo) * 160) / span;
  const line = (f) => points.map((p, i) => `${i ? "L" : "M"}${x(i)},${y(f(p))}`).join(" ");
  const last = eq(points[points.length - 1]);
  svg.replaceChildren(
    el("line", { x1: 0, x2: 600, y1: y(0), y2: y(0), stroke: "#363b42" }),
    el("path", { id: "realized-line", d: line((p) => p.cumulative), fill: "none", stroke: "#8b98a5", "stroke-dasharray": "4 3", "stroke-width": 1.5 }),
    el("path", { id: "equity-line", d: line(eq), fill: "none", stroke: last >= 0 ? "#3fb950" : "#f85149", "stroke-width": 2 }),
    ...points.map((p, i) => el("circle", { class: "equity-point", cx: x(i), cy: y(eq(p)), r: 3, fill: "#58a6ff" },
      el("title", {}, `${p.date}: realized ${p.realized}, cumulative ${p.cumulative}, open ${p.unrealized ?? "–"}, equity ${p.equity ?? "–"}`))));
}

// Actions: only for a logged-in operator; some ask first; every one shows its outcome.
function setLoggedIn(on) {
  loggedIn = on;
  document.body.dataset.loggedIn = on ? "yes" : "no";
  document.querySelectorAll("button[data-action]").forEach((b) => { b.disabled = !on; b.title = on ? (b.dataset.title || "") : "log in to use the actions"; });
  set("action-hint", on ? "" : "Log in to use the actions (view only).");
}
function confirmFirst(text) {
  return new Promise((resolve) => {
    set("confirm-text", text); $("confirm").classList.remove("hidden"); $("confirm-yes").focus();
    const done = (v) => { $("confirm").classList.add("hidden"); $("confirm-yes").onclick = $("confirm-no").onclick = null; resolve(v); };
    $("confirm-yes").onclick = () => done(true); $("confirm-no").onclick = () => done(false);
  });
}
function outcome(op, data) {
  if (data && typeof data === "object") {
    const why = data.reason || data.message || data.error || "";
    if (data.accepted === false || data.ok === false || data.started === false) return ["bad", `${op} refused${why ? `: ${why}` : ""}`];
    return ["good", `${op} accepted${why ? `: ${why}` : ""}`];
  }
  return ["good", `${op} accepted`];
}

async function act(op, button) {
  const state = $("action-state");
  if (button.dataset.confirm && !(await confirmFirst(button.dataset.confirm))) { show(state, "", `${op} cancelled`); return; }
  show(state, "", `${op}…`, true);
  button.disabled = true;
  try {
    const r = await fetch(`/api/${op}`, { method: "POST", headers: { "X-CSRF-Token": csrf() } });
    const body = await r.json().catch(() => ({ ok: false, error: { message: `HTTP ${r.status}` } }));
    if (!body.ok) throw body.error;
    if (op === "restart_gateway") await waitForLogin(state);
    else { const [cls, text] = outcome(op, body.data); show(state, cls, text); }
  } catch (err) {
    show(state, "bad", `${op} refused: ${(err && err.message) || err}`);
    if (err && err.code === "login_required") setLoggedIn(false);
  } finally { button.disabled = !loggedIn; refresh(); }
}

// The 2FA login button: after the restart, poll until the gateway is linked again.
async function waitForLogin(state) {
  const deadline = now() + 300;
  while (now() < deadline) {
    show(state, "", "gateway restarting: approve the login (2FA) if asked…", true);
    try { const st = await api("status"); if (st.link.state === "READY") { show(state, "good", "restart_gateway accepted: gateway logged in, link READY"); return; } } catch (e) { /* engine busy */ }
    await new Promise((r) => setTimeout(r, 2000));
  }
  show(state, "bad", "gateway not logged in after 5 minutes: check the gateway and its 2FA");
}

document.querySelectorAll("button[data-action]").forEach((b) => { b.dataset.title = b.title; b.onclick = () => act(b.dataset.action, b); });
setLoggedIn(loggedIn);
$("login-form").onsubmit = async (e) => {
  e.preventDefault();
  const r = await fetch("/login", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ password: e.target.password.value }) });
  const body = await r.json();
  if (body.ok) { document.querySelector('meta[name="csrf-token"]').content = body.csrf; $("login-form").classList.add("hidden"); $("logout").classList.remove("hidden"); set("who", "operator"); setLoggedIn(true); }
  else show($("action-state"), "bad", `login refused: ${body.error.message}`);
};
$("logout").onclick = async () => { await fetch("/logout", { method: "POST" }); location.reload(); };
refresh();
setInterval(refresh, REFRESH);
