// gateway.js — the browser's client of the site gateway (docs/DESIGN.md §3).
//
// Pairing:   const creds = await pair(codeFromLocation());          // POST /api/pair, stores the token
// Connecting: const gw = await connect();                           // WebSocket hello/offer/answer, then the data channel
// Calling:   const doc = await gw.get('person_module/1');           // JSON-RPC 2.0 over the channel
//            const rows = await gw.allDocs({query: 'portal_type:"Person"', limit: [0, 20]});
//            const [a, b] = await gw.batch([{method: 'get', params: {id: 'x'}}, {method: 'status'}]);
// Events:    gw.addEventListener('changed', e => e.detail.ids);      // also 'status', 'notification', 'close'
//
// A page that stays open all day uses a Session instead: it reconnects with backoff when the
// channel drops, gives every write a key and resends a write whose reply was lost with the
// same key once the channel is back, so that no write is applied twice:
//            const s = new Session().start();
//            s.addEventListener('state', e => e.detail.state);          // connecting, open, waiting, stopped
//            const {id} = await s.post({portal_type: 'Person', title: 'Ada'});
//
// Messages over 64 KiB travel as binary fragments both ways (12-byte header: u32 big-endian
// message number, fragment index, fragment count), and sends respect bufferedAmount.
// No dependencies, no build step: the site LAN has no Internet.

export const CHANNEL_LABEL = 'jio';
export const FRAGMENT_HEADER_SIZE = 12;
export const MAX_FRAGMENT_PAYLOAD = 64 * 1024;
export const DEFAULT_TIMEOUT = 10000; // ms for the channel to open (the gateway drops us at 10 s)
export const DEFAULT_CALL_TIMEOUT = 60000; // ms for one RPC
export const DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024;

const STORAGE_KEY = 'gateway.credentials';
// Send-side flow control: above HIGH_WATER bytes queued in the channel, wait for it to drain
// to LOW_WATER. Chrome fails the channel past 16 MiB queued.
const HIGH_WATER = 4 * 1024 * 1024;
const LOW_WATER = 1024 * 1024;
const MAX_PARTIAL = 8;
const GATHER_TIMEOUT = 3000;

/** An error from the gateway: an RPC error object, a pairing refusal or a signaling error. */
export class GatewayError extends Error {
  constructor(message, {code = 0, status = 0, reason = '', fields = null, data = null} = {}) {
    super(message);
    this.name = 'GatewayError';
    this.code = code; // JSON-RPC code (-32000 for application errors), 0 otherwise
    this.status = status; // HTTP-like status: 400, 403, 404, 409, 413, 429, 503, 507…
    this.reason = reason; // stable word: not_found, denied, invalid, offline, unauthorized, revoked, closed, timeout…
    this.fields = fields; // {field: message} for a form, or null
    this.data = data;
  }

  /** fromRPC turns a JSON-RPC error object into a GatewayError. */
  static fromRPC(err) {
    const data = err && typeof err.data === 'object' && err.data !== null ? err.data : null;
    const status = data && typeof data.status === 'number' ? data.status : (err.code === -32000 ? 500 : 400);
    const reason = data && data.reason ? data.reason : rpcReason(err.code);
    return new GatewayError(err.message || reason, {code: err.code, status, reason, fields: data ? data.fields || null : null, data});
  }
}

function rpcReason(code) {
  switch (code) {
    case -32700: return 'parse_error';
    case -32600: return 'invalid_request';
    case -32601: return 'method_not_found';
    case -32602: return 'invalid_params';
    default: return 'error';
  }
}

// ---------------------------------------------------------------------------------------------
// Credentials

/** storedCredentials returns {peer, role, token} kept by pair() or an open-enrollment welcome, or null. */
export function storedCredentials(storage = globalThis.localStorage) {
  try {
    const c = JSON.parse(storage.getItem(STORAGE_KEY));
    return c && typeof c.token === 'string' ? c : null;
  } catch {
    return null;
  }
}

/** storeCredentials keeps {peer, role, token} in localStorage. */
export function storeCredentials(creds, storage = globalThis.localStorage) {
  storage.setItem(STORAGE_KEY, JSON.stringify({peer: creds.peer, role: creds.role, token: creds.token}));
}

/** forgetCredentials removes the stored token (after a revocation, say). */
export function forgetCredentials(storage = globalThis.localStorage) {
  storage.removeItem(STORAGE_KEY);
}

