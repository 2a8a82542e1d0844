// The demo page in a real browser: Debian's Chromium (CHROMIUM, default /usr/bin/chromium),
// driven by playwright-core, loads the page from the demo server on loopback, types a text and
// finds "gratitude" predicted; the screenshot goes to target/wasm-demo.png.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { here, root } from './helpers.mjs';

const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** Starts `npm run demo`'s server on a free port; resolves to [url, process]. */
function startDemo() {
  const server = spawn(process.execPath, [join(here, '..', 'scripts', 'demo.mjs'), '--port', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    server.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/http:\/\/127\.0\.0\.1:\d+\//);
      if (m) resolve([m[0], server]);
    });
    server.on('exit', (code) => reject(new Error(`demo server exited with ${code}: ${out}`)));
  });
}

test('the demo page classifies in Chromium', { timeout: 180_000 }, async () => {
  const [url, server] = await startDemo();
  const browser = await chromium.launch({
    executablePath,
    args: ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
      '--disable-default-apps', '--disable-sync', '--no-first-run', '--disable-gpu'],
  });
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.waitForSelector('#classify:not([disabled])', { timeout: 120_000 });
    await page.fill('#text', 'Thank you so much!');
    await page.click('#classify');
    await page.waitForSelector('#bars li.predicted');
    const predicted = await page.$$eval('#bars li.predicted', (lis) => lis.map((li) => li.dataset.label));
    const bars = await page.$$eval('#bars li', (lis) => lis.length);
    const status = await page.textContent('#status');
    mkdirSync(join(root, 'target'), { recursive: true });
    await page.screenshot({ path: join(root, 'target', 'wasm-demo.png'), fullPage: true });
    assert.deepEqual(errors, []);
    assert.equal(bars, 28);
    assert.ok(predicted.includes('gratitude'), `predicted: ${predicted}`);
    assert.match(status, /model loaded in \d+ ms .* this text: [\d.]+ ms/);
    console.log(`browser: ${status}; predicted ${predicted.join(', ')}`);
  } finally {
    await browser.close();
    server.kill();
  }
});
