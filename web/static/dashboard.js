// trading-bot dashboard: polls the JSON API and updates text in place (no re-render, no flicker).
"use strict";
const REFRESH = parseFloat(document.body.dataset.refresh) * 1000;
const STALE = parseFloat(document.body.dataset.stale);
const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
const $ = (id) => document.getElementById(id);
const now = () => Date.now() / 1000;
const fmt = (v, d = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));
const age = (t) => (t ? `${Math.max(0, now() - t).toFixed(0)}s ago` : "–");
const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString() : "–");
function set(id, text, cls) { const el = $(id); if (el.textContent !== String(text)) el.textContent = text; if (cls !== undefined) el.className = cls; }
// Engine-supplied text only ever goes in as text nodes (never innerHTML): an alert
// message or an error naming a contract cannot inject markup.
function el(tag, attrs, ...children) {
  const ns = ["svg", "line", "path", "circle", "text", "title"].includes(tag) ? "http://www.w3.org/2000/svg" : null;
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
  const r = await fetch(`/api/${op}`, { headers: { Accept: "application/json" } });
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
    values.forEach(([text, cls], i) => { const td = tr.children[i]; if (td.textContent !== String(text)) td.textContent = text; td.className = cls || ""; });
    tr.className = rowClass ? rowClass(item) : "";
  }
  for (const tr of [...tbody.children]) if (!seen.has(tr.dataset.id)) tr.remove();
}

function leg(l) { return [`${fmt(l.price)} ${l.status}`, l.status === "submitted" ? "good" : "bad"]; }

