// app.js — the site web app: pairing from an invite link, the home page, the status bar, and
// the routes to the lists (list.js) and forms (form.js). Everything goes through one Session
// of gateway.js; every text comes from strings.js.
//
// Routes (the hash, so that the gateway serves one page):
//   (none)                 home: the portal types the role may use
//   #/list/TYPE?q=&sort=…  a type's searchable list
//   #/new/TYPE             a create form
//   #/doc/ID               a document's form

import {Session, pair, codeFromLocation, storedCredentials} from '/gateway.js';
import {t, has, lang, typeName, reasonText, relativeTime, clockTime} from '/strings.js';
import {h, replace, debounce, isTyping, listHash, newHash, docHash, quote} from '/dom.js';
import {ListView} from '/list.js';
import {FormView} from '/form.js';
import {Titles} from '/erp5.js';

const $ = (id) => document.getElementById(id);

// Outbox states that mean "waiting to upload" (docs/DESIGN.md §6); dead and conflict are counted apart.
const WAITING_STATES = ['pending', 'inflight', 'deferred', 'uncertain', 'held'];

/** App is the page: one session, the current view, the status bar. */
export class App {
  constructor() {
    this.session = null;
    this.types = null; // portal_type → describe entry, once describe answered
    this.typesKey = '';
    this.view = null;
    this.status = null;
    this.flash = null; // {text, kind} for the next view
    this.routedWithTypes = false;
    this.titles = null; // related documents' titles (erp5.js)
    this.formsHash = ''; // describe's forms_hash: a new one means ERP5's forms changed
    this.upstreamMode = 'unknown'; // receiver, stock or unknown
  }

  async boot() {
    document.documentElement.lang = lang;
    this.shell();
    if (location.pathname === '/pair') await this.pairFromLink();
    const s = new Session();
    this.session = s;
    this.titles = new Titles(s);
    s.addEventListener('state', () => this.onState());
    s.addEventListener('open', (e) => this.onOpen(e.detail));
    s.addEventListener('changed', (e) => {
      this.titles.forget([...(e.detail.ids || []), ...Object.keys(e.detail.renamed || {})]);
      if (this.view && this.view.changed) this.view.changed(e.detail);
    });
    s.addEventListener('status', (e) => this.onStatus(e.detail));
    s.addEventListener('writes', () => this.renderBanner());
    s.addEventListener('restored', (e) => this.onRestored(e.detail));
    window.addEventListener('hashchange', () => {
      // A notice (paired, restored) has been read once the user moves on.
      if ($('msg').className === 'ok') $('msg').hidden = true;
      // A route already shown (routed before this event came) is not built again.
      if (this.routedWithTypes && location.hash === this.routedHash) return;
      this.route();
    });
    document.addEventListener('keydown', (e) => this.onKey(e));
    window.addEventListener('beforeunload', (e) => {
      if (s.pendingWrites > 0) {
        e.preventDefault();
        e.returnValue = t('leaveWithUnsent');
      }
    });
    s.start();
    this.route();
    setInterval(() => this.tick(), 1000);
  }

  // shell fills the static page's texts.
  shell() {
    document.title = t('appName');
    const skip = $('skip');
    skip.textContent = t('skipToContent');
    // The hash holds the route: the skip link moves focus instead of following its href.
    skip.addEventListener('click', (e) => {
      e.preventDefault();
      $('main').focus();
    });
    $('brand').textContent = t('appName');
    $('crumbs').setAttribute('aria-label', t('breadcrumb'));
    $('statusbar').setAttribute('aria-label', t('statusLabel'));
    $('state').textContent = t('connecting');
    this.renderStatus();
  }

  // pairFromLink redeems the invite link's code, then the page goes on as the home page.
  async pairFromLink() {
    const msg = $('msg');
    const code = codeFromLocation();
    // The code is secret and single-use: out of the address bar and history at once.
    history.replaceState(null, '', '/');
    msg.hidden = false;
    if (!code) {
      msg.textContent = t('pairNoCode');
      msg.className = 'err';
      return false;
    }
    msg.textContent = t('pairing');
    try {
      const creds = await pair(code);
      msg.textContent = t('paired', creds);
      msg.className = 'ok';
      return true;
    } catch (err) {
      const why = has('pairReasons.' + err.reason) ? t('pairReasons.' + err.reason) : err.message;
      msg.textContent = t('pairFailed', {message: why});
      msg.className = 'err';
      return false;
    }
  }

