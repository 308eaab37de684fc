// firefox.mjs — the sale-order story in Debian's firefox-esr, driven over WebDriver BiDi by
// puppeteer-core (no extra driver). Run by firefox_test.go, which starts the gateway and the
// ERP5 double and checks the double afterwards. The story's steps are steps.js, the same the
// Chromium test runs. Input: STORY_CONFIG (JSON: firefox, invite, steps, shots, plan,
// control); output: one JSON object on stdout with what the page showed.
import fs from 'node:fs';
import path from 'node:path';
import puppeteer from 'puppeteer-core';

const cfg = JSON.parse(process.env.STORY_CONFIG || '{}');
const plan = cfg.plan;
const steps = fs.readFileSync(cfg.steps, 'utf8');
const out = {problems: [], shots: []};

const browser = await puppeteer.launch({
  browser: 'firefox',
  protocol: 'webDriverBiDi',
  executablePath: cfg.firefox,
  headless: true,
  userDataDir: cfg.profile,
  extraPrefsFirefox: {
    // Data channels over loopback, host candidates as they are (no mDNS names).
    'media.peerconnection.ice.loopback': true,
    'media.peerconnection.ice.obfuscate_host_addresses': false,
    'browser.shell.checkDefaultBrowser': false,
    'datareporting.policy.dataSubmissionEnabled': false,
  },
});
let page;
try {
  page = await browser.newPage();
  await page.setViewport({width: 1280, height: 860});
  page.on('pageerror', (e) => out.problems.push('uncaught: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error') out.problems.push('console.error: ' + m.text()); });
  page.setDefaultTimeout(90000);

  const call = (expr) => page.evaluate(steps + ';\nwindow.story.' + expr);
  const args = (...a) => a.map((x) => JSON.stringify(x)).join(', ');
  const shot = async (name) => {
    const file = path.join(cfg.shots, 'story-firefox-' + name + '.png');
    await page.screenshot({path: file});
    out.shots.push(file);
  };
  const control = async (what, body) => {
    const res = await fetch(cfg.control + '/' + what, {method: 'POST', body: JSON.stringify(body || {})});
    if (!res.ok) throw new Error(`control ${what}: ${res.status} ${await res.text()}`);
    return res.json();
  };

  await page.goto(cfg.invite);
  await call('paired()');
  out.form = await call(`newOrder(${args(plan.title)})`);
  out.customerSuggestions = await call(`pickStart(${args('.doc-form [data-field=destination]', plan.customerPart, plan.customerID)})`);
  out.customerTitle = await call(`pickChoose(${args('.doc-form [data-field=destination]', plan.customerID)})`);
  out.date = await call(`setDate(${args(plan.day)})`);
  await shot('1-new-order');
  out.id = await call('create()');
  for (const l of plan.lines) {
    await call(`addLineStart(${args(l.productPart, l.productID)})`);
    await call(`addLineFinish(${args(l.productID, l.quantity)})`);
  }
  out.lines = await call('lines(3)');
  await shot('2-order-lines');
  out.draft = await call(plan.stock ? "workflowNote('receiver')" : 'workflow()');
  if (!plan.stock) {
    out.afterConfirm = await call("act('Confirm')");
    const {id} = await control('confirmed', {title: plan.title});
    out.orderID = id;
    await call(`open(${args(id)})`);
    out.confirmed = await call("waitState('Confirmed')");
    await shot('3-confirmed');
    // A field relabelled at head office shows its new label after a refresh.
    await control('relabel', {field: plan.relabel.field, title: plan.relabel.title});
    await page.reload();
    await call('paired()');
    await call(`open(${args(id)})`);
    out.relabelled = await page.evaluate(steps + `;\nwindow.story.wait('the new label', () => document.querySelector('.doc-form [data-field="${plan.relabel.field}"] label')?.innerText.startsWith(${JSON.stringify(plan.relabel.title)}), 60000).then(() => window.story.label(${JSON.stringify(plan.relabel.field)}))`);
  }
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e);
  try {
    out.page = await page.evaluate(() => location.href + '\n' + document.querySelector('main')?.innerText.slice(0, 1500));
  } catch {
    // the page is gone
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + '\n');
