// The dashboard: plain JavaScript over the query API and its Server-Sent Events.
"use strict";

const main = document.getElementById("main");
const liveBadge = document.getElementById("live");
let source = null;
let timer = null;

const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) =>
  ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const chip = (text, cls = text) => `<span class="chip ${esc(cls)}">${esc(String(text).replace("_", " "))}</span>`;

function when(at, precision) {
  if (!at) return "time unknown";
  const day = new Date(at.slice(0, 10) + "T00:00:00Z");
  const opts = { weekday: "short", day: "numeric", month: "short", year: "numeric", timeZone: "UTC" };
  if (precision === "month") return day.toLocaleDateString("en-GB", { month: "long", year: "numeric", timeZone: "UTC" });
  let text = day.toLocaleDateString("en-GB", opts);
  if (at.length > 10 && precision !== "day") text += " " + at.slice(11, 16) + " (UTC" + (at.slice(19).replace("Z", "") || "") + ")";
  return (precision === "approximate" ? "about " : "") + text;
}

function duration(iso) {
  const m = /^(-)?P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/.exec(iso || "");
  if (!m) return { back: false, text: iso || "" };
  const parts = [];
  if (m[2]) parts.push(m[2] + " d");
  if (m[3]) parts.push(m[3] + " h");
  if (m[4]) parts.push(m[4] + " min");
  return { back: !m[1], text: parts.join(" ") || "0 min" };
}

function connect(url, handlers) {
  if (source) source.close();
  liveBadge.dataset.state = "connecting";
  liveBadge.textContent = "connecting";
  source = new EventSource(url);
  source.onopen = () => { liveBadge.dataset.state = "open"; liveBadge.textContent = "live"; };
  source.onerror = () => {
    liveBadge.dataset.state = "error"; liveBadge.textContent = "reconnecting";
    if (source && source.readyState === EventSource.CLOSED) {  // refused, not dropped
      fetch("/v1/me").then((r) => { if (r.status === 401) location.replace("/signin.html?needed"); });
    }
  };
  for (const [name, fn] of Object.entries(handlers)) {
    source.addEventListener(name, (e) => fn(JSON.parse(e.data), e.lastEventId));
  }
}

// RFC 7396: a null removes a member; an object merges; anything else replaces.
function mergePatch(target, patch) {
  if (patch === null || typeof patch !== "object" || Array.isArray(patch)) return patch;
  const out = target && typeof target === "object" && !Array.isArray(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete out[key];
    else out[key] = mergePatch(out[key], value);
  }
  return out;
}

function stop() {
  if (source) { source.close(); source = null; }
  if (timer) { clearInterval(timer); timer = null; }
}

// Re-render a region; mark the parts whose content changed since the last render.
function patch(region, html, seen) {
  if (!region) return;  // an answer that came after the page was left: nothing to show it in
  const first = !seen.has("");  // nothing is "new" on a page's first render
  seen.set("", "");
  region.innerHTML = html;
  for (const el of region.querySelectorAll("[data-key]")) {
    const key = el.dataset.key;
    const now = el.innerHTML;
    if (!first && seen.get(key) !== now) el.classList.add("changed");
    seen.set(key, now);
  }
}

// ---- the story list -------------------------------------------------------------------

const LIST_SIZE = 200; // a newsroom's log holds thousands of stories; the list shows the live ones

// A rewrite of an empty server leaves a hundred bytes: growth from there says nothing
// (store/disk.py's GROWTH_FROM, the same bound for `dateline status`).
const GROWTH_FROM = 1 << 20;

const OVERDUE_CHECK_MS = 30000; // overdue follows the clock, not updates: ask again now and then

function storyRows(rows) {
  return rows.map((e) => `<tr data-key="story:${esc(e.id)}" data-story="${esc(e.id)}"${e.overdue ? ' data-overdue="true"' : ""}>
      <td><a href="#/stories/${encodeURIComponent(e.id)}">${esc(e.title || e.id)}</a><div class="meta">${esc(e.id)}</div></td>
      <td>${chip(e.status)}${e.parked_at ? " " + chip("held back", "held") : ""}${e.overdue ? " " + chip("overdue") : ""}</td><td>${e.outcome ? chip(e.outcome, e.outcome === "no_agreement" ? "unmet" : "met") : "—"}</td>
      <td>${e.version}</td><td class="meta">${esc((e.recordedtime || "").replace("T", " ").slice(0, 19))}</td></tr>`).join("");
}

function listHead(overdueOnly) {
  return `<h1>Stories</h1>
    <p class="filters"><a href="#/" class="${overdueOnly ? "" : "on"}">All</a><a id="overdue-filter" href="#/overdue" class="${overdueOnly ? "on" : ""}">With overdue items</a></p>
    <p class="meta">${overdueOnly ? "Stories with an item whose start has passed and of which nothing was reported. Refreshed every 5 s." : `The ${LIST_SIZE} stories updated last, newest first. Live.`}</p>
    <table><thead><tr><th>Story</th><th>Status</th><th>Outcome</th><th>Updates</th><th>Last update</th></tr></thead>
    <tbody id="stories"><tr><td colspan="5" class="empty">waiting for stories…</td></tr></tbody></table>
    ${overdueOnly ? "" : `<p class="pager" id="pager" hidden><a id="older" href="#/older">Older stories ›</a></p>`}`;
}

