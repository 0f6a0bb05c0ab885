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
    set("account", st.account || "–"); set("mode", st.mode);
    set("ready", st.ready_to_trade ? "yes" : "no", st.ready_to_trade ? "good" : "warn");
    set("paused-flag", st.paused ? "paused" : st.kill_switch ? "kill switch ON" : "running", st.paused || st.kill_switch ? "warn" : "good");
    const spyStale = !st.spy.time || now() - st.spy.time > STALE;
    set("spy", fmt(st.spy.price), spyStale ? "big stale" : "big");
    set("spy-bid", fmt(st.spy.bid)); set("spy-ask", fmt(st.spy.ask)); set("spy-age", age(st.spy.time));
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
  const html = items.slice(0, 30).map((a) => `<li class="${a.severity === "critical" || a.severity === "error" ? "bad" : a.severity === "warning" ? "warn" : ""}">${clock(a.time)} <b>${a.kind}</b>${a.count > 1 ? ` ×${a.count}` : ""}: ${a.message.replace(/</g, "&lt;")}</li>`).join("");
  if (ul.dataset.html !== html) { ul.innerHTML = html; ul.dataset.html = html; }
}

function drawChart(points) {
  const svg = $("chart");
  const key = JSON.stringify(points);
  if (svg.dataset.key === key) return;
  svg.dataset.key = key;
  if (!points.length) { svg.innerHTML = '<text x="10" y="90" fill="#8b98a5">no closed trades yet</text>'; return; }
  const ys = points.map((p) => p.cumulative);
  const lo = Math.min(0, ...ys), hi = Math.max(0, ...ys), span = hi - lo || 1;
  const x = (i) => (points.length === 1 ? 300 : 10 + (i * 580) / (points.length - 1));
  const y = (v) => 170 - ((v - lo) * 160) / span;
  const path = points.map((p, i) => `${i ? "L" : "M"}${x(i)},${y(p.cumulative)}`).join(" ");
  svg.innerHTML = `<line x1="0" x2="600" y1="${y(0)}" y2="${y(0)}" stroke="#363b42"/>` +
    `<path d="${path}" fill="none" stroke="${ys[ys.length - 1] >= 0 ? "#3fb950" : "#f85149"}" stroke-width="2"/>` +
    points.map((p, i) => `<circle cx="${x(i)}" cy="${y(p.cumulative)}" r="3" fill="#58a6ff"><title>${p.date}: ${p.realized} (total ${p.cumulative})</title></circle>`).join("");
}

async function act(op, button) {
  const state = $("action-state");
  state.innerHTML = `<span class="spinner"></span> ${op}…`;
  button.disabled = true;
  try {
    const r = await fetch(`/api/${op}`, { method: "POST", headers: { "X-CSRF-Token": csrf() } });
    const body = await r.json();
    if (!body.ok) throw body.error;
    if (op === "restart_gateway") await waitForLogin(state);
    else state.textContent = `${op}: ${JSON.stringify(body.data)}`;
  } catch (err) {
    state.innerHTML = `<span class="bad">${op} failed: ${(err && err.message) || err}</span>`;
  } finally { button.disabled = false; refresh(); }
}

// The 2FA login button: after the restart, poll until the gateway is linked again.
async function waitForLogin(state) {
  const deadline = now() + 300;
  while (now() < deadline) {
    state.innerHTML = '<span class="spinner"></span> gateway restarting: approve the login (2FA) if asked…';
    try { const st = await api("status"); if (st.link.state === "READY") { state.innerHTML = '<span class="good">gateway logged in, link READY</span>'; return; } } catch (e) { /* engine busy */ }
    await new Promise((r) => setTimeout(r, 2000));
  }
  state.innerHTML = '<span class="bad">gateway not logged in after 5 minutes: check the gateway and its 2FA</span>';
}

document.querySelectorAll("button[data-action]").forEach((b) => { b.onclick = () => act(b.dataset.action, b); });
$("login-form").onsubmit = async (e) => {
  e.preventDefault();
  const r = await fetch("/login", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ password: e.target.password.value }) });
  const body = await r.json();
  if (body.ok) { document.querySelector('meta[name="csrf-token"]').content = body.csrf; $("login-form").classList.add("hidden"); $("logout").classList.remove("hidden"); set("who", "operator"); }
  else $("action-state").innerHTML = `<span class="bad">${body.error.message}</span>`;
};
$("logout").onclick = async () => { await fetch("/logout", { method: "POST" }); location.reload(); };
refresh();
setInterval(refresh, REFRESH);
