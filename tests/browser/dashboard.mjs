// Drives the Vigil dashboard in Debian's chromium with playwright-core:
// signs in through the form, checks the overview (tiles, a drawn chart, a
// value that changes over the live WebSocket without a reload), acknowledges
// an alert, opens every page and saves a screenshot of each. Any console
// error or page error fails the run.
//
// Environment: VIGIL_URL (http://127.0.0.1:PORT), VIGIL_USER, VIGIL_PASSWORD,
// VIGIL_ALERT (the alert to acknowledge), SCREENSHOT_DIR.
// Run by tests/tests/dashboard_browser.rs; see docs/dashboard.md.
import { chromium } from 'playwright-core';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const base = process.env.VIGIL_URL;
const user = process.env.VIGIL_USER;
const password = process.env.VIGIL_PASSWORD;
const alertName = process.env.VIGIL_ALERT;
const shots = process.env.SCREENSHOT_DIR;
if (!base || !user || !password || !alertName || !shots) {
  console.error('set VIGIL_URL, VIGIL_USER, VIGIL_PASSWORD, VIGIL_ALERT and SCREENSHOT_DIR');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });

const problems = [];
const step = (s) => console.log(`browser: ${s}`);
const profile = mkdtempSync(join(tmpdir(), 'vigil-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--no-first-run'],
  viewport: { width: 1280, height: 900 },
});

async function check(what, fn) {
  try { await fn(); } catch (e) { problems.push(`${what}: ${e.message.split('\n')[0]}`); }
}