// The stories past the live list, a page at a time: each page the `next` of the one
// before (`?after=`). Not live: a story updated meanwhile moves to the live list.
function olderPage(after) {
  main.innerHTML = `<h1>Older stories</h1>
    <p class="filters"><a href="#/">‹ The ${LIST_SIZE} updated last</a></p>
    <p class="meta">${LIST_SIZE} a page, newest first. Not live: a story updated meanwhile moves to the top of the list.</p>
    <table><thead><tr><th>Story</th><th>Status</th><th>Outcome</th><th>Updates</th><th>Last update</th></tr></thead>
    <tbody id="stories"><tr><td colspan="5" class="empty">loading…</td></tr></tbody></table>
    <p class="pager" id="pager"></p>`;
  liveBadge.dataset.state = "open"; liveBadge.textContent = "not live";
  const load = async () => {
    let from = after;
    if (!from) {  // the page after the live list's
      const first = await fetch(`/v1/stories?limit=${LIST_SIZE}`);
      if (!first.ok) return;
      from = (await first.json()).next;
    }
    let page = { items: [], next: null };
    if (from) {
      const r = await fetch(`/v1/stories?limit=${LIST_SIZE}&after=${encodeURIComponent(from)}`);
      if (!r.ok) return;
      page = await r.json();
    }
    patch(document.getElementById("stories"), storyRows(page.items) || `<tr><td colspan="5" class="empty">no older stories</td></tr>`, new Map());
    const pager = document.getElementById("pager");
    if (pager && page.next) pager.innerHTML = `<a id="older" href="#/older/${encodeURIComponent(page.next)}">Older stories ›</a>`;
  };
  load();
}

function indexPage() {
  main.innerHTML = listHead(false);
  const entries = new Map();
  const seen = new Map();
  const render = () => {
    const rows = [...entries.values()]
      .sort((a, b) => (b.recordedtime || "").localeCompare(a.recordedtime || ""))
      .slice(0, LIST_SIZE);
    patch(document.getElementById("stories"), storyRows(rows) || `<tr><td colspan="5" class="empty">no stories yet</td></tr>`, seen);
    const pager = document.getElementById("pager");
    if (pager) pager.hidden = entries.size < LIST_SIZE;  // a full list: there may be more
  };
  // An update's entry says nothing of parking or of the clock: `held` events and the
  // overdue check do; what is known of them is kept.
  const merge = (story, entry, parked_at) => {
    const known = entries.get(story);
    entries.set(story, { ...entry, parked_at, overdue: known ? known.overdue : false });
  };
  connect(`/v1/live?limit=${LIST_SIZE}`, {
    index: (list) => { entries.clear(); for (const e of list) entries.set(e.id, e); render(); },
    update: (u) => {
      const known = entries.get(u.story);
      if (u.entry) merge(u.story, u.entry, known ? known.parked_at : null);
      render();
    },
    held: (h) => { if (h.entry) { merge(h.story, h.entry, h.parked_at); render(); } },
  });
  const checkOverdue = async () => {
    const r = await fetch(`/v1/stories?overdue=true&limit=${LIST_SIZE}`);
    if (!r.ok) return;
    const late = new Set((await r.json()).items.map((e) => e.id));
    for (const [id, e] of entries) entries.set(id, { ...e, overdue: late.has(id) });
    render();
  };
  timer = setInterval(checkOverdue, OVERDUE_CHECK_MS);
}

function overduePage() {
  main.innerHTML = listHead(true);
  const seen = new Map();
  liveBadge.dataset.state = "open"; liveBadge.textContent = "polling";
  const load = async () => {
    const r = await fetch(`/v1/stories?overdue=true&limit=${LIST_SIZE}`);
    if (!r.ok) return;
    const rows = (await r.json()).items;
    patch(document.getElementById("stories"), storyRows(rows) || `<tr><td colspan="5" class="empty">nothing overdue</td></tr>`, seen);
  };
  load();
  timer = setInterval(load, 5000);
}

// ---- the schedule board ---------------------------------------------------------------

const BOARD_SIZE = 500; // entries a page of the board: what a poll fetches, not the whole board