/** codeFromLocation reads the pairing code from a link's fragment: /pair#code=CODE. */
export function codeFromLocation(loc = globalThis.location) {
  const hash = (loc.hash || '').replace(/^#/, '');
  return new URLSearchParams(hash).get('code') || '';
}

/**
 * pair redeems a one-time pairing code: POST /api/pair {code} → {peer, role, token}.
 * The token is stored unless store is false. Refusals throw a GatewayError (reason
 * unauthorized, used, expired, rate_limited, bad_request…).
 */
export async function pair(code, {base = globalThis.location.href, store = true, signal} = {}) {
  if (!code) throw new GatewayError('no pairing code', {status: 400, reason: 'bad_request'});
  let res;
  try {
    res = await fetch(new URL('/api/pair', base), {
      method: 'POST',
      headers: {'Content-Type': 'application/json'},
      body: JSON.stringify({code}),
      credentials: 'same-origin',
      signal,
    });
  } catch (e) {
    throw new GatewayError(`cannot reach the gateway: ${e.message}`, {status: 0, reason: 'unreachable'});
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    body = null;
  }
  if (!res.ok) {
    throw new GatewayError((body && body.message) || `pairing failed (HTTP ${res.status})`,
      {status: res.status, reason: (body && body.reason) || 'error'});
  }
  if (!body || typeof body.token !== 'string') {
    throw new GatewayError('the gateway sent no token', {status: 502, reason: 'bad_response'});
  }
  if (store) storeCredentials(body);
  return body;
}

// ---------------------------------------------------------------------------------------------
// Connecting

function signalURL(base) {
  const u = new URL('/signal', base);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  u.hash = '';
  u.search = '';
  return u.href;
}

function gatheringComplete(pc, ms) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      pc.removeEventListener('icecandidate', onCandidate);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    const onCandidate = (e) => { if (!e.candidate) done(); };
    // The gateway advertises reachable addresses; our own candidates are optional (its ICE
    // learns our address from our checks), so a slow gathering is cut short.
    const timer = setTimeout(done, ms);
    pc.addEventListener('icegatheringstatechange', check);
    pc.addEventListener('icecandidate', onCandidate);
  });
}

/**
 * connect opens a data channel to the gateway: hello (with the stored token unless token is
 * given; none under open enrollment), offer with gathered candidates, answer, then the
 * channel. Resolves to a Gateway; rejects with a GatewayError whose reason is the gateway's
 * (unauthorized, revoked, bad_request, busy) or timeout/closed/unreachable.
 */
export async function connect({
  token = (storedCredentials() || {}).token,
  base = globalThis.location.href,
  timeout = DEFAULT_TIMEOUT,
  store = true,
  maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE,
  rtcConfig = {},
} = {}) {
  const ws = new WebSocket(signalURL(base));
  const pc = new RTCPeerConnection({iceServers: [], ...rtcConfig});
  const dc = pc.createDataChannel(CHANNEL_LABEL, {ordered: true});
  dc.binaryType = 'arraybuffer';
  let welcome = null;
  let timer = null;
  let settled = false;
  let answered = false;

  const cleanup = () => {
    clearTimeout(timer);
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try { ws.close(); } catch { /* already closed */ }
  };
  const fail = (err) => {
    cleanup();
    try { dc.close(); } catch { /* not open */ }
    pc.close();
    return err;
  };

  let rejectOpen;
  const opened = new Promise((resolve, reject) => {
    const reject1 = (err) => {
      if (settled) return;
      settled = true;
      reject(fail(err));
    };
    rejectOpen = reject1;
    timer = setTimeout(() => reject1(new GatewayError('the gateway did not open a channel in time', {status: 504, reason: 'timeout'})), timeout);
    ws.onerror = () => reject1(new GatewayError('cannot reach the gateway', {status: 0, reason: 'unreachable'}));
    ws.onclose = (e) => {
      // The gateway closes the socket normally once its side of the channel is open, which
      // may be a moment before ours: then wait for the channel (or the timer).
      if (e.code === 1000 && answered) return;
      if (dc.readyState !== 'open') {
        reject1(new GatewayError(`the gateway closed the signaling socket${e.reason ? ': ' + e.reason : ''}`, {status: 503, reason: 'closed'}));
      }
    };
    ws.onmessage = async (e) => {
      let m;
      try {
        m = JSON.parse(e.data);
      } catch {
        reject1(new GatewayError('the gateway sent a malformed signaling message', {status: 502, reason: 'bad_response'}));
        return;
      }
      switch (m.type) {
        case 'welcome':
          welcome = m;
          if (m.token && store) storeCredentials(m);
          break;
        case 'answer':
          answered = true;
          try {
            await pc.setRemoteDescription({type: 'answer', sdp: m.sdp});
          } catch (err) {
            reject1(new GatewayError(`the gateway's answer was refused: ${err.message}`, {status: 502, reason: 'bad_response'}));
          }
          break;
        case 'error':
          reject1(new GatewayError(m.message || m.reason, {status: m.reason === 'busy' ? 503 : m.reason === 'bad_request' ? 400 : 401, reason: m.reason}));
          break;
        default:
          break; // unknown types are ignored, for forward compatibility
      }
    };
    dc.onopen = () => {
      if (settled) return;
      settled = true;
      cleanup(); // the gateway closes its side too
      resolve();
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed') {
        reject1(new GatewayError('the connection to the gateway failed (is UDP or TCP to its WebRTC port blocked?)', {status: 503, reason: 'unreachable'}));
      }
    };
  });

  // The setup steps race the outcome: once the gateway refuses (or the timer fires), the
  // connection is closed and a pending createOffer or setLocalDescription never settles.
  const setup = (async () => {
    await new Promise((resolve, reject) => {
      if (ws.readyState === WebSocket.OPEN) { resolve(); return; }
      ws.addEventListener('open', resolve, {once: true});
      ws.addEventListener('close', () => reject(new GatewayError('cannot reach the gateway', {status: 0, reason: 'unreachable'})), {once: true});
    });
    ws.send(JSON.stringify(token ? {type: 'hello', token} : {type: 'hello'}));
    await pc.setLocalDescription(await pc.createOffer());
    await gatheringComplete(pc, GATHER_TIMEOUT);
    if (!settled) ws.send(JSON.stringify({type: 'offer', sdp: pc.localDescription.sdp}));
  })().catch((err) => {
    rejectOpen(err instanceof GatewayError ? err : new GatewayError(err.message, {status: 0, reason: 'unreachable'}));
  });
  await Promise.race([setup.then(() => opened), opened]);
  return new Gateway(pc, dc, welcome || {}, {maxMessageSize});
}