  // setPage sets the document title and the breadcrumbs: [{label, href}], the last is the page.
  setPage(title, crumbs = []) {
    document.title = title ? `${title} — ${t('appName')}` : t('appName');
    const nav = $('crumbs');
    const items = [{label: t('home'), href: '#'}, ...crumbs];
    replace(nav, h('ol', {}, items.map((c, i) => h('li', {},
      i === items.length - 1 ? h('span', {'aria-current': 'page'}, c.label) : h('a', {href: c.href}, c.label)))));
  }

  // replaceHash changes the address without a new route (a list's search, a renamed id).
  replaceHash(hash) {
    if (location.hash === hash) return;
    history.replaceState(null, '', hash);
    this.routedHash = location.hash;
  }

  // takeFlash returns the notice left for this view, once.
  takeFlash() {
    const f = this.flash;
    this.flash = null;
    return f;
  }

  typeInfo(portalType) {
    return this.types ? this.types.get(portalType) || null : null;
  }

  async loadTypes() {
    const d = await this.session.describe();
    this.formsHash = d.forms_hash || '';
    this.upstreamMode = d.upstream_mode || 'unknown';
    const key = JSON.stringify([d.types, this.upstreamMode]);
    const changed = key !== this.typesKey;
    this.typesKey = key;
    this.types = new Map(d.types.map((ti) => [ti.portal_type, ti]));
    return changed;
  }

  async onOpen({reconnected}) {
    let changed = false;
    try {
      changed = await this.loadTypes();
    } catch (err) {
      if (!this.types) {
        this.showError(t('listError', {message: reasonText(err.reason, err.message)}));
        return;
      }
    }
    if (!this.routedWithTypes || changed) {
      this.route();
    } else if (reconnected && this.view && this.view.reconnected) {
      this.view.reconnected();
    }
    this.renderStatus();
  }

  onState() {
    const s = this.session;
    if (s.state === 'stopped' && s.error) {
      this.routedWithTypes = false;
      this.destroyView();
      this.setPage('');
      const text = s.error.reason === 'revoked' ? t('revoked') : t('unpaired');
      replace($('main'), h('section', {class: 'panel stopped'}, h('h1', {tabindex: '-1'}, t('appName')), h('p', {role: 'alert'}, text)));
    }
    this.renderStatus();
    this.renderBanner();
  }

  // notify shows a notice above the page until the next navigation.
  notify(text, kind) {
    const msg = $('msg');
    msg.textContent = text;
    msg.className = kind;
    msg.hidden = false;
  }

  // onRestored handles the answer to a write made before this page was loaded (a reload
  // while the write had no reply): the draft it saved is done with, and a create form that
  // is still open moves on to the new document.
  onRestored({method, meta, result, error}) {
    if (error) {
      this.notify(t('restoredFailed', {message: reasonText(error.reason, error.message)}), 'err');
      return;
    }
    if (meta && meta.draft) {
      try {
        sessionStorage.removeItem(meta.draft);
      } catch {
        // nothing kept
      }
    }
    if (method === 'post' && meta && meta.route && location.hash === meta.route && result && result.id) {
      this.flash = {text: t('created'), kind: 'ok'};
      if (this.view && this.view.forget) this.view.forget();
      location.hash = docHash(result.id);
      return;
    }
    this.notify(t('restoredSaved'), 'ok');
    if (this.view && this.view.restored) this.view.restored(meta);
  }

  onStatus(st) {
    this.status = st;
    // The uplink learns whether head office runs the receiver after describe answered.
    if (st && st.upstream_mode && st.upstream_mode !== this.upstreamMode) this.upstreamMode = st.upstream_mode;
    // ERP5's forms changed at head office (a relabel, a new field): describe again, and show
    // the page anew unless the user is typing in it (a draft keeps what was typed anyway).
    if (st && st.forms_hash && this.types && st.forms_hash !== this.formsHash && !this.describing) {
      this.describing = true;
      this.formsHash = st.forms_hash;
      this.loadTypes().then((changed) => {
        if (changed && this.routedWithTypes && !(this.view && this.view.dirty)) this.route();
      }).catch(() => {
        this.formsHash = '';
      }).finally(() => {
        this.describing = false;
      });
    }
    this.renderStatus();
    if (this.view && this.view.status) this.view.status(st);
  }

  tick() {
    const s = this.session;
    if (s && s.state === 'waiting') {
      this.renderStatus();
      this.renderBanner();
    }
  }

  onKey(e) {
    if (e.defaultPrevented) return;
    if ((e.ctrlKey || e.metaKey) && !e.altKey && e.key.toLowerCase() === 's') {
      if (this.view && this.view.save) {
        e.preventDefault();
        this.view.save();
      }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey || isTyping(e)) return;
    if (this.view && this.view.key && this.view.key(e)) e.preventDefault();
  }