// A page of the board, refreshed every 5 s: the first from the earliest start, and each
// later one after the `next` of the page before it (`?after=`).
function boardPage(after) {
  main.innerHTML = `<h1>Schedule</h1>${after ? `<p class="filters"><a href="#/schedule">‹ From the earliest</a></p>` : ""}<p class="meta">Every story's items by start; those with no known start last. ${BOARD_SIZE} a page. Refreshed every 5 s.</p>
    <table><thead><tr><th>Starts</th><th>Item</th><th>Story</th><th>Status</th></tr></thead><tbody id="board"><tr><td colspan="4" class="empty">loading…</td></tr></tbody></table>
    <p class="pager" id="pager"></p>`;
  const seen = new Map();
  liveBadge.dataset.state = "open"; liveBadge.textContent = "polling";
  const load = async () => {
    const r = await fetch(`/v1/schedule?limit=${BOARD_SIZE}${after ? `&after=${encodeURIComponent(after)}` : ""}`);
    if (!r.ok) return;
    const page = await r.json();
    const rows = page.items.map(({ story, item: it }) => `<tr data-key="board:${esc(story)}/${esc(it.item)}" data-board="${esc(story)}/${esc(it.item)}"${it.overdue ? ' data-overdue="true"' : ""}>
      <td>${esc(it.starts_at ? when(it.starts_at.at, it.starts_at.precision) : "not announced")}</td>
      <td>${esc(it.title)}${it.location ? `<div class="meta">${esc(it.location)}</div>` : ""}</td>
      <td><a href="#/stories/${encodeURIComponent(story)}">${esc(story)}</a></td>
      <td>${chip(it.status)}${it.overdue ? " " + chip("overdue") : ""}</td></tr>`).join("");
    patch(document.getElementById("board"), rows || `<tr><td colspan="4" class="empty">${after ? "nothing later" : "nothing scheduled"}</td></tr>`, seen);
    const pager = document.getElementById("pager");
    if (pager) pager.innerHTML = page.next ? `<a id="later" href="#/schedule/${encodeURIComponent(page.next)}">Later items ›</a>` : "";
  };
  load();
  timer = setInterval(load, 5000);
}

// ---- what one person said --------------------------------------------------------------

const SAID_SIZE = 100; // statements a page of a speaker's

// What one person said across stories, oldest first, a page at a time (`?after=`), each
// page refreshed every 5 s as the board's is.
function speakerPage(name, after) {
  const home = `#/speakers/${encodeURIComponent(name)}`;
  main.innerHTML = `<h1>What ${esc(name)} said</h1>${after ? `<p class="filters"><a href="${home}">‹ From the first</a></p>` : ""}<p class="meta">Across every story, in time order. ${SAID_SIZE} a page. Refreshed every 5 s.</p>
    <div id="said"><p class="empty">loading…</p></div><p class="pager" id="pager"></p>`;
  const seen = new Map();
  liveBadge.dataset.state = "open"; liveBadge.textContent = "polling";
  const load = async () => {
    const r = await fetch(`/v1/speakers/${encodeURIComponent(name)}/statements?limit=${SAID_SIZE}${after ? `&after=${encodeURIComponent(after)}` : ""}`);
    if (!r.ok) return;
    const page = await r.json();
    const cards = page.items.map(({ story, statement: st }) => `<div class="card statement" data-key="said:${esc(story)}/${esc(st.statement)}" data-said="${esc(story)}/${esc(st.statement)}">
      <p class="quote">${esc(st.text)}</p>
      <div class="who">${esc(when(st.time, st.precision))} · <a href="#/stories/${encodeURIComponent(story)}">${esc(story)}</a></div></div>`).join("");
    patch(document.getElementById("said"), cards || `<p class="empty">${after ? "nothing later" : "no statements"}</p>`, seen);
    const pager = document.getElementById("pager");
    if (pager) pager.innerHTML = page.next ? `<a id="later" href="${home}/${encodeURIComponent(page.next)}">Later statements ›</a>` : "";
  };
  load();
  timer = setInterval(load, 5000);
}

// ---- one story ------------------------------------------------------------------------

function itemCard(it) {
  const lines = [];
  for (const s of it.shifts || []) {
    if (s.shift) {
      const d = duration(s.shift);
      lines.push(`${d.back ? "pushed back" : "moved up"} ${esc(d.text)}`);
    } else if (s.to) {
      lines.push(`moved to ${esc(when(s.to.at, s.to.precision))}`);
    }
    if (s.reason) lines.push(`<em>${esc(s.reason)}</em>`);
  }
  // A shift finer than a start known to the day keeps its date: no "was" the same as now.
  const now = it.starts_at ? when(it.starts_at.at, it.starts_at.precision) : "";
  for (const p of it.previous_starts || []) {
    const was = when(p.at, p.precision);
    if (was !== now) lines.push(`was <span class="was">${esc(was)}</span>`);
  }
  for (const loc of it.previous_locations || []) lines.push(`was at <span class="was">${esc(loc)}</span>`);
  if (it.status === "cancelled") lines.push(`cancelled${it.reason ? ": " + esc(it.reason) : ""}`);
  else if (it.status === "postponed" && it.reason) lines.push(`postponed: ${esc(it.reason)}`);
  if (it.started_at) lines.push(`started ${esc(when(it.started_at, it.started_precision || "exact"))}`);
  if (it.ended_at) lines.push(`ended ${esc(when(it.ended_at, it.ended_precision || "exact"))}${it.early ? " (early)" : ""}`);
  const start = it.starts_at ? when(it.starts_at.at, it.starts_at.precision) : "start not announced";
  if (it.overdue) lines.push(`overdue: the start has passed and nothing was reported`);
  return `<div class="card item ${esc(it.status)}${it.overdue ? " overdue" : ""}" data-key="item:${esc(it.item)}" data-item="${esc(it.item)}" data-status="${esc(it.status)}"${it.overdue ? ' data-overdue="true"' : ""}>
    <h3>${esc(it.title)} ${chip(it.status)}${it.overdue ? " " + chip("overdue") : ""}</h3>
    <div class="meta">${esc(start)}${it.location ? " · " + esc(it.location) : ""}</div>
    ${it.participants && it.participants.length ? `<div class="meta">${esc(it.participants.join(", "))}</div>` : ""}
    ${lines.length ? `<ul class="history">${lines.map((l) => `<li>${l}</li>`).join("")}</ul>` : ""}
  </div>`;
}