// ---------------------------------------------------------------------------------------------
// The connection

/**
 * Gateway is an open data channel to the gateway. Methods mirror jIO's storage API and
 * return promises of the result; failures reject with a GatewayError. Events: 'changed'
 * and 'status' (detail: the params), 'notification' (detail: {method, params}), 'rpcerror'
 * (an error reply no request can claim), 'close' (detail: {reason}).
 */
export class Gateway extends EventTarget {
  constructor(pc, dc, welcome, {maxMessageSize = DEFAULT_MAX_MESSAGE_SIZE} = {}) {
    super();
    this.peer = welcome.peer || '';
    this.role = welcome.role || '';
    this.token = welcome.token || '';
    this.maxMessageSize = maxMessageSize;
    this._pc = pc;
    this._dc = dc;
    this._nextID = 1;
    this._pending = new Map(); // id → {resolve, reject, timer}
    this._sendChain = Promise.resolve();
    this._sendNum = 0; // next fragmented message number
    this._partial = new Map(); // message number → {count, parts, received, bytes}
    this._closed = false;
    this.lastReceived = Date.now(); // ms since the epoch of the last message from the gateway
    this._encoder = new TextEncoder();
    this._decoder = new TextDecoder('utf-8', {fatal: false});
    dc.bufferedAmountLowThreshold = LOW_WATER;
    dc.onmessage = (e) => this._receive(e.data);
    dc.onclose = () => this._shutdown('the channel closed');
    dc.onerror = () => this._shutdown('the channel failed');
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'failed' || pc.connectionState === 'closed') this._shutdown('the connection ' + pc.connectionState);
    };
  }

  /** open reports whether the channel can carry calls. */
  get open() {
    return !this._closed && this._dc.readyState === 'open';
  }

  /** call runs one RPC method and resolves to its result. */
  call(method, params = {}, {timeout = DEFAULT_CALL_TIMEOUT} = {}) {
    const {msg, promise} = this._request(method, params, timeout);
    this._send(JSON.stringify(msg)).catch((err) => this._settle(msg.id, null, err));
    return promise;
  }

  /** notify sends a request without an id: the gateway runs it and sends no reply. */
  notify(method, params = {}) {
    return this._send(JSON.stringify({jsonrpc: '2.0', method, params}));
  }

  /**
   * batch sends several calls in one message and resolves to one entry per call, in order:
   * {result} or {error: GatewayError}. It rejects only if the message cannot be sent.
   */
  async batch(calls, {timeout = DEFAULT_CALL_TIMEOUT} = {}) {
    if (!calls.length) return [];
    const reqs = calls.map((c) => this._request(c.method, c.params || {}, timeout));
    try {
      await this._send(JSON.stringify(reqs.map((r) => r.msg)));
    } catch (err) {
      for (const r of reqs) this._settle(r.msg.id, null, err);
    }
    return Promise.all(reqs.map((r) => r.promise.then((result) => ({result}), (error) => ({error}))));
  }

  // jIO's storage API.
  get(id) { return this.call('get', {id}); }
  post(doc, key) { return this.call('post', key === undefined ? {doc} : {doc, key}); }
  put(id, doc, key) { return this.call('put', key === undefined ? {id, doc} : {id, doc, key}); }
  remove(id, key) { return this.call('remove', key === undefined ? {id} : {id, key}); }
  action(id, transition, {comment, key} = {}) {
    const p = {id, transition};
    if (comment !== undefined) p.comment = comment;
    if (key !== undefined) p.key = key;
    return this.call('action', p);
  }
  allDocs(options = {}) { return this.call('allDocs', options); }
  sync(ids) { return this.call('sync', {ids}); }
  describe() { return this.call('describe', {}); }
  status() { return this.call('status', {}); }

  /** newKey returns a fresh write key, for a write that may have to be resent. */
  static newKey() {
    if (globalThis.crypto && crypto.randomUUID) return crypto.randomUUID();
    const b = new Uint8Array(16);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }

  /** close closes the channel; pending calls reject with reason "closed". */
  close() {
    this._shutdown('closed by the page');
  }

  _request(method, params, timeout) {
    const id = this._nextID++;
    const msg = {jsonrpc: '2.0', id, method, params};
    const promise = new Promise((resolve, reject) => {
      if (this._closed) {
        reject(new GatewayError('the connection to the gateway is closed', {status: 503, reason: 'closed'}));
        return;
      }
      const timer = timeout > 0 ? setTimeout(() => {
        this._settle(id, null, new GatewayError(`${method} took longer than ${timeout} ms`, {status: 504, reason: 'timeout'}));
      }, timeout) : null;
      this._pending.set(id, {resolve, reject, timer});
    });
    return {msg, promise};
  }

  _settle(id, result, error) {
    const p = this._pending.get(id);
    if (!p) return false;
    this._pending.delete(id);
    clearTimeout(p.timer);
    if (error) p.reject(error);
    else p.resolve(result);
    return true;
  }

  // _send queues a text message; sends keep their order, and each waits for bufferedAmount.
  _send(text) {
    const run = () => this._sendNow(text);
    const p = this._sendChain.then(run, run);
    this._sendChain = p.catch(() => {});
    return p;
  }

  async _sendNow(text) {
    if (!this.open) throw new GatewayError('the connection to the gateway is closed', {status: 503, reason: 'closed'});
    const bytes = this._encoder.encode(text);
    if (bytes.length > this.maxMessageSize) {
      throw new GatewayError(`the message is larger than ${this.maxMessageSize} bytes`, {status: 413, reason: 'too_large'});
    }
    if (bytes.length <= MAX_FRAGMENT_PAYLOAD) {
      await this._drain();
      this._dc.send(text);
      return;
    }
    const num = this._sendNum;
    this._sendNum = (this._sendNum + 1) >>> 0;
    const count = Math.ceil(bytes.length / MAX_FRAGMENT_PAYLOAD);
    for (let i = 0; i < count; i++) {
      const chunk = bytes.subarray(i * MAX_FRAGMENT_PAYLOAD, Math.min((i + 1) * MAX_FRAGMENT_PAYLOAD, bytes.length));
      const frame = new Uint8Array(FRAGMENT_HEADER_SIZE + chunk.length);
      const view = new DataView(frame.buffer);
      view.setUint32(0, num, false);
      view.setUint32(4, i, false);
      view.setUint32(8, count, false);
      frame.set(chunk, FRAGMENT_HEADER_SIZE);
      await this._drain();
      if (!this.open) throw new GatewayError('the connection to the gateway is closed', {status: 503, reason: 'closed'});
      this._dc.send(frame);
    }
  }

  _drain() {
    const dc = this._dc;
    if (dc.bufferedAmount <= HIGH_WATER) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        dc.removeEventListener('bufferedamountlow', done);
        dc.removeEventListener('close', done);
        resolve();
      };
      dc.addEventListener('bufferedamountlow', done);
      dc.addEventListener('close', done);
    });
  }

  _receive(data) {
    this.lastReceived = Date.now();
    if (typeof data === 'string') {
      this._handle(data);
      return;
    }
    const buf = data instanceof ArrayBuffer ? data : data.buffer;
    if (buf.byteLength < FRAGMENT_HEADER_SIZE + 1) {
      this._protocolError(`a binary message of ${buf.byteLength} bytes is not a fragment`);
      return;
    }
    const view = new DataView(buf);
    const num = view.getUint32(0, false);
    const index = view.getUint32(4, false);
    const count = view.getUint32(8, false);
    const payload = new Uint8Array(buf, FRAGMENT_HEADER_SIZE);
    if (count === 0 || index >= count || payload.length > MAX_FRAGMENT_PAYLOAD) {
      this._partial.delete(num);
      this._protocolError(`bad fragment header (message ${num}, fragment ${index} of ${count})`);
      return;
    }
    let m = this._partial.get(num);
    if (!m) {
      if (this._partial.size >= MAX_PARTIAL) {
        this._protocolError('too many fragmented messages at once');
        return;
      }
      m = {count, parts: new Array(count), received: 0, bytes: 0};
      this._partial.set(num, m);
    }
    if (m.count !== count || m.parts[index] !== undefined || m.bytes + payload.length > this.maxMessageSize) {
      this._partial.delete(num);
      this._protocolError(`inconsistent or oversized fragments for message ${num}`);
      return;
    }
    m.parts[index] = payload;
    m.received++;
    m.bytes += payload.length;
    if (m.received < m.count) return;
    this._partial.delete(num);
    const whole = new Uint8Array(m.bytes);
    let off = 0;
    for (const p of m.parts) {
      whole.set(p, off);
      off += p.length;
    }
    this._handle(this._decoder.decode(whole));
  }

  _handle(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      this._protocolError('the gateway sent a message that is not JSON');
      return;
    }
    for (const m of Array.isArray(msg) ? msg : [msg]) {
      if (!m || typeof m !== 'object') continue;
      if ('result' in m || 'error' in m) {
        const err = m.error ? GatewayError.fromRPC(m.error) : null;
        if (!this._settle(m.id, m.result, err) && err) {
          this.dispatchEvent(new CustomEvent('rpcerror', {detail: err}));
        }
      } else if (typeof m.method === 'string') {
        this.dispatchEvent(new CustomEvent('notification', {detail: {method: m.method, params: m.params}}));
        if (m.method === 'changed' || m.method === 'status') {
          this.dispatchEvent(new CustomEvent(m.method, {detail: m.params}));
        }
      }
    }
  }

  _protocolError(message) {
    this.dispatchEvent(new CustomEvent('rpcerror', {detail: new GatewayError(message, {status: 502, reason: 'bad_response'})}));
  }

  _shutdown(reason) {
    if (this._closed) return;
    this._closed = true;
    const err = new GatewayError(`the connection to the gateway closed: ${reason}`, {status: 503, reason: 'closed'});
    for (const id of [...this._pending.keys()]) this._settle(id, null, err);
    this._partial.clear();
    try { this._dc.close(); } catch { /* closed */ }
    try { this._pc.close(); } catch { /* closed */ }
    this.dispatchEvent(new CustomEvent('close', {detail: {reason}}));
  }
}

