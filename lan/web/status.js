// The operator status page: polls /status.json and renders it. The data never goes through
// innerHTML: every value is text in elements built here. The operator token, when the page
// was opened from another machine, comes from the address's fragment (#token=…, never sent
// to the server nor logged) and is kept in this browser's localStorage.

const REFRESH_MS = 5000;
const TIMEOUT_MS = 10000;
const TOKEN_KEY = 'gateway-operator-token';
const OPEN_STATES = ['pending', 'inflight', 'deferred', 'uncertain', 'held', 'dead', 'conflict'];
const STATE_HELP = {
  pending: 'queued, not sent yet',
  inflight: 'being sent now',
  deferred: 'will be retried (link or ERP5 trouble)',
  uncertain: 'sent, answer lost: ERP5 will be asked',
  held: 'held by an operator',
  dead: 'refused by ERP5',
  conflict: 'head office changed the same field',
};
const LINK_LABEL = { up: 'Up', degraded: 'Degraded', down: 'Down', unknown: 'Not tried yet' };

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function fmtBytes(n) {
  if (!n) return '0 B';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)) + ' ' + u[i];
}

function fmtDuration(sec) {
  sec = Math.max(0, Math.round(sec));
  if (sec < 60) return sec + ' s';
  const m = Math.round(sec / 60);
  if (m < 60) return m + ' min';
  const h = Math.floor(sec / 3600);
  if (h < 48) { const rm = Math.round((sec - h * 3600) / 60); return rm ? `${h} h ${rm} min` : `${h} h`; }
  return Math.round(sec / 86400) + ' days';
}

let serverSkewMs = 0; // the gateway's clock minus this browser's, so ages are the gateway's
const now = () => Date.now() + serverSkewMs;
const ageOf = (t) => (now() - new Date(t).getTime()) / 1000;
const ago = (t) => t ? fmtDuration(ageOf(t)) + ' ago' : 'never';
const fmtClock = (t) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
const fmtFull = (t) => new Date(t).toLocaleString();

function tile(id, cls, big, sub) {
  const t = $(id);
  t.className = 'tile' + (cls ? ' ' + cls : '');
  t.querySelector('.big').textContent = big;
  t.querySelector('.sub').textContent = sub;
}

function renderTiles(r) {
  const link = r.link;
  if (!link) {
    tile('t-link', 'idle', 'Off', 'uplink not configured: writes wait in the outbox');
  } else {
    const s = link.link.state;
    let sub = link.link.since ? 'since ' + fmtClock(link.link.since) : '';
    if (s !== 'up' && link.link.next_try_at) {
      const d = (new Date(link.link.next_try_at).getTime() - now()) / 1000;
      sub += (sub ? ' · ' : '') + (d > 0 ? 'next try in ' + fmtDuration(d) : 'trying now');
    }
    if (link.paused) sub = 'PAUSED: ' + (link.pause_reason || 'see the alarms');
    tile('t-link', { up: 'ok', degraded: 'warn', down: 'err' }[s] || 'idle', LINK_LABEL[s] || s, sub || (link.mode ? link.mode + ' mode' : ''));
  }

  const o = r.outbox;
  if (o.waiting === 0) tile('t-queue', 'ok', '0', 'everything reached ERP5');
  else {
    const age = o.oldest_pending ? ageOf(o.oldest_pending) : 0;
    tile('t-queue', age > 3600 ? 'warn' : '', String(o.waiting), 'oldest queued ' + fmtDuration(age) + ' ago');
  }

  const dead = o.counts.dead || 0, conflict = o.counts.conflict || 0;
  if (dead + conflict === 0) tile('t-problems', 'ok', '0', 'no dead or conflict entry');
  else tile('t-problems', 'err', String(dead + conflict), `dead ${dead} · conflict ${conflict} · oldest ${o.oldest_problem ? fmtDuration(ageOf(o.oldest_problem)) : '?'}`);

  const tr = r.traffic;
  let tsub = `≈ ${tr.cost_today.toFixed(2)} at ${tr.cost_per_mb.toFixed(2)} per MB`;
  let tcls = '';
  if (tr.daily_budget > 0) {
    const pct = Math.round(100 * tr.bytes_today / tr.daily_budget);
    tsub += ` · ${pct}% of the daily budget`;
    if (pct >= 100) tcls = 'err'; else if (pct >= 80) tcls = 'warn';
  }
  tile('t-traffic', tcls, fmtBytes(tr.bytes_today), tsub);

  const p = r.peers;
  tile('t-peers', p.online > 0 ? 'ok' : 'idle', `${p.online} / ${p.paired}`, `${p.channels} open channel${p.channels === 1 ? '' : 's'}`);

  const scopes = r.replica.scopes || [];
  const fresh = scopes.filter((s) => s.fresh_at).map((s) => new Date(s.fresh_at).getTime());
  const complete = scopes.filter((s) => s.complete).length;
  if (scopes.length === 0) tile('t-fresh', 'idle', '—', 'no downlink scope configured');
  else if (fresh.length < scopes.length) tile('t-fresh', 'idle', 'Never', `${scopes.length - fresh.length} of ${scopes.length} scopes not synced yet`);
  else {
    const worst = Math.min(...fresh);
    const age = (now() - worst) / 1000;
    tile('t-fresh', age > 6 * 3600 ? 'warn' : 'ok', fmtDuration(age), `least fresh scope · ${complete} of ${scopes.length} complete`);
  }
}