function statementCard(s, replies, depth) {
  const speaker = `<a class="speaker" href="#/speakers/${encodeURIComponent(s.speaker)}" title="What ${esc(s.speaker)} said, across stories">${esc(s.speaker)}</a>`;
  const who = [speaker, s.speaker_role ? esc(s.speaker_role) : "", esc(when(s.time, s.precision))].filter(Boolean).join(" · ");
  const notes = (s.correction_notes || []).map((n) => `<div class="note">Corrected: ${esc(n)}</div>`).join("");
  const own = `<div class="card statement${depth ? " reply" : ""}" data-key="statement:${esc(s.statement)}" data-statement="${esc(s.statement)}">
    ${s.in_reply_to ? `<div class="meta">in reply to ${esc(s.in_reply_to)}</div>` : ""}
    <p class="quote">${esc(s.text)}</p>
    <div class="who">${who} ${s.via_interpreter ? chip("via interpreter", "interp") : ""}</div>
    ${s.context ? `<div class="meta"><em>${esc(s.context)}</em></div>` : ""}${notes}</div>`;
  return own + (replies.get(s.statement) || []).map((r) => statementCard(r, replies, depth + 1)).join("");
}

function statementsHtml(statements) {
  // By instant: 10:00+07:00 comes before 05:00Z, though not as text.
  const all = Object.values(statements).sort((a, b) => (Date.parse(a.time) - Date.parse(b.time)) || a.time.localeCompare(b.time));
  const replies = new Map();
  const roots = [];
  for (const s of all) {
    if (s.in_reply_to && statements[s.in_reply_to]) {
      if (!replies.has(s.in_reply_to)) replies.set(s.in_reply_to, []);
      replies.get(s.in_reply_to).push(s);
    } else roots.push(s);
  }
  return roots.map((s) => statementCard(s, replies, 0)).join("") || `<p class="empty">no statements yet</p>`;
}