  destroyView() {
    if (this.view && this.view.destroy) this.view.destroy();
    this.view = null;
  }

  showError(text) {
    replace($('main'), h('section', {class: 'panel'}, h('p', {class: 'alert err', role: 'alert'}, text)));
  }

  // route renders the view the hash names.
  route() {
    const s = this.session;
    if (s.state === 'stopped') return;
    this.destroyView();
    const main = $('main');
    if (!this.types) {
      this.routedWithTypes = false;
      this.setPage('');
      replace(main, h('section', {class: 'panel'}, h('p', {class: 'muted', role: 'status'},
        s.state === 'waiting' ? t('notConnectedRead') : t('loading'))));
      return;
    }
    this.routedWithTypes = true;
    this.routedHash = location.hash;
    const raw = location.hash.replace(/^#\/?/, '');
    const q = raw.indexOf('?');
    const path = q >= 0 ? raw.slice(0, q) : raw;
    const params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
    const parts = path.split('/').map((p) => {
      try {
        return decodeURIComponent(p);
      } catch {
        return p;
      }
    });
    let view;
    switch (parts[0]) {
      case 'list':
        view = new ListView(this, parts[1] || '', params);
        break;
      case 'new':
        view = new FormView(this, {type: parts[1] || '', params});
        break;
      case 'doc':
        view = new FormView(this, {id: parts.slice(1).join('/')});
        break;
      default:
        view = new HomeView(this);
    }
    this.view = view;
    replace(main, view.el);
    const heading = main.querySelector('h1');
    // Focus follows navigation (not the first load, where it stays at the top of the page).
    if (heading && this.navigated) heading.focus({preventScroll: false});
    this.navigated = true;
    window.scrollTo(0, 0);
  }

  // renderStatus fills the status bar: channel, link to head office, uplink, freshness.
  renderStatus() {
    const s = this.session;
    const state = $('state');
    let text = t('connecting');
    let cls = '';
    if (s) {
      const lost = s.stats.opened > 0 || s.attempt > 0;
      switch (s.state) {
        case 'open':
          text = t('connected', {peer: s.peer, role: s.role});
          cls = 'ok';
          break;
        case 'waiting':
        case 'connecting':
          // No countdown here: this is a live region, and the banner shows the seconds.
          if (lost) {
            text = t('reconnecting');
            cls = 'err';
          }
          break;
        case 'stopped':
          text = s.error && s.error.reason === 'revoked' ? t('revoked') : t('unpaired');
          cls = 'err';
          break;
      }
    }
    if (state.textContent !== text) state.textContent = text;
    if (state.className !== cls) state.className = cls;

    const open = !!(s && s.open);
    item($('st-channel'), t('channel'), open ? t('channelUp') : t('channelDown'), open ? 'ok' : 'err');

    const st = this.status;
    if (!st) {
      item($('st-link'), t('link'), t('none'), '');
      item($('st-uplink'), t('uplink'), t('none'), '');
      item($('st-fresh'), t('freshness'), t('none'), '');
      return;
    }
    // Without a channel, the gateway's link state is unknown and its counts are the last seen.
    const stale = !open;
    const link = stale ? {state: 'unknown'} : st.link || {state: 'unknown'};
    let linkText = has('linkStates.' + link.state) ? t('linkStates.' + link.state) : link.state;
    if (link.since && link.state !== 'unknown') linkText = t('linkSince', {state: linkText, time: clockTime(link.since)});
    if (link.next_try_at && link.state !== 'up') linkText += ' · ' + t('linkNextTry', {time: relativeTime(link.next_try_at)});
    const linkEl = item($('st-link'), t('link'), linkText, {up: 'ok', degraded: 'warn', down: 'err'}[link.state] || '');
    linkEl.title = link.last_error || '';

    const counts = st.outbox || {};
    const waiting = WAITING_STATES.reduce((sum, k) => sum + (counts[k] || 0), 0);
    const parts = [waiting ? t('uplinkWaiting', {count: waiting}) : t('uplinkNothing')];
    if (counts.dead) parts.push(t('uplinkRejected', {count: counts.dead}));
    if (counts.conflict) parts.push(t('uplinkConflicts', {count: counts.conflict}));
    const uplink = parts.join(' · ');
    item($('st-uplink'), t('uplink'), stale ? t('lastKnown', {value: uplink}) : uplink,
      stale ? '' : counts.dead || counts.conflict ? 'err' : (waiting ? 'warn' : 'ok'));

    const times = Object.values(st.fresh_at || {}).map((x) => new Date(x).getTime()).filter(Number.isFinite);
    const oldest = times.length ? Math.min(...times) : 0;
    item($('st-fresh'), t('freshness'), oldest ? t('freshAt', {time: relativeTime(oldest)}) : t('freshNever'), oldest ? '' : 'warn');
  }

  // renderBanner tells the user the page is offline (or cut off) and what that means.
  renderBanner() {
    const s = this.session;
    const banner = $('banner');
    if (!s) return;
    const lost = (s.state === 'waiting' || (s.state === 'connecting' && (s.stats.opened > 0 || s.attempt > 0)));
    if (!lost) {
      if (!banner.hidden) {
        banner.hidden = true;
        banner.replaceChildren();
      }
      return;
    }
    const seconds = s.state === 'waiting' ? Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000)) : 0;
    const key = `${s.state}|${seconds}|${s.pendingWrites}`;
    if (banner.dataset.key === key && !banner.hidden) return;
    banner.dataset.key = key;
    let retry = banner.querySelector('button');
    const hadFocus = retry && document.activeElement === retry;
    const text = h('p', {}, h('strong', {}, s.state === 'waiting' ? t('reconnectingIn', {seconds}) : t('reconnecting')), ' ', t('offlineBanner'),
      s.pendingWrites ? [' ', t('unsentWrites', {count: s.pendingWrites})] : null);
    if (!retry) {
      retry = h('button', {type: 'button', class: 'secondary', onclick: () => s.retryNow()}, t('retryNow'));
    }
    retry.disabled = s.state !== 'waiting';
    banner.replaceChildren(text, retry);
    banner.hidden = false;
    if (hadFocus) retry.focus();
  }
}