function renderStrip(r) {
  const strip = $('strip');
  const axis = $('strip-axis');
  strip.replaceChildren();
  axis.replaceChildren();
  const slots = r.history || [];
  if (!r.link || slots.length === 0) {
    strip.append(el('p', { class: 'hint' }, 'No link history: the uplink is not configured.'));
    strip.setAttribute('aria-label', 'No link history');
    return;
  }
  const totals = {};
  const order = ['up', 'degraded', 'down', 'unknown', 'off'];
  const names = { up: 'up', degraded: 'degraded', down: 'down', unknown: 'not tried', off: 'gateway stopped' };
  slots.forEach((s, i) => {
    const start = new Date(s.start);
    const end = i + 1 < slots.length ? new Date(slots[i + 1].start) : new Date(now());
    const span = Math.max(1, (end - start) / 1000);
    const slot = el('div', { class: 'slot' });
    const parts = [];
    for (const k of order) {
      const v = s.seconds[k] || 0;
      if (v <= 0) continue;
      totals[k] = (totals[k] || 0) + v;
      const seg = el('div', { class: 'seg ' + k });
      seg.style.height = Math.min(100, 100 * v / span) + '%';
      slot.append(seg);
      parts.push(`${names[k]} ${fmtDuration(v)}`);
    }
    slot.title = `${fmtClock(start)}–${fmtClock(end)}: ${parts.length ? parts.join(', ') : 'no record'}`;
    strip.append(slot);
  });
  const sum = Object.values(totals).reduce((a, b) => a + b, 0) || 1;
  const summary = order.filter((k) => totals[k]).map((k) => `${names[k]} ${Math.round(100 * totals[k] / sum)}%`).join(', ');
  strip.setAttribute('aria-label', 'Link over the last 24 hours: ' + (summary || 'no record'));
  const first = new Date(slots[0].start).getTime();
  const last = now();
  for (let k = 0; k <= 4; k++) {
    const t = first + (last - first) * k / 4;
    const span = el('span', {}, k === 4 ? 'now' : fmtClock(t));
    span.style.left = (25 * k) + '%';
    axis.append(span);
  }
}

function renderStates(r) {
  const list = $('states');
  list.replaceChildren();
  const counts = r.outbox.counts;
  const max = Math.max(1, ...OPEN_STATES.map((s) => counts[s] || 0));
  for (const s of OPEN_STATES) {
    const n = counts[s] || 0;
    const fill = el('span', { class: 'fill' });
    fill.style.width = (n ? Math.max(2, 100 * n / max) : 0) + '%';
    list.append(el('li', { class: `s-${s}${n ? '' : ' zero'}`, title: STATE_HELP[s] },
      el('span', { class: 'name' }, s), el('span', { class: 'bar', 'aria-hidden': 'true' }, fill), el('span', { class: 'n' }, n.toLocaleString())));
  }
}

function fact(dl, label, value, cls) {
  dl.append(el('dt', {}, label), el('dd', { class: cls }, value));
}