function storyPage(id) {
  main.innerHTML = `<div id="head"><h1>${esc(id)}</h1><p class="meta">waiting for the first update of this story…</p></div>
    <div id="held"></div><div id="outcome"></div>
    <div class="grid"><div>
      <h2>Schedule</h2><div id="schedule" class="board"></div>
      <h2>Statements</h2><div id="statements"></div>
    </div><div>
      <h2>Just in</h2><ul id="recent" class="timeline"><li class="empty">nothing yet</li></ul>
      <h2>Expectations</h2><div id="expectations"></div>
      <h2>Linked stories</h2><div id="links"></div>
      <h2>Corrections</h2><div id="corrections"></div>
      <h2>Timeline</h2><ol id="timeline" class="timeline"></ol>
    </div></div>`;
  const seen = {};
  const region = (name, html) => patch(document.getElementById(name), html, seen[name] || (seen[name] = new Map()));
  const recent = [];
  const render = (st) => {
    region("head", `<h1 data-key="title">${esc(st.title || st.id)}</h1>
      <p class="meta" data-key="status">${chip(st.status)} ${esc(st.place || "")} · version ${st.version} · last update ${esc(when(st.last_time, "exact"))}</p>
      ${st.summary ? `<p data-key="summary">${esc(st.summary)}</p>` : ""}`);
    // A parked update leaves the page behind the story: an editor must not take it as current.
    region("held", st.parked_at ? `<div id="held-banner" class="banner held" data-key="held" data-position="${esc(st.parked_at)}">
      <strong>Updates held back</strong><div>The update at log position ${esc(st.parked_at)} could not be applied.
      This page shows the story without it and without the updates after it, until operations redrive it.</div></div>` : "");
    region("outcome", st.outcome ? `<div id="outcome-banner" class="banner ${esc(st.outcome.result)}" data-key="outcome" data-result="${esc(st.outcome.result)}">
      <strong>Outcome: ${esc(st.outcome.result.replace(/_/g, " "))}</strong><div>${esc(st.outcome.summary)}</div></div>` : "");
    // By start as an instant (a date alone: its UTC midnight, as the board orders them);
    // those with no known start last.
    const start = (it) => (it.starts_at ? Date.parse(it.starts_at.at) : Infinity);
    const items = Object.values(st.schedule).sort((a, b) =>
      (start(a) - start(b)) || a.item.localeCompare(b.item));
    region("schedule", items.map(itemCard).join("") || `<p class="empty">nothing scheduled yet</p>`);
    region("statements", statementsHtml(st.statements));
    region("expectations", Object.values(st.expectations).map((e) => `<div class="card" data-key="exp:${esc(e.expectation)}" data-expectation="${esc(e.expectation)}" data-status="${esc(e.status)}">
      ${chip(e.status)} ${esc(e.description)}${e.note ? `<div class="meta">${esc(e.note)}</div>` : ""}</div>`).join("") || `<p class="empty">none</p>`);
    region("links", st.links.map((l) => `<div class="card" data-key="link:${esc(l.story)}"><a href="#/stories/${encodeURIComponent(l.story)}">${esc(l.story)}</a> ${chip(l.rel)}${l.note ? `<div class="meta">${esc(l.note)}</div>` : ""}</div>`).join("") || `<p class="empty">none</p>`);
    // Who issued each correction (rule 5), and why one did not apply.
    const notApplied = (c) => c.applied ? "" : c.problem ? ` · not applied: ${esc(c.problem)}` : " · not applied yet";
    region("corrections", st.corrections.map((c) => `<div class="card" data-key="corr:${esc(c.id)}" data-correction="${esc(c.id)}">${chip(c.kind)} ${esc(c.note)}<div class="meta">${esc(when(c.time, "exact"))}${c.source ? ` · by ${esc(c.source)}` : ""}${notApplied(c)}</div></div>`).join("") || `<p class="empty">none</p>`);
    timeline(st.version);
  };
  // The timeline moves only with the story's version: fetched once a version, one
  // request at a time (a burst of patches asks once more, for the last version).
  let shown = -1, asking = false, wanted = -1;
  const timeline = (version) => {
    wanted = version;
    if (asking || wanted === shown) return;
    asking = true;
    const asked = wanted;
    fetch(`/v1/stories/${encodeURIComponent(id)}/timeline`).then((r) => r.ok ? r.json() : null).then((page) => {
      shown = asked; // a refusal too: asked again when the version moves, not at once
      if (page) {
        region("timeline", page.items.map((e) => `<li data-key="tl:${e.version}"><time>${esc(when(e.time, e.precision))}</time>${esc(e.summary)}</li>`).join(""));
      }
    }).finally(() => { asking = false; if (wanted !== shown) timeline(wanted); });
  };
  // Overdue follows the clock: read the state again now and then, beside the stream.
  let current = null; // the state as the live stream last left it
  // A read that crossed a newer patch on its way is older than the page: left unshown.
  timer = setInterval(async () => {
    const r = await fetch(`/v1/stories/${encodeURIComponent(id)}`);
    const st = r.ok ? await r.json() : null;
    if (st && (!current || st.version >= current.version)) render(st);
  }, OVERDUE_CHECK_MS);
  // The first state whole, then what changed (a JSON merge patch of the last one).
  connect(`/v1/stories/${encodeURIComponent(id)}/live?patches=true`, {
    state: (st) => { current = st; render(st); },
    patch: (p) => { if (current) { current = mergePatch(current, p); render(current); } },
    update: (u) => {
      recent.unshift(u);
      recent.length = Math.min(recent.length, 6);
      region("recent", recent.map((r) => `<li data-key="up:${r.version}"><time>v${r.version}</time>${esc(r.summary)}</li>`).join(""));
    },
  });
}

// ---- operations -----------------------------------------------------------------------

// Whether the projection is catching up: runtime/catchup.py's rule (`dateline status
// --watch`), over this page's polls. Keep the two alike.
const PACE_WINDOW_S = 10;
const CHART_S = 300; // the lag drawn: the last 5 minutes (the query's trail, then the polls)

function pace(samples) {
  if (!samples.length) return null;
  const last = samples[samples.length - 1];
  const first = samples.find((x) => last.at - x.at <= PACE_WINDOW_S) || last;
  const span = last.at - first.at;
  if (span < 1) return null;
  const appended = (last.appended - first.appended) / span;
  const projected = Math.max(0, (last.appended - first.appended - (last.lag - first.lag)) / span);
  const shrinking = (first.lag - last.lag) / span;
  const verdict = last.lag === 0 ? "up to date"
    : !(first.exact && last.exact) ? "uncounted"
    : projected === 0 ? "stalled"
    : Math.abs(shrinking) <= Math.max(appended, projected) / 20 ? "holding"
    : shrinking > 0 ? "catching up" : "falling behind";
  // Partitions behind at both ends of the span whose checkpoint stood still (UNMOVED_S).
  const unmoved = span >= 5 && verdict !== "up to date" && verdict !== "stalled"
    ? last.partitions.flatMap(([now, lag], i) => {
      const [was, waited] = first.partitions[i] || [];
      return waited > 0 && lag > 0 && was === now ? [i] : [];
    }) : [];
  const behind = last.partitions.flatMap(([, lag], i) => lag > 0 ? [i] : []);
  return { verdict, lag: last.lag, exact: last.exact, appended, projected, span, eta: verdict === "catching up" ? last.lag / shrinking : null, behind, partitions: last.partitions.length, unmoved };
}

const count = (n) => Math.round(n).toLocaleString("en");
const seconds = (n) => n < 90 ? `${Math.max(1, Math.round(n))} s` : n < 5400 ? `${Math.round(n / 60)} min` : `${(n / 3600).toFixed(1)} h`;

