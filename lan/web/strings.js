// strings.js — every text the site web app shows, in one place, so that a site can translate
// it: copy this file, translate the values (keep the {placeholders}), set `lang`, and serve
// it in place of this one. Values are strings with {name} placeholders, or functions of the
// parameters where a language needs a rule (plurals).
//
// Messages the gateway itself sends (a refusal's reason, a validation message the policy does
// not name below) are shown as they come, after the translated text that introduces them.

/** lang is the language of these strings (the page's lang attribute, dates and numbers). */
export const lang = 'en';

/** timeFormat shows a time of day (Intl.DateTimeFormat options). */
export const timeFormat = {hour: '2-digit', minute: '2-digit', hourCycle: 'h23'};

import {humanLabel} from '/erp5.js';

const n = (count, one, other) => (count === 1 ? one : other).replace('{n}', String(count));

/** messages are the app's texts by key. */
export const messages = {
  appName: 'Site gateway',
  skipToContent: 'Skip to main content',
  home: 'Home',
  breadcrumb: 'You are here',
  loading: 'Loading…',
  close: 'Dismiss',

  // Pairing.
  pairing: 'Pairing this browser…',
  paired: 'This browser is now paired as “{peer}” (role {role}).',
  pairNoCode: 'This link has no pairing code. Ask the gateway operator for a new invite.',
  pairFailed: 'Pairing failed: {message}',
  pairReasons: {
    unauthorized: 'this invite link is not valid. Ask the gateway operator for a new one.',
    used: 'this invite link was already used. Ask the gateway operator for a new one.',
    expired: 'this invite link has expired. Ask the gateway operator for a new one.',
    rate_limited: 'too many attempts. Wait a minute, then open the link again.',
    unreachable: 'the gateway cannot be reached. Check the Wi-Fi, then open the link again.',
  },

  // Connection (the status bar's first item and the banner under the header).
  connecting: 'Connecting…',
  connected: 'Connected as {peer} ({role}).',
  reconnectingIn: ({seconds}) => `Connection lost. Reconnecting in ${seconds} s…`,
  reconnecting: 'Connection lost. Reconnecting…',
  revoked: 'This browser’s access has been revoked. Ask the gateway operator for a new invite link.',
  unpaired: 'This browser is not paired. Open the pairing link the gateway operator gave you.',
  retryNow: 'Reconnect now',
  offlineBanner: 'Not connected to the gateway. What you type stays here, and your changes are sent when the connection returns.',
  unsentWrites: ({count}) => n(count, '{n} change from this page is waiting for the gateway.', '{n} changes from this page are waiting for the gateway.'),
  leaveWithUnsent: 'Some changes have not reached the gateway yet. Leave anyway?',

  // Status bar.
  statusLabel: 'Gateway status',
  channel: 'Data channel',
  channelUp: 'open',
  channelDown: 'closed',
  link: 'Head office link',
  linkStates: {up: 'up', degraded: 'slow', down: 'down', unknown: 'unknown'},
  linkSince: '{state} since {time}',
  linkNextTry: 'retry {time}',
  uplink: 'To upload',
  uplinkNothing: 'nothing waiting',
  lastKnown: '{value} (last known)',
  uplinkWaiting: ({count}) => n(count, '{n} change', '{n} changes'),
  uplinkRejected: ({count}) => `${count} rejected`,
  uplinkConflicts: ({count}) => n(count, '{n} conflict', '{n} conflicts'),
  freshness: 'Head office data',
  freshNever: 'not received yet',
  freshAt: 'as of {time}',

  // Home.
  homeTitle: 'What do you want to work on?',
  homeEmpty: 'Your role may not use any document type. Ask the gateway operator.',
  homeCount: ({count}) => n(count, '{n} document', '{n} documents'),
  homeOpen: 'Open the list of {type}',
  canRead: 'view',
  canCreate: 'create',
  canEdit: 'edit',
  canAct: 'workflow',

  // Lists.
  search: 'Search',
  searchHint: 'Words to find, or a query such as title:"%Lima%" AND email:"%@example.org"',
  searchButton: 'Search',
  clearSearch: 'Clear',
  searchIn: 'Search in',
  anyValue: 'Any',
  anyField: 'All fields',
  sortBy: 'Sort by',
  ascending: 'A → Z',
  descending: 'Z → A',
  sortOption: '{field}, {order}',
  pageSize: 'Per page',
  pages: 'Pages',
  previous: 'Previous',
  next: 'Next',
  pageOf: 'Page {page} of {pages}',
  showing: ({from, to, total}) => (total === 0 ? 'No matches' : `${from}–${to} of ${total}`),
  listFresh: 'head office data {time}',
  noneYet: 'No {type} yet.',
  notReached: 'Head office (ERP5) has not been reached yet: {type} will appear here after the first exchange with it.',
  noneMatch: 'Nothing matches this search.',
  newDoc: 'New {type}',
  listError: 'The list could not be loaded: {message}',
  queryError: 'This search cannot be understood: {message}',
  updated: 'The list was updated.',
  headOffice: 'Head office',
  keyboardHint: 'Press / to search, N for a new document.',

  // Sync states of a document (the sync method).
  syncStates: {
    synced: 'At head office',
    pending: 'Waiting to upload',
    dead: 'Rejected',
    conflict: 'In conflict',
  },
  syncExplain: {
    synced: 'Head office has every change made here.',
    pending: 'Saved on the site gateway; waiting to be uploaded to head office.',
    pendingLinkDown: 'Saved on the site gateway; it will be uploaded when the link to head office is back.',
    dead: 'Head office rejected the last change: {reason}. The gateway operator can correct and retry it.',
    conflict: 'Head office changed the same field at the same time. The gateway operator must choose which value to keep.',
  },
  entry: 'outbox entry {seq}',
  localId: 'Head office has not given this document its number yet.',

  // Forms.
  required: 'required',
  readOnly: 'read-only',
  save: 'Save',
  create: 'Create',
  cancel: 'Back to the list',
  saving: 'Saving…',
  savingOffline: 'Will be saved as soon as the connection returns…',
  saved: 'Saved on the site gateway.',
  created: 'Created on the site gateway.',
  nothingChanged: 'Nothing to save: no field was changed.',
  fixFields: ({count}) => n(count, 'Please correct {n} field:', 'Please correct {n} fields:'),
  saveFailed: 'Not saved: {message}',
  denied: 'Not allowed: {message}',
  restoredDraft: 'What you typed earlier was restored.',
  restoredSaved: 'A change made before the page was reloaded has reached the site gateway.',
  restoredFailed: 'A change made before the page was reloaded was not saved: {message}',
  discardDraft: 'Discard it',
  changedElsewhere: 'This document was changed elsewhere. Your edits are kept.',
  loadTheirs: 'Show the new version',
  docNotFound: 'This document does not exist on the site gateway.',
  docError: 'The document could not be loaded: {message}',
  noFields: 'There are no fields this role may see.',
  listHint: 'One value per line.',
  relationHint: 'Type part of the name, then choose from the list.',
  relationPlaceholder: 'Type to search…',
  relationNone: 'Nothing found for “{text}”.',
  relationError: 'The search failed: {message}',
  relationCount: ({count}) => n(count, '{n} suggestion', '{n} suggestions'),
  openRelated: 'Open',
  percentHint: 'In percent.',
  patternHint: 'Must match the pattern {pattern}.',
  maxLengthHint: 'At most {n} characters.',
  patterns: {
    '^[^@\\s]+@[^@\\s]+$': 'An email address, such as name@example.org.',
    '^[A-Za-z0-9_.-]+$': 'Letters, digits, dots, dashes and underscores only (no spaces).',
  },
  choose: 'Choose…',
  partOf: 'Part of',
  backToParent: 'Back',
  linesAfterCreate: 'lines can be added once this is created.',
  addLine: 'Add line',
  addLineFull: 'Add a line with every field',
  lineNotAdded: 'The line was not added: {message}',
  linesTotal: 'Total',
  linesCount: ({count}) => n(count, '{n} line', '{n} lines'),
  noLines: 'No lines yet.',
  yes: 'Yes',
  no: 'No',
  none: '—',
  documentId: 'Reference on the gateway',
  typeLabel: 'Type',
  notConnectedRead: 'Not connected: this will load when the connection returns.',
  saveShortcut: 'Ctrl+S saves.',

  // Workflow actions.
  actions: 'Workflow',
  actionComment: 'Comment (optional)',
  actionDone: '“{action}” recorded on the site gateway.',
  actionFailed: '“{action}” was not recorded: {message}',
  actionRunning: 'Recording “{action}”…',
  statePending: '{state} · pending: {action}',
  transitionPending: 'Pending: {action}. Head office has not answered yet.',
  transitionRefused: 'Head office refused the last action: {message}',
  stockWorkflow: 'Workflow actions need the gateway’s receiver installed at head office, and this head office does not have it: an action chosen here would wait forever. Ask head office to run it, or to install the receiver.',
  stateUnknown: 'This document’s state ({state}) has not been seen from head office yet: no action is offered.',
  noTransitions: 'No action is available in this state.',

  // Generic error reasons (error.data.reason and the client's own).
  reasons: {
    offline: 'head office is not reachable and the site gateway does not have this data',
    denied: 'your role does not allow this',
    not_found: 'not found',
    invalid: 'some values are not valid',
    rate_limited: 'too many requests at once; try again in a moment',
    too_large: 'the document is too large',
    disk_full: 'the site gateway is out of disk space; tell the operator',
    disconnected: 'not connected to the gateway',
    closed: 'the connection to the gateway was lost',
    timeout: 'the gateway did not answer in time',
    key_reused: 'this change conflicts with an earlier one; reload the page',
    revoked: 'this browser’s access was revoked; the change may not have reached the gateway',
    unauthorized: 'this browser is not paired; the change may not have reached the gateway',
  },

  // Validation messages from the gateway's schemas, by message (or its start).
  fieldErrors: {
    'is required': '{label} is required.',
    'must be a number': '{label} must be a number.',
    'must be a whole number': '{label} must be a whole number.',
    'must be a string': '{label} must be text.',
    'must be true or false': '{label} must be yes or no.',
    'must be a date': '{label} must be a date, like 2024-05-31.',
    'must match': '{label} is not in the expected form.',
    'must be one of': '{label} must be one of the listed values.',
    'must be at most': '{label} is too long.',
    'not writable by role': 'Your role may not change {label}.',
  },
};