// ---------------------------------------------------------------------------------------------
// The session: one logical connection that outlives channel drops

/** DEFAULT_BACKOFF is the reconnection schedule: initial delay, cap and growth, in ms. */
export const DEFAULT_BACKOFF = Object.freeze({initial: 500, max: 15000, factor: 2, jitter: 0.25});
/** DEFAULT_STATUS_EVERY is how often an open session asks for status (also its heartbeat). */
export const DEFAULT_STATUS_EVERY = 10000;
/** DEFAULT_HEARTBEAT_TIMEOUT is how long a status call may take before the channel counts as dead. */
export const DEFAULT_HEARTBEAT_TIMEOUT = 15000;

// Reasons after which trying again cannot help: the token is refused.
const FINAL_REASONS = new Set(['revoked', 'unauthorized']);
// Where a session keeps its writes without a reply, so that a reload sends them again.
const WRITES_KEY = 'gateway.writes';

/**
 * Session keeps a page connected to the gateway. It connects, and when the channel drops (a
 * gateway restart, a Wi-Fi blip, a channel that stops answering) it reconnects with
 * exponential backoff and jitter. It stops for good only when the gateway refuses the token
 * (reason revoked or unauthorized); pairing again (in any tab) starts it anew.
 *
 * Reads (get, allDocs, sync, describe, status) run on the open channel and reject at once
 * with reason "disconnected" when there is none: the page shows the state and asks again on
 * the 'open' event. Writes (post, put, remove, action) always carry a write key (a fresh one
 * unless given) and are queued: they are sent in order while the channel is open, and a
 * write whose reply was lost is sent again with the same key after reconnecting, so the
 * gateway answers it with the first reply instead of applying it twice. A write's promise
 * settles with the gateway's answer, however many channels that takes.
 *
 * Events: 'state' (detail {state, error, retryAt, attempt}: state is idle, connecting, open,
 * waiting — for the next attempt at retryAt — or stopped), 'open' (detail {reconnected}),
 * 'changed' and 'status' (detail: the notification's params; status also from polling),
 * 'writes' (detail {pending}: writes without a reply yet), 'restored' (detail {method,
 * params, meta, result | error}: the reply to a write a previous page of this tab made).
 *
 * Writes without a reply are also kept in sessionStorage (the tab's own): a page reloaded
 * while one is unanswered sends it again, with its key, once connected. A write may carry
 * meta, any JSON the page wants back with the 'restored' event.
 */