// item fills one status bar item: a label, a value and a state class for its dot.
function item(el, label, value, cls) {
  const key = label + '|' + value + '|' + cls;
  if (el.dataset.key !== key) {
    el.dataset.key = key;
    el.className = 'item' + (cls ? ' ' + cls : '');
    replace(el, h('span', {class: 'label'}, label), ' ', h('span', {class: 'value'}, value));
  }
  return el;
}

/** HomeView lists the portal types the role may use, with their counts. */
class HomeView {
  constructor(app) {
    this.app = app;
    app.setPage('');
    const types = [...app.types.values()];
    this.counts = new Map();
    this.el = h('section', {class: 'home'},
      h('h1', {tabindex: '-1'}, t('homeTitle')),
      types.length ? h('ul', {class: 'cards'}, types.map((ti) => this.card(ti))) : h('p', {class: 'alert'}, t('homeEmpty')));
    const flash = app.takeFlash();
    if (flash) this.el.prepend(h('p', {class: 'alert ' + flash.kind, role: 'status'}, flash.text));
    this.refresh = debounce(() => this.load(), 400);
    this.load();
  }

  card(ti) {
    const can = (m) => ti.methods.includes(m);
    const caps = [];
    if (can('get') || can('allDocs')) caps.push(t('canRead'));
    if (can('post')) caps.push(t('canCreate'));
    if (can('put')) caps.push(t('canEdit'));
    if (can('action') && ti.transitions.length) caps.push(t('canAct'));
    const count = h('span', {class: 'count'}, '');
    this.counts.set(ti.portal_type, count);
    const title = typeName(ti.portal_type, 'title');
    return h('li', {class: 'card'},
      can('allDocs')
        ? h('a', {class: 'card-link', href: listHash(ti.portal_type), 'aria-label': t('homeOpen', {type: typeName(ti.portal_type, 'other')})}, h('span', {class: 'card-title'}, title))
        : h('span', {class: 'card-title'}, title),
      count,
      h('span', {class: 'caps'}, caps.join(' · ')),
      can('post') ? h('a', {class: 'button small', href: newHash(ti.portal_type)}, t('newDoc', {type: typeName(ti.portal_type, 'one')})) : null);
  }

  async load() {
    const s = this.app.session;
    if (!s.open) return;
    await Promise.all([...this.app.types.values()].filter((ti) => ti.methods.includes('allDocs')).map(async (ti) => {
      try {
        const res = await s.allDocs({query: `portal_type:${quote(ti.portal_type)}`, limit: [0, 1], select_list: ['portal_type']});
        this.counts.get(ti.portal_type).textContent = t('homeCount', {count: res.total_rows});
      } catch {
        // A count is a nicety: the list itself reports what went wrong.
      }
    }));
  }

  changed() { this.refresh(); }
  reconnected() { this.load(); }
  destroy() { this.refresh.cancel(); }
}

const app = new App();
window.app = app; // for the console
app.boot();