/** typeNames names portal types in the singular and plural; others show as they are. */
export const typeNames = {
  'Person': {one: 'person', other: 'people', title: 'People'},
  'Organisation': {one: 'organisation', other: 'organisations', title: 'Organisations'},
  'Product': {one: 'product', other: 'products', title: 'Products'},
  'Sale Order': {one: 'sale order', other: 'sale orders', title: 'Sale orders'},
  'Sale Order Line': {one: 'order line', other: 'order lines', title: 'Sale order lines'},
};

/** fieldLabels are the labels of properties that no form names; others are humanised. */
export const fieldLabels = {};

/** t returns the message for key (a dotted path) with params filled in. */
export function t(key, params = {}) {
  let v = messages;
  for (const part of key.split('.')) {
    v = v == null ? undefined : v[part];
  }
  if (typeof v === 'function') return v(params);
  if (typeof v !== 'string') return key;
  return v.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

/** has reports whether key (a dotted path) names a message. */
export function has(key) {
  let v = messages;
  for (const part of key.split('.')) {
    v = v == null ? undefined : v[part];
  }
  return typeof v === 'string' || typeof v === 'function';
}

/** fieldLabel returns a property's label when no form names it: default_email_text → Email. */
export function fieldLabel(name) {
  return fieldLabels[name] || humanLabel(name);
}

/** typeName returns a portal type's name: form one, other or title. */
export function typeName(portalType, form = 'title') {
  const names = typeNames[portalType];
  if (names && names[form]) return names[form];
  return form === 'one' ? portalType.toLowerCase() : portalType;
}

/** reasonText explains an error reason, or returns the fallback. */
export function reasonText(reason, fallback) {
  return (messages.reasons && messages.reasons[reason]) || fallback;
}

/** fieldError turns a gateway validation message into the form's message for the field. */
export function fieldError(field, message, label = fieldLabel(field)) {
  for (const [prefix, text] of Object.entries(messages.fieldErrors)) {
    if (message === prefix || message.startsWith(prefix + ' ') || message.startsWith(prefix + ',')) {
      return text.replace('{label}', label);
    }
  }
  return `${label}: ${message}`;
}

const rtf = typeof Intl !== 'undefined' && Intl.RelativeTimeFormat ? new Intl.RelativeTimeFormat(lang, {numeric: 'auto'}) : null;

/** relativeTime says how far t (a Date or time string) is from now: "5 minutes ago". */
export function relativeTime(time, now = Date.now()) {
  const d = new Date(time).getTime();
  if (!Number.isFinite(d)) return String(time);
  const s = Math.round((d - now) / 1000);
  const abs = Math.abs(s);
  if (!rtf) return new Date(d).toLocaleString(lang);
  if (abs < 45) return rtf.format(0, 'second');
  if (abs < 45 * 60) return rtf.format(Math.round(s / 60), 'minute');
  if (abs < 22 * 3600) return rtf.format(Math.round(s / 3600), 'hour');
  return rtf.format(Math.round(s / 86400), 'day');
}

/** clockTime formats a time of day: 14:05. */
export function clockTime(time) {
  const d = new Date(time);
  if (!Number.isFinite(d.getTime())) return String(time);
  return d.toLocaleTimeString(lang, timeFormat);
}

/** formatNumber formats a number for the page's language. */
export function formatNumber(x) {
  return typeof x === 'number' ? x.toLocaleString(lang) : String(x);
}