export class Session extends EventTarget {
  constructor({
    base = globalThis.location.href,
    token,
    backoff = {},
    statusEvery = DEFAULT_STATUS_EVERY,
    heartbeatTimeout = DEFAULT_HEARTBEAT_TIMEOUT,
    connectTimeout = DEFAULT_TIMEOUT,
    rtcConfig = {},
    storage = globalThis.localStorage,
    persist = globalThis.sessionStorage,
  } = {}) {
    super();
    this.base = base;
    this.state = 'idle';
    this.error = null; // the GatewayError that ended the last channel or attempt
    this.retryAt = 0; // ms since the epoch of the next attempt, while waiting
    this.attempt = 0; // failed attempts since the last open channel
    this.peer = '';
    this.role = '';
    this.gateway = null; // the open Gateway, or null
    this.lastStatus = null; // the last status result or notification
    /** stats counts what happened, for the page and for tests. */
    this.stats = {opened: 0, failures: 0, drops: 0, writes: 0, resent: 0, restored: 0};
    this._token = token; // undefined: the stored credentials, read at each attempt
    this._backoff = {...DEFAULT_BACKOFF, ...backoff};
    this._statusEvery = statusEvery;
    this._heartbeatTimeout = heartbeatTimeout;
    this._connectTimeout = connectTimeout;
    this._rtcConfig = rtcConfig;
    this._storage = storage;
    this._persist = persist;
    this._writes = []; // {method, params, meta, resolve, reject, gw}: in the order they were made
    this._timer = null;
    this._statusTimer = null;
    this._statusSoon = null;
    this._closed = false;
    this._started = false;
    this._onOnline = () => this.retryNow();
    this._onVisible = () => { if (globalThis.document && document.visibilityState === 'visible') this.retryNow(); };
    this._onStorage = (e) => {
      if (e.key === STORAGE_KEY && e.newValue && this.state === 'stopped') this.retryNow(true);
    };
  }