function paceHtml(samples, processes) {
  const p = pace(samples);
  const last = samples[samples.length - 1];
  const behind = `${last.exact ? "" : "at least "}${count(last.lag)} behind`;
  const rates = p ? `appended ${count(p.appended)}/s, projected ${count(p.projected)}/s` : "";
  const line = !p ? `${last.lag ? behind : "up to date"}; the pace from the next poll`
    : p.verdict === "up to date" ? `Up to date; ${rates}`
    : p.verdict === "catching up" ? `Catching up: ${behind}; ${rates}; about ${seconds(p.eta)} to go`
    : p.verdict === "holding" ? `Holding ${behind}: ${rates}`
    : p.verdict === "falling behind" ? `Falling behind: ${behind}; ${rates}`
    : p.verdict === "stalled" ? `Stalled: ${behind}${p.behind.length && p.behind.length < p.partitions ? ` (partition${p.behind.length > 1 ? "s" : ""} ${p.behind.join(", ")})` : ""} and nothing projected in ${Math.round(p.span)} s${processes ? "" : "; no projector process is running (dateline projector)"}`
    : `${behind}, more than the report counts (the server does not count a group's entries: Redis 6.2); appended ${count(p.appended)}/s`;
  const stuck = p && p.unmoved.length ? `; partition${p.unmoved.length > 1 ? "s" : ""} ${p.unmoved.join(", ")} behind and not moved in ${Math.round(p.span)} s` : "";
  const tone = !p || p.verdict === "up to date" ? "ok" : p.verdict === "catching up" ? "info" : "bad";
  // The lag over the last minutes: one point a poll and one a read of the query
  // process's trail, the newest on the right (a minute at least, five at most).
  const now = last.at, top = Math.max(1, ...samples.map((x) => x.lag));
  const across = Math.min(CHART_S, Math.max(60, now - samples[0].at));
  const xy = samples.map((x) => `${(600 * (1 - (now - x.at) / across)).toFixed(1)},${(78 - (74 * x.lag) / top).toFixed(1)}`);
  const from = xy.length ? xy[0].split(",")[0] : "600";
  return `<div class="card pace ${tone}"><p data-verdict="${esc(p ? p.verdict : "")}">${esc(line + stuck)}</p>
    <svg viewBox="0 0 600 80" preserveAspectRatio="none" role="img" aria-label="Updates behind, the last ${seconds(across)}">
      <polygon points="${from},78 ${xy.join(" ")} 600,78" /><polyline points="${xy.join(" ")}" /></svg>
    <div class="axis"><span>${seconds(across)} ago</span><span>most behind: ${count(top)}</span><span>now</span></div></div>`;
}

