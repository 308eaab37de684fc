// gateway.js — the browser's client of the site gateway (DESIGN §3).
//
// Pairing:   const creds = await pair(codeFromLocation());          // POST /api/pair, stores the token
// Connecting: const gw = await connect();                           // WebSocket hello/offer/answer, then the data channel
// Calling:   const doc = await gw.get('person_module/1');           // JSON-RPC 2.0 over the channel
//            const rows = await gw.allDocs({query: 'portal_type:"Person"', limit: [0, 20]});
//            const [a, b] = await gw.batch([{method: 'get', params: {id: 'x'}}, {method: 'status'}]);
// Events:    gw.addEventListener('changed', e => e.detail.ids);      // also 'status', 'notification', 'close'
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