  /** start begins connecting; it returns the session. */
  start() {
    if (this._started || this._closed) return this;
    this._started = true;
    if (globalThis.addEventListener) {
      globalThis.addEventListener('online', this._onOnline);
      globalThis.addEventListener('storage', this._onStorage);
      if (globalThis.document) document.addEventListener('visibilitychange', this._onVisible);
    }
    this._restore();
    this._connect();
    return this;
  }

  /** open reports whether a channel is open now. */
  get open() {
    return this.state === 'open' && this.gateway !== null && this.gateway.open;
  }

  /** pendingWrites is the number of writes without a reply yet (sent or waiting to be). */
  get pendingWrites() {
    return this._writes.length;
  }

  /** pendingMeta returns the meta of the writes without a reply yet, in order. */
  pendingMeta() {
    return this._writes.map((w) => w.meta);
  }

  /**
   * retryNow cuts the wait for the next attempt short (a "reconnect now" button, the browser
   * coming back online). A stopped session tries again only when force is set.
   */
  retryNow(force = false) {
    if (this._closed || !this._started) return;
    if (this.state === 'waiting' || (force && this.state === 'stopped')) {
      clearTimeout(this._timer);
      this._connect();
    }
  }

  /** close ends the session: the channel closes and writes without a reply reject. */
  close() {
    if (this._closed) return;
    this._closed = true;
    clearTimeout(this._timer);
    clearTimeout(this._statusTimer);
    clearTimeout(this._statusSoon);
    if (globalThis.removeEventListener) {
      globalThis.removeEventListener('online', this._onOnline);
      globalThis.removeEventListener('storage', this._onStorage);
      if (globalThis.document) document.removeEventListener('visibilitychange', this._onVisible);
    }
    const gw = this.gateway;
    this.gateway = null;
    if (gw) gw.close();
    const err = new GatewayError('the session is closed', {status: 503, reason: 'closed'});
    for (const w of this._writes.splice(0)) w.reject(err);
    this._emitWrites();
    this._setState('stopped', err);
  }