function renderLink(r) {
  const dl = $('link-facts');
  dl.replaceChildren();
  const st = r.link;
  if (!st) {
    fact(dl, 'Uplink', 'not configured: set site_id and upstream.url; writes wait in the outbox');
  } else {
    const l = st.link;
    fact(dl, 'State', `${LINK_LABEL[l.state] || l.state}${l.since ? ' since ' + fmtFull(l.since) : ''}`, { down: 'err', degraded: 'warn' }[l.state]);
    fact(dl, 'Last answer', ago(l.last_up));
    fact(dl, 'Last failure', ago(l.last_down));
    if (l.last_error) fact(dl, 'Last error', `${l.last_error} (${l.failures} in a row)`, 'err long');
    let mode = st.mode || 'not probed yet';
    if (st.capability) mode += ` (receiver v${st.capability.version}, ${(st.capability.encodings || []).join('/')})`;
    else if (st.mode === 'stock') mode += ' (no receiver: creates at-least-once; removes and actions wait)';
    fact(dl, 'Protocol', `${mode}; configured ${st.protocol}`);
    if (st.skew_known) {
      const sk = st.clock_skew / 1e9;
      fact(dl, 'Clock skew', `${sk >= 0 ? '+' : '−'}${fmtDuration(Math.abs(sk))} (ERP5 minus this machine)`, Math.abs(sk) > 60 ? 'warn' : undefined);
    } else fact(dl, 'Clock skew', 'unknown until ERP5 answers');
    fact(dl, 'Sent', `${st.sent} batches or writes, ${st.settled} entries settled since the start`);
    if (st.last_round) fact(dl, 'Last round', ago(st.last_round));
    if (st.paused) fact(dl, 'Paused', st.pause_reason || 'yes', 'err');
    for (const a of st.alarms || []) fact(dl, 'Alarm: ' + a.kind, a.message, 'err');
    const gone = r.receiver_gone || [];
    if (gone.length) fact(dl, 'Receiver gone', `${gone.length} sent entr${gone.length === 1 ? 'y' : 'ies'} (seq ${gone.join(', ')}) cannot be settled by ERP5 anymore: check them at ERP5, then gateway outbox resolve SEQ --assume-applied|--assume-lost`, 'err');
  }
  const d = r.downlink;
  if (d) {
    fact(dl, 'Downlink', `${d.state}${d.mode ? ', ' + d.mode + ' mode' : ''}; last pull ${ago(d.last_pull)}`);
    if (d.last_error) fact(dl, 'Downlink error', `${d.last_error} (${d.failures} in a row)`, 'err');
  }
}

function renderProblems(r) {
  const body = $('problems').tBodies[0];
  body.replaceChildren();
  const list = r.problems || [];
  const total = (r.outbox.counts.dead || 0) + (r.outbox.counts.conflict || 0);
  $('problems-empty').hidden = total > 0;
  $('problems-wrap').hidden = total === 0;
  for (const e of list) {
    const what = e.op + (e.fields && e.fields.length ? ' ' + e.fields.join(', ') : '');
    body.append(el('tr', {},
      el('td', { class: 'num' }, el('code', {}, e.seq)),
      el('td', {}, el('span', { class: 'badge ' + e.state }, e.state)),
      el('td', {}, what, e.peer ? el('div', { class: 'muted' }, 'by ' + e.peer) : null),
      el('td', {}, el('code', {}, e.doc_id), e.portal_type ? el('div', { class: 'muted' }, e.portal_type) : null),
      el('td', {}, el('span', { class: 'reason' }, e.reason || '—')),
      el('td', { title: fmtFull(e.created_at) }, ago(e.created_at))));
  }
  if (total > list.length) {
    body.append(el('tr', {}, el('td', { colspan: 6, class: 'muted' },
      `…and ${total - list.length} more: gateway outbox ls --state dead,conflict`)));
  }
}

function renderReplica(r) {
  const body = $('scopes').tBodies[0];
  body.replaceChildren();
  const docs = r.replica.documents || {};
  const shown = new Set();
  for (const s of r.replica.scopes || []) {
    shown.add(s.portal_type);
    const name = s.name === s.portal_type ? s.name : `${s.name} (${s.portal_type})`;
    const fresh = s.fresh_at
      ? el('span', { title: fmtFull(s.fresh_at), class: ageOf(s.fresh_at) > 6 * 3600 ? 'badge stale' : '' }, ago(s.fresh_at))
      : el('span', { class: 'muted' }, 'never');
    body.append(el('tr', {},
      el('td', {}, name, s.query ? el('div', { class: 'muted' }, el('code', {}, s.query)) : null),
      el('td', { class: 'num' }, (docs[s.portal_type] || 0).toLocaleString()),
      el('td', {}, fresh, s.complete ? null : el('div', { class: 'muted' }, 'initial sync not finished'))));
  }
  for (const [pt, n] of Object.entries(docs).sort()) {
    if (shown.has(pt)) continue;
    body.append(el('tr', {}, el('td', {}, pt || '(no type)', el('div', { class: 'muted' }, 'not in a scope')),
      el('td', { class: 'num' }, n.toLocaleString()), el('td', { class: 'muted' }, '—')));
  }
}