function opsPage() {
  main.innerHTML = `<h1>Operations</h1><p class="meta">Refreshed every 2 s.</p><div id="ops"></div>`;
  const seen = new Map();
  const samples = []; // {at, appended, lag, exact} a poll: the pace and the chart
  const load = async () => {
    const r = await fetch("/v1/status");
    if (!r.ok) { document.getElementById("ops").innerHTML = `<p class="empty">status unavailable (${r.status})</p>`; return; }
    const s = await r.json();
    liveBadge.dataset.state = "open"; liveBadge.textContent = "polling";
    const sum = (f) => s.partitions.reduce((n, p) => n + f(p), 0);
    samples.push({ at: Date.now() / 1000, appended: sum((p) => p.length), lag: sum((p) => p.lag), exact: s.partitions.every((p) => p.lag_exact !== false),
      partitions: s.partitions.map((p) => [p.checkpoint, p.lag]) });
    while (samples[samples.length - 1].at - samples[0].at > CHART_S) samples.shift();
    const rows = s.partitions.map((p) => `<tr data-key="p${p.partition}"><td>${p.partition}</td><td>${p.length}</td><td>${esc(p.checkpoint || "—")}</td>
      <td>${p.lag_exact === false ? "≥ " : ""}${p.lag}</td><td>${p.lag_seconds} s</td><td>${p.pending}</td><td>${esc(p.lease || "none")}</td>
      <td>${!p.sealed_after ? "not sealed" : p.sealed_after === "0-0" ? "from the start" : `after ${esc(p.sealed_after)}`}</td></tr>`).join("");
    const dl = s.dead_letters || {};
    const parked = dl.stories || [];
    const replay = s.replay;
    const pct = replay && +replay.total ? Math.min(100, (100 * +replay.done) / +replay.total) : 0;
    const dv = s.deliveries || { subscriptions: [] };
    const subs = dv.subscriptions.map((d) => {
      const state = d.paused ? chip("paused", "postponed") : dv.moving_to ? chip("held: moving", "postponed") : d.parked ? chip("parked", "cancelled") : d.retrying ? chip("retrying", "rescheduled") : chip("delivering", "scheduled");
      const filters = [...d.story_prefixes.map((p) => `${p}*`), ...d.types].join(", ") || "all";
      return `<tr data-key="sub:${esc(d.name)}" data-subscription="${esc(d.name)}"><td>${esc(d.name)}</td><td>${esc(d.url)}</td><td>${esc(d.mode)}</td><td>${esc(filters)}</td>
        <td>${state}</td><td>${d.backlog}</td><td>${d.lag_seconds} s</td><td>${d.retrying}</td><td>${d.parked}${d.held ? ` · ${d.held} missed in the fan-out` : ""}</td><td>${d.delivered}</td>
        <td>${esc(d.last_error || "—")}</td></tr>`;
    }).join("");
    // Each server's disk: the fsyncs and rewrites that make dashboards late (store/disk.py).
    const mb = (b) => `${(b / 1048576).toFixed(1)} MB`;
    const ago = (t) => { const d = Math.max(0, Date.now() / 1000 - t); return d < 90 ? `${Math.round(d)} s ago` : d < 5400 ? `${Math.round(d / 60)} min ago` : d < 172800 ? `${Math.round(d / 3600)} h ago` : `${Math.round(d / 86400)} days ago`; };
    const disks = (s.disks || []).map((d) => {
      if (d.problem) return `<div class="card" data-key="disk:${esc(d.server)}" data-disk="${esc(d.server)}">${esc(d.server)}: not read (${esc(d.problem)})</div>`;
      const failed = d.last_write === "err" ? `<p class="warning">The last AOF write failed: this server refuses writes until its disk takes them.</p>` : "";
      // The status says it (store/disk.py's `full`): at its maxmemory under noeviction.
      const full = d.full
        ? `<p class="warning">This server is full: ${mb(d.used_bytes)} in use of its maxmemory ${mb(d.max_bytes)} (noeviction). It refuses writes until ops make room.</p>` : "";
      const memory = d.max_bytes ? ` · memory ${mb(d.used_bytes)} of ${mb(d.max_bytes)}` : "";
      const aof = d.aof ? `AOF ${mb(d.aof_bytes)}${d.rewritten_bytes >= GROWTH_FROM ? `, ${(d.aof_bytes / d.rewritten_bytes).toFixed(1)}× what the last rewrite left` : ""}` : "no AOF";
      const state = d.rewriting ? chip("rewriting", "rescheduled") : chip("no rewrite running", "scheduled");
      const stalls = (d.stalls || []).map((t) => `<tr><td>${esc(t.event)}</td><td>${t.latest_ms} ms</td><td>${ago(t.at)}</td><td>${t.worst_ms} ms</td></tr>`).join("");
      return `<div class="card" data-key="disk:${esc(d.server)}" data-disk="${esc(d.server)}">${full}${failed}${esc(d.server)} · ${aof}${memory} · ${state}
        ${stalls ? `<table><thead><tr><th>Stall</th><th>Latest</th><th>When</th><th>Worst</th></tr></thead><tbody>${stalls}</tbody></table>` : `<p class="meta" title="The server's latency monitor logs what takes latency-monitor-threshold ms or more: 5 on the servers dateline starts, none at all on a server left at 0">no stall logged</p>`}</div>`;
    }).join("");
    // Read models an older release built (the projector logs it once, at its start).
    const built = s.projection.shapes[s.projection.active];
    const oldShape = built && built < s.projection.current
      ? `<p class="warning" data-key="oldshape">Read models of ${esc(s.projection.active)} are shape ${built}, older than this release's ${s.projection.current}: readers do without what they lack (the boards are read whole for a page) until <code>dateline replay stories</code>.</p>` : "";
    // The last `dateline backup` (store/backup.py): a lost log comes back only that far.
    const b = s.backup;
    const size = (n) => n < 1000 ? `${n} bytes` : n < 1e6 ? `${(n / 1e3).toFixed(1)} KB` : n < 1e9 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e9).toFixed(1)} GB`;
    const stale = !b || Date.now() / 1000 - b.at > 26 * 3600;
    const backup = b
      ? `<div class="card" data-key="backup" data-backup="${esc(b.file)}">${stale ? `<p class="warning">Over 26 hours old: a lost log would come back only this far.</p>` : ""}began ${ago(b.at)} · ${b.updates} updates of ${b.stories} stories · ${esc(b.file)} (${size(b.bytes)}) · ${b.signed ? "signed" : "not signed"}</div>`
      : `<p class="warning" data-key="backup">No backup recorded: <code>dateline backup FILE</code>.</p>`;
    patch(document.getElementById("ops"), `
      ${s.moving ? `<p class="warning" data-key="moving">The log ${esc(s.moving)}.</p>` : ""}
      <h2>Partitions (group ${esc(s.group)})</h2>
      ${paceHtml(samples, (s.processes || []).length)}
      <p class="meta" data-key="procs">${(s.processes || []).length} projector ${(s.processes || []).length === 1 ? "process" : "processes"} sharing them${(s.processes || []).length ? `: ${s.processes.map(esc).join(", ")}` : " (none running)"}</p>
      <table><thead><tr><th>#</th><th>Log length</th><th>Checkpoint</th><th>Lag</th><th>Lag (time)</th><th>Pending</th><th>Lease</th><th title="Records past this stream id must carry the append function's seal (dateline seal)">Sealed</th></tr></thead><tbody>${rows}</tbody></table>
      <h2>Parked updates</h2>${parked.length ? `<p class="meta" data-key="dl">${esc(dl.parked_updates)} updates in ${esc(dl.parked_stories)} stories.
        See one with <code>dateline dlq show STORY</code>; apply them after the fix with <code>dateline dlq redrive STORY</code>.</p>
        <table><thead><tr><th>Story</th><th>Parked at (log position)</th></tr></thead><tbody>${parked.map((p) => `<tr data-key="dl:${esc(p.story)}" data-parked="${esc(p.story)}">
        <td><a href="#/stories/${encodeURIComponent(p.story)}">${esc(p.story)}</a></td><td>${esc(p.parked_at)}</td></tr>`).join("")}</tbody></table>` : `<p class="empty">none parked</p>`}
      <h2>Subscriptions</h2>${subs && !(dv.processes || []).length ? `<p class="warning" data-key="nodeliver">No delivery service running: nothing is sent until <code>dateline deliver</code> runs.</p>` : ""}${subs && ((dv.processes || []).length || (dv.standbys || []).length) ? `<p class="meta" data-key="delivering">${(dv.processes || []).length ? `Sent by ${dv.processes.map(esc).join(", ")}` : "Sent by none"} · ${(dv.standbys || []).length ? `standing by to take over: ${dv.standbys.map(esc).join(", ")}` : "none standing by"}</p>` : ""}${subs ? `<p class="meta" data-key="fanout">Not yet put in the outboxes: ${dv.fanout_lag === null ? "unknown" : esc(dv.fanout_lag)}.
        Parked deliveries go back with <code>dateline subscriptions redrive NAME</code>.</p>
        <table><thead><tr><th>Name</th><th>URL</th><th>Mode</th><th>Wants</th><th>State</th><th>Backlog</th><th>Oldest</th><th>Retrying</th><th>Parked</th><th>Delivered</th><th>Last error</th></tr></thead>
        <tbody>${subs}</tbody></table>` : `<p class="empty">no subscriptions (<code>dateline subscriptions add URL</code>)</p>`}
      <h2 title="What the server's latency monitor logged: an fsync, an AOF write, a fork or a command over its threshold (5 ms on the servers dateline starts)">Disk</h2>${disks || `<p class="empty">not reported</p>`}
      <h2>Backup</h2>${backup}
      <h2>Projection</h2>${oldShape}<div class="card" data-key="proj">active ${chip(s.projection.active || "none", "scheduled")} · versions ${esc(s.projection.versions.join(", ") || "none")}</div>
      ${replay ? `<h2>Rebuild</h2><div class="card" data-key="replay">${esc(replay.version)}: ${esc(replay.done)} of ${esc(replay.total)} updates · ${esc(replay.rate || "")} updates/s · ${esc(replay.state || "")}${replay.state === "rebuilding" && +replay.rate > 0 && +replay.total > +replay.done ? ` · about ${seconds((+replay.total - +replay.done) / +replay.rate)} to go` : ""}
        <progress class="bar" max="100" value="${pct.toFixed(1)}"></progress></div>` : ""}`, seen);
  };
  // The lag the query process read over the last minutes: drawn at once, so the chart
  // and the verdict do not wait for this page's own polls. Points on its clock, placed
  // on this page's by the clock it answered with.
  const trail = async () => {
    const r = await fetch("/v1/status/lag").catch(() => null);
    if (!r || !r.ok) return;
    const t = await r.json();
    const shift = Date.now() / 1000 - t.now;
    for (const p of t.points) samples.push({ at: p.at + shift, appended: p.appended, lag: p.lag, exact: p.exact, partitions: p.partitions });
  };
  trail().then(() => { if (document.getElementById("ops")) load(); });
  timer = setInterval(load, 2000);
}

function route() {
  stop();
  const hash = location.hash || "#/";
  const m = /^#\/stories\/(.+)$/.exec(hash);
  if (m) storyPage(decodeURIComponent(m[1]));
  else if (hash === "#/ops") opsPage();
  else if (hash === "#/schedule") boardPage("");
  else if (hash.startsWith("#/schedule/")) boardPage(decodeURIComponent(hash.slice("#/schedule/".length)));
  else if (hash.startsWith("#/speakers/")) {
    // `#/speakers/<name>[/<next>]`: a name is one path segment, encoded.
    const [name, after] = hash.slice("#/speakers/".length).split("/");
    speakerPage(decodeURIComponent(name), after ? decodeURIComponent(after) : "");
  }
  else if (hash === "#/overdue") overduePage();
  else if (hash.startsWith("#/older")) olderPage(decodeURIComponent(hash.slice("#/older/".length)));
  else indexPage();
}

// Signed in (a session cookie), or off to the sign-in page; the operations page for ops.
async function start() {
  const r = await fetch("/v1/me");
  if (r.status === 401) { location.replace("/signin.html?needed"); return; }
  const me = await r.json();
  document.getElementById("who").textContent = `${me.name} (${me.role})`;
  if (me.role !== "ops") document.querySelector('a[href="#/ops"]').remove();
  window.addEventListener("hashchange", route);
  route();
}

start();