  // Reads: on the open channel only.

  /** call runs a read-only method on the open channel. */
  call(method, params = {}, options = {}) {
    if (!this.open) {
      return Promise.reject(new GatewayError('not connected to the gateway', {status: 503, reason: 'disconnected'}));
    }
    return this.gateway.call(method, params, options);
  }

  get(id) { return this.call('get', {id}); }
  allDocs(options = {}) { return this.call('allDocs', options); }
  sync(ids) { return this.call('sync', {ids}); }

  /** batch runs several read-only calls in one message: [{result} | {error}], in order. */
  batch(calls, options = {}) {
    if (!this.open) {
      return Promise.reject(new GatewayError('not connected to the gateway', {status: 503, reason: 'disconnected'}));
    }
    return this.gateway.batch(calls, options);
  }
  describe() { return this.call('describe', {}); }
  status() { return this.call('status', {}); }

  // Writes: keyed, queued, resent with the same key after a lost reply.

  post(doc, key = Gateway.newKey(), {meta} = {}) { return this._write('post', {doc, key}, meta); }
  put(id, doc, key = Gateway.newKey(), {meta} = {}) { return this._write('put', {id, doc, key}, meta); }
  remove(id, key = Gateway.newKey(), {meta} = {}) { return this._write('remove', {id, key}, meta); }
  action(id, transition, {comment, key = Gateway.newKey(), meta} = {}) {
    const p = {id, transition, key};
    if (comment !== undefined && comment !== '') p.comment = comment;
    return this._write('action', p, meta);
  }

  /** refreshStatus asks for status soon (after a write, say), coalescing close calls. */
  refreshStatus(delay = 150) {
    if (this._statusSoon !== null || !this.open) return;
    this._statusSoon = setTimeout(() => {
      this._statusSoon = null;
      this._pollStatus(false);
    }, delay);
  }

  _write(method, params, meta) {
    return new Promise((resolve, reject) => {
      if (this._closed) {
        reject(new GatewayError('the session is closed', {status: 503, reason: 'closed'}));
        return;
      }
      const w = {method, params, meta: meta === undefined ? null : meta, resolve, reject, gw: null};
      this._writes.push(w);
      this.stats.writes++;
      this._emitWrites();
      if (this.open) this._send(w, this.gateway);
    });
  }

  // _restore queues the writes a previous page of this tab left without a reply.
  _restore() {
    let list = [];
    try {
      list = JSON.parse(this._persist && this._persist.getItem(WRITES_KEY)) || [];
    } catch {
      list = [];
    }
    for (const r of Array.isArray(list) ? list : []) {
      if (!r || typeof r.method !== 'string' || !r.params || typeof r.params.key !== 'string') continue;
      const detail = {method: r.method, params: r.params, meta: r.meta === undefined ? null : r.meta};
      this._writes.push({
        ...detail,
        gw: null,
        resolve: (result) => this.dispatchEvent(new CustomEvent('restored', {detail: {...detail, result}})),
        reject: (error) => this.dispatchEvent(new CustomEvent('restored', {detail: {...detail, error}})),
      });
      this.stats.restored++;
    }
    if (this._writes.length) this._emitWrites();
  }

  _keep() {
    if (!this._persist) return;
    try {
      if (this._writes.length) {
        this._persist.setItem(WRITES_KEY, JSON.stringify(this._writes.map((w) => ({method: w.method, params: w.params, meta: w.meta}))));
      } else {
        this._persist.removeItem(WRITES_KEY);
      }
    } catch {
      // Storage full or refused: the writes are still sent while this page lives.
    }
  }

  _send(w, gw) {
    if (w.gw !== null) this.stats.resent++;
    w.gw = gw;
    // No call timeout: a write waits for its reply as long as the channel lives; when the
    // channel dies the write is resent on the next one.
    gw.call(w.method, w.params, {timeout: 0}).then((result) => {
      this._done(w);
      w.resolve(result);
      this.refreshStatus();
    }, (err) => {
      if (w.gw !== gw) return; // already resent on a newer channel
      if (err.reason === 'closed' && !this._closed) {
        w.gw = gw; // sent (perhaps applied) on a channel that is gone: resend after reconnecting
        return;
      }
      if (err.reason === 'busy' && !this._closed) {
        // The gateway's database is busy (an import holds it) and stored nothing: send the
        // same write, same key, again soon, backing off to 8 s. A reconnect resends it anyway.
        w.busyDelay = Math.min((w.busyDelay || 500) * 2, 8000);
        setTimeout(() => { if (w.gw === gw && this.open && this._writes.includes(w)) this._send(w, this.gateway); }, w.busyDelay);
        return;
      }
      this._done(w);
      w.reject(err);
    });
  }