async function refresh() {
  try {
    const [st, pos, orders, trades, hist, alerts] = await Promise.all(
      ["status", "positions", "orders", "trades", "pnl_history", "alerts"].map(api));
    $("banner").classList.add("hidden");
    const link = st.link;
    set("link-state", link.state, `big state-${link.state}`);
    set("link-since", clock(link.since));
    set("link-age", age(link.updated_at), now() - st.engine.now > STALE ? "stale" : "");
    set("link-reason", link.note ? `${link.note} (${link.reason})` : (link.reason || ""));
    set("link-heard", age(link.last_message_at));
    set("link-quote", age(link.last_quote_at));
    set("gw-linked", link.gateway_linked ? "yes" : "NO", link.gateway_linked ? "good" : "bad");
    set("gw-login", link.logged_in ? "yes" : "NO", link.logged_in ? "good" : "bad");
    set("account", st.account || "–", st.account_reason ? "bad" : ""); set("mode", st.mode);
    set("account-reason", st.account_reason ? `no orders: ${st.account_reason}` : "");
    set("ready", st.ready_to_trade ? "yes" : "no", st.ready_to_trade ? "good" : "warn");
    set("paused-flag", st.paused ? "paused" : st.kill_switch ? "kill switch ON" : "running", st.paused || st.kill_switch ? "warn" : "good");
    const spyStale = !st.spy.time || now() - st.spy.time > STALE;
    set("spy", fmt(st.spy.price), spyStale ? "big stale" : "big");
    set("spy-bid", fmt(st.spy.bid)); set("spy-ask", fmt(st.spy.ask)); set("spy-age", age(st.spy.time));
    const warnings = (st.warnings || []).join("; ");
    set("warnings", warnings); $("warnings").classList.toggle("hidden", !warnings);
    set("entry-slots", st.entry.slots.map((s) => `${s.slot} ${s.state}`).join(", ") || "–");
    set("open-lots", st.open_lots); set("unprotected", st.unprotected_lots, st.unprotected_lots ? "bad" : "");
    syncRows($("lots").tBodies[0], pos.lots, "id", (l) => [
      [l.id], [l.local_symbol + (l.imported ? " (imported)" : "")], [l.qty], [fmt(l.entry_price)],
      [fmt(l.mid), l.mid_time && now() - l.mid_time > STALE ? "stale" : ""],
      [fmt(l.pnl), signed(l.pnl)], [fmt(l.pnl_pct, 1), signed(l.pnl_pct)], [fmt(l.age_days, 1)],
      leg(l.tp), leg(l.sl)], (l) => (l.protected ? "" : "unprotected"));
    set("tot-pnl", fmt(pos.totals.pnl), signed(pos.totals.pnl));
    set("tot-pct", fmt(pos.totals.pnl_pct, 1), signed(pos.totals.pnl_pct));
    set("tot-prem", `premium ${fmt(pos.totals.premium)}`);
    syncRows($("orders").tBodies[0], orders.orders, "order_ref", (o) => [
      [o.order_id ?? "–"], [o.role], [o.local_symbol || "–"], [o.action], [o.order_type], [o.qty],
      [fmt(o.lmt_price)], [fmt(o.aux_price)], [o.status], [o.order_ref]]);
    syncRows($("trades").tBodies[0], trades.trades, "lot_id", (t) => [
      [t.lot_id], [t.local_symbol], [t.qty], [fmt(t.entry_price)], [fmt(t.exit_price)],
      [t.close_reason], [fmt(t.realized_pnl), signed(t.realized_pnl)], [clock(t.exit_time)]]);
    drawChart(hist.points);
    syncList(alerts.alerts);
  } catch (err) {
    if (err && err.code === "engine_unreachable") $("banner").classList.remove("hidden");
    document.querySelectorAll(".big").forEach((el) => el.classList.add("stale"));
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

function drawChart(points) {
  const svg = $("chart");
  const key = JSON.stringify(points);
  if (svg.dataset.key === key) return;
  svg.dataset.key = key;
  if (!points.length) { svg.replaceChildren(el("text", { x: 10, y: 90, fill: "#8b98a5" }, "no closed trades yet")); return; }
  const ys = points.map((p) => p.cumulative);
  const lo = Math.min(0, ...ys), hi = Math.max(0, ...ys), span = hi - lo || 1;
  const x = (i) => (points.length === 1 ? 300 : 10 + (i * 580) / (points.length - 1));
  const y = (v) => 170 - ((v - lo) * 160) / span;
  const path = points.map((p, i) => `${i ? "L" : "M"}${x(i)},${y(p.cumulative)}`).join(" ");
  svg.replaceChildren(
    el("line", { x1: 0, x2: 600, y1: y(0), y2: y(0), stroke: "#363b42" }),
    el("path", { d: path, fill: "none", stroke: ys[ys.length - 1] >= 0 ? "#3fb950" : "#f85149", "stroke-width": 2 }),
    ...points.map((p, i) => el("circle", { cx: x(i), cy: y(p.cumulative), r: 3, fill: "#58a6ff" },
      el("title", {}, `${p.date}: ${p.realized} (total ${p.cumulative})`))));
}

async function act(op, button) {
  const state = $("action-state");
  show(state, "", `${op}…`, true);
  button.disabled = true;
  try {
    const r = await fetch(`/api/${op}`, { method: "POST", headers: { "X-CSRF-Token": csrf() } });
    const body = await r.json();
    if (!body.ok) throw body.error;
    if (op === "restart_gateway") await waitForLogin(state);
    else state.textContent = `${op}: ${JSON.stringify(body.data)}`;
  } catch (err) {
    show(state, "bad", `${op} failed: ${(err && err.message) || err}`);
  } finally { button.disabled = false; refresh(); }
}

// The 2FA login button: after the restart, poll until the gateway is linked again.
async function waitForLogin(state) {
  const deadline = now() + 300;
  while (now() < deadline) {
    show(state, "", "gateway restarting: approve the login (2FA) if asked…", true);
    try { const st = await api("status"); if (st.link.state === "READY") { show(state, "good", "gateway logged in, link READY"); return; } } catch (e) { /* engine busy */ }
    await new Promise((r) => setTimeout(r, 2000));
  }
  show(state, "bad", "gateway not logged in after 5 minutes: check the gateway and its 2FA");
}

document.querySelectorAll("button[data-action]").forEach((b) => { b.onclick = () => act(b.dataset.action, b); });
$("login-form").onsubmit = async (e) => {
  e.preventDefault();
  const r = await fetch("/login", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ password: e.target.password.value }) });
  const body = await r.json();
  if (body.ok) { document.querySelector('meta[name="csrf-token"]').content = body.csrf; $("login-form").classList.add("hidden"); $("logout").classList.remove("hidden"); set("who", "operator"); }
  else show($("action-state"), "bad", body.error.message);
};
$("logout").onclick = async () => { await fetch("/logout", { method: "POST" }); location.reload(); };
refresh();
setInterval(refresh, REFRESH);