try {
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(15000);
  page.on('console', (m) => { if (m.type() === 'error') { problems.push(`console error on ${page.url()}: ${m.text()}`); } });
  page.on('pageerror', (e) => problems.push(`page error on ${page.url()}: ${e.message}`));
  page.on('response', (r) => { if (r.status() >= 500) { problems.push(`${r.status()} for ${r.url()}`); } });

  // Signed out: the overview sends us to the login form.
  step('sign in');
  await page.goto(`${base}/`);
  if (!page.url().startsWith(`${base}/login`)) { throw new Error(`expected the login page, got ${page.url()}`); }
  await page.screenshot({ path: join(shots, '00-login.png'), fullPage: true });
  await page.fill('#login-form input[name="username"]', user);
  await page.fill('#login-form input[name="password"]', password);
  await Promise.all([page.waitForURL(`${base}/`), page.click('#login-submit')]);

  step('overview: tiles and charts');
  await page.waitForSelector('#tile-system');
  const system = (await page.textContent('#tile-system .status-word')).trim();
  if (system === 'No data') { problems.push('the system tile has no data'); }
  await page.waitForFunction(() => {
    const c = document.querySelector('#metric-cpu .chart');
    return c && c.querySelector('canvas') && Number(c.getAttribute('data-points')) > 0;
  }, null, { timeout: 10000 }).catch(() => problems.push('no CPU chart with data was drawn within 10 s'));
  await page.waitForSelector('#live-state.live');

  step('overview: reconnect backoff and formatting');
  const helpers = await page.evaluate(() => {
    const b = (n) => Array.from({ length: 50 }, () => window.Vigil.backoff(n));
    return {
      first: [Math.min(...b(0)), Math.max(...b(0))],
      third: [Math.min(...b(2)), Math.max(...b(2))],
      capped: Math.max(...b(40)),
      fmt: [window.Vigil.fmt(0.1234, 'percent'), window.Vigil.fmt(0.25, 'seconds'), window.Vigil.fmt(3 * 1048576, 'bytes'), window.Vigil.fmt(null, 'plain')],
    };
  });
  if (helpers.first[0] < 800 || helpers.first[1] > 1200) { problems.push(`backoff(0) out of 0.8-1.2 s: ${helpers.first}`); }
  if (helpers.third[0] < 3200 || helpers.third[1] > 4800) { problems.push(`backoff(2) out of 3.2-4.8 s: ${helpers.third}`); }
  if (helpers.capped > 36000) { problems.push(`backoff not capped at 30 s (+20 %): ${helpers.capped}`); }
  if (helpers.fmt.join('|') !== '12.3%|250.0 ms|3.0 MiB|—') { problems.push(`fmt: ${helpers.fmt.join('|')}`); }

  step('overview: a value changes over the WebSocket');
  await page.evaluate(() => { window.__vigilNoReload = true; });
  const values = () => page.$$eval('.metric-value', (els) => els.map((e) => e.textContent));
  const before = await values();
  const changed = await page.waitForFunction((b) => {
    const now = Array.from(document.querySelectorAll('.metric-value')).map((e) => e.textContent);
    return now.some((v, i) => v !== b[i]);
  }, before, { timeout: 10000 }).then(() => true).catch(() => false);
  if (!changed) { problems.push(`no key metric changed within 10 s: ${before.join(' | ')}`); }
  if (!(await page.evaluate(() => window.__vigilNoReload === true))) { problems.push('the page reloaded'); }
  await page.screenshot({ path: join(shots, '01-overview.png'), fullPage: true });

  step('acknowledge an alert');
  const row = page.locator('tr.alert-row', { has: page.locator('.alert-name', { hasText: alertName }) }).first();
  await row.waitFor();
  await Promise.all([page.waitForURL(`${base}/`), row.locator('.ack-button').click()]);
  const acked = page.locator('tr.alert-row', { has: page.locator('.alert-name', { hasText: alertName }) }).first();
  await check('acknowledged alert', async () => {
    const text = await acked.locator('.ack').textContent();
    if (!text.includes(`acknowledged by ${user}`)) { throw new Error(text); }
  });

  step('every page');
  const visit = async (name, path, selector) => {
    await page.goto(`${base}${path}`);
    await check(name, () => page.waitForSelector(selector, { timeout: 10000 }));
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  };
  await visit('02-hosts', '/hosts', 'table.hosts a.host-link');
  const hostHref = await page.getAttribute('table.hosts a.host-link', 'href');
  await visit('03-host', `${hostHref}?range=15m`, '#metric-cpu .chart canvas');
  await visit('04-host-24h', `${hostHref}?range=24h`, '#metric-cpu .chart canvas');
  await visit('05-models', '/models', 'table.models');
  const modelHref = await page.getAttribute('table.models a', 'href').catch(() => null);
  if (modelHref) { await visit('06-model', modelHref, '.compare-table'); } else { problems.push('no model listed'); }
  await visit('07-alerts', '/alerts', '#history');
  const silence = await page.getAttribute('tr.alert-row a[href$="/silence"]', 'href').catch(() => null);
  if (silence) { await visit('08-silence', silence, '#silence-submit'); } else { problems.push('no silence button'); }
  await visit('09-rules', '/rules', 'table.rules');
  await visit('10-explore', `/explore?q=${encodeURIComponent('sum by (host) (system_cpu_usage_ratio)')}&range=15m`, '.explore-chart canvas');
  await visit('11-admin', '/admin', 'table.tokens, .settings');

  step('dark theme and a phone');
  await page.goto(`${base}/`);
  await page.click('#theme-toggle');
  await page.waitForSelector('#metric-cpu .chart canvas');
  await page.screenshot({ path: join(shots, '12-overview-dark.png'), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${base}/`);
  await page.waitForSelector('#metric-cpu .chart canvas');
  await page.screenshot({ path: join(shots, '13-overview-phone.png'), fullPage: true });
  // Keyboard: the skip link is the first stop.
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => document.activeElement && document.activeElement.className);
  if (focused !== 'skip') { problems.push(`first Tab stop is ${focused}, not the skip link`); }
} catch (e) {
  problems.push(`run failed: ${e.message}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

if (problems.length) {
  console.error(`browser test failed:\n- ${problems.join('\n- ')}`);
  process.exit(1);
}
step(`ok; screenshots in ${shots}`);