  _done(w) {
    const i = this._writes.indexOf(w);
    if (i >= 0) this._writes.splice(i, 1);
    this._emitWrites();
  }

  _emitWrites() {
    this._keep();
    this.dispatchEvent(new CustomEvent('writes', {detail: {pending: this._writes.length}}));
  }

  _setState(state, error = this.error) {
    this.state = state;
    this.error = error;
    this.dispatchEvent(new CustomEvent('state', {detail: {state, error, retryAt: this.retryAt, attempt: this.attempt}}));
  }

  async _connect() {
    if (this._closed) return;
    clearTimeout(this._timer);
    this.retryAt = 0;
    this._setState('connecting');
    let gw;
    try {
      const opts = {base: this.base, timeout: this._connectTimeout, rtcConfig: this._rtcConfig};
      if (this._token !== undefined) opts.token = this._token;
      else opts.token = (storedCredentials(this._storage) || {}).token;
      gw = await connect(opts);
    } catch (e) {
      if (this._closed) return;
      const err = e instanceof GatewayError ? e : new GatewayError(String(e && e.message), {status: 0, reason: 'unreachable'});
      this.stats.failures++;
      if (FINAL_REASONS.has(err.reason)) {
        this.retryAt = 0;
        // Writes that cannot be sent under this token fail now rather than wait forever.
        for (const w of this._writes.splice(0)) w.reject(err);
        this._emitWrites();
        this._setState('stopped', err);
        return;
      }
      this._wait(err);
      return;
    }
    if (this._closed) {
      gw.close();
      return;
    }
    const reconnected = this.stats.opened > 0;
    this.stats.opened++;
    this.gateway = gw;
    this.peer = gw.peer;
    this.role = gw.role;
    this.attempt = 0;
    gw.addEventListener('changed', (e) => this.dispatchEvent(new CustomEvent('changed', {detail: e.detail})));
    gw.addEventListener('status', (e) => this._status(e.detail));
    gw.addEventListener('close', (e) => this._dropped(gw, e.detail.reason));
    if (!gw.open) {
      this._dropped(gw, 'the channel closed at once');
      return;
    }
    this._setState('open', null);
    // Writes made while disconnected, and writes whose reply the last channel lost, go out
    // in the order they were made; the gateway runs one channel's writes in arrival order.
    for (const w of this._writes) this._send(w, gw);
    this.dispatchEvent(new CustomEvent('open', {detail: {reconnected}}));
    this._pollStatus(true);
  }

  _wait(err) {
    const b = this._backoff;
    const base = Math.min(b.max, b.initial * Math.pow(b.factor, this.attempt));
    const delay = Math.max(50, Math.round(base * (1 + b.jitter * (2 * Math.random() - 1))));
    this.attempt++;
    this.retryAt = Date.now() + delay;
    this._timer = setTimeout(() => this._connect(), delay);
    this._setState('waiting', err);
  }

  _dropped(gw, reason) {
    if (this.gateway !== gw) return;
    this.gateway = null;
    clearTimeout(this._statusTimer);
    if (this._closed) return;
    this.stats.drops++;
    this._wait(new GatewayError(`the connection to the gateway closed: ${reason}`, {status: 503, reason: 'closed'}));
  }

  _status(st) {
    this.lastStatus = st;
    this.dispatchEvent(new CustomEvent('status', {detail: st}));
  }

  // _pollStatus asks for status; a channel that does not answer within the heartbeat
  // timeout is closed, so that a dead link is noticed before the browser's own ICE timeout.
  async _pollStatus(schedule) {
    const gw = this.gateway;
    if (!gw || !gw.open) return;
    if (schedule) {
      clearTimeout(this._statusTimer);
      this._statusTimer = setTimeout(() => this._pollStatus(true), this._statusEvery);
    }
    try {
      this._status(await gw.call('status', {}, {timeout: this._heartbeatTimeout}));
    } catch (err) {
      // Silence for a whole heartbeat: the channel is dead (the browser's own ICE timeout
      // takes longer). Other failures (rate limited, closed) pass: the next poll tries again.
      if (err.reason === 'timeout' && this.gateway === gw && Date.now() - gw.lastReceived >= this._heartbeatTimeout) gw.close();
    }
  }
}
