// pkg/ is an installable npm package: `npm pack` it, install the tarball into an empty project
// and run the README's three lines there, as a user would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { here } from './helpers.mjs';

test('the packed package installs and runs the README lines', { timeout: 300_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'emotions-wasm-user-'));
  execFileSync('npm', ['pack', '--silent', '--pack-destination', dir, join(here, '..', 'pkg')], { stdio: 'pipe' });
  const [tarball] = readdirSync(dir).filter((f) => f.endsWith('.tgz'));
  assert.match(tarball, /^emotions-wasm-\d+\.\d+\.\d+\.tgz$/);
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'user', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--offline', join(dir, tarball)], { cwd: dir, stdio: 'pipe' });
  writeFileSync(join(dir, 'main.js'), [
    "import { Classifier } from 'emotions-wasm';",
    'const clf = await Classifier.create();',
    "console.log(clf.classify(['Thank you so much!'])[0].labels);",
  ].join('\n') + '\n');
  const out = execFileSync(process.execPath, ['main.js'], { cwd: dir, encoding: 'utf8' });
  assert.equal(out, "[ 'gratitude' ]\n");
});