function renderPeers(r) {
  const body = $('peers').tBodies[0];
  body.replaceChildren();
  const list = r.peers.list || [];
  $('peers-empty').hidden = list.length > 0;
  $('peers-wrap').hidden = list.length === 0;
  for (const p of list.slice(0, 100)) {
    body.append(el('tr', {},
      el('td', {}, el('span', { class: 'badge ' + (p.online ? 'online' : 'offline') }, p.online ? 'online' : 'offline'), ' ', p.name),
      el('td', {}, p.role),
      el('td', { title: p.last_seen ? fmtFull(p.last_seen) : '' }, p.online ? 'now' : ago(p.last_seen)),
      el('td', {}, p.address || '—')));
  }
}

function renderStorage(r) {
  const dl = $('storage');
  dl.replaceChildren();
  const s = r.storage;
  const total = Object.values(r.replica.documents || {}).reduce((a, b) => a + b, 0);
  fact(dl, 'Database', `${fmtBytes(s.database_bytes)} + ${fmtBytes(s.wal_bytes)} write-ahead log`);
  fact(dl, 'Documents', total.toLocaleString());
  const low = s.disk_free_bytes > 0 && s.disk_free_bytes < 1024 ** 3;
  fact(dl, 'Free disk', s.disk_size_bytes ? `${fmtBytes(s.disk_free_bytes)} of ${fmtBytes(s.disk_size_bytes)}` : 'unknown', low ? 'err' : undefined);
  fact(dl, 'Data directory', s.data_dir);
  fact(dl, 'Epoch', r.epoch);
  fact(dl, 'Running', `${r.version} since ${fmtFull(r.started_at)}`);
}

function render(r) {
  serverSkewMs = new Date(r.generated_at).getTime() - Date.now();
  $('site').textContent = r.site_id || '';
  document.title = (r.site_id ? r.site_id + ' · ' : '') + 'Gateway status';
  renderTiles(r);
  renderStrip(r);
  renderStates(r);
  renderLink(r);
  renderProblems(r);
  renderReplica(r);
  renderPeers(r);
  renderStorage(r);
  $('report').hidden = false;
  $('auth').hidden = true;
  $('alert').hidden = true;
  $('foot').textContent = `Refreshes every ${REFRESH_MS / 1000} s · the same data as JSON: /status.json`;
}

let lastOK = 0;
let timer = 0;

function setLive(ok, text) {
  const live = $('live');
  live.className = 'live ' + (ok ? 'ok' : 'err');
  live.textContent = text;
}

async function refresh() {
  clearTimeout(timer);
  const token = localStorage.getItem(TOKEN_KEY);
  const ctl = new AbortController();
  const to = setTimeout(() => ctl.abort(), TIMEOUT_MS);
  try {
    const resp = await fetch('/status.json', {
      headers: token ? { Authorization: 'Bearer ' + token } : {},
      cache: 'no-store', signal: ctl.signal,
    });
    if (resp.status === 401) {
      if (token) localStorage.removeItem(TOKEN_KEY);
      showAuth(token ? 'The gateway refused that token (it may have been replaced).' : '');
      setLive(false, 'Token needed');
      return;
    }
    if (!resp.ok) throw new Error(`the gateway answered ${resp.status}`);
    const report = await resp.json();
    render(report);
    lastOK = Date.now();
    setLive(true, 'Updated ' + new Date().toLocaleTimeString());
  } catch (e) {
    const since = lastOK ? ' since ' + new Date(lastOK).toLocaleTimeString() : '';
    setLive(false, 'Gateway not answering' + since);
    if (!lastOK) {
      const a = $('alert');
      a.textContent = 'The gateway did not answer: ' + (e.name === 'AbortError' ? 'timed out' : e.message) + '. Retrying…';
      a.hidden = false;
    }
  } finally {
    clearTimeout(to);
  }
  timer = setTimeout(refresh, REFRESH_MS);
}

function showAuth(message) {
  $('report').hidden = true;
  $('auth').hidden = false;
  const a = $('alert');
  a.textContent = message;
  a.hidden = !message;
  $('token').focus();
}

$('auth').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const v = $('token').value.trim();
  if (!v) return;
  localStorage.setItem(TOKEN_KEY, v);
  $('token').value = '';
  refresh();
});

// A token in the fragment is stored, then removed from the address bar (and history).
const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
if (m) {
  localStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
  history.replaceState(null, '', location.pathname + location.search);
}
document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });
refresh();
