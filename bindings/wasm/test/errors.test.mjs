// Bad input is an Error with a message that names it, never a trap or a crash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadPackage, root } from './helpers.mjs';

const { Classifier } = await loadPackage();
const clf = await Classifier.create();
const bin = process.env.EMOTIONS_BIN ?? join(root, 'target', 'release', 'emotions');

test('texts that are not strings', () => {
  assert.throws(() => clf.classify(42), { name: 'TypeError', message: 'texts: expected a string or an array of strings, found number' });
  assert.throws(() => clf.embed(['ok', 7]), { name: 'TypeError', message: 'texts[1]: expected a string, found number' });
  assert.throws(() => clf.classify([null]), { message: 'texts[0]: expected a string, found null' });
});

test('an empty list', () => {
  assert.throws(() => clf.classify([]), { message: 'texts: expected at least one text, found an empty array' });
});

test('one string is one text', () => {
  const [one] = clf.classify('Thank you so much!');
  assert.deepEqual(one.labels, ['gratitude']);
  assert.equal(clf.embed('Thank you so much!').length, 1);
});

test('a broken head: the message the CLI prints', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'emotions-wasm-'));
  const broken = Buffer.from('this is not an ONNX file');
  const path = join(dir, 'head.onnx');
  writeFileSync(path, broken);
  let cliMessage;
  try {
    execFileSync(bin, ['classify', '--model', path, '--text', 'hi'], { encoding: 'utf8', stdio: 'pipe' });
    assert.fail('the CLI took a broken head');
  } catch (e) {
    cliMessage = e.stderr.trim();
  }
  await assert.rejects(Classifier.create({ head: new Uint8Array(broken) }), (e) => {
    assert.ok(e instanceof Error);
    // The CLI names the file; from bytes the origin is "<head bytes>". The rest is the same.
    const ours = e.message.replaceAll('<head bytes>', path);
    assert.ok(cliMessage.includes(ours), `CLI: ${cliMessage}\nwasm: ${e.message}`);
    return true;
  });
});

test('thresholds that are not thresholds', async () => {
  await assert.rejects(Classifier.create({ thresholds: { gratitude: 0.5 } }),
    { message: "thresholds: label 'admiration' is missing" });
  const outOfRange = Object.fromEntries(clf.labels.map((l) => [l, l === 'gratitude' ? 2 : 0.5]));
  await assert.rejects(Classifier.create({ thresholds: outOfRange }), (e) => {
    assert.ok(e instanceof Error);
    assert.match(e.message, /gratitude/);
    return true;
  });
  await assert.rejects(Classifier.create({ head: 'head.onnx' }),
    { name: 'TypeError', message: 'options.head: expected a Uint8Array or ArrayBuffer, found string' });
  await assert.rejects(Classifier.create({ nope: 1 }), { message: /options\.nope: unknown option/ });
});

test('the classifier still works after errors', () => {
  assert.deepEqual(clf.classify(['Thank you so much!'])[0].labels, ['gratitude']);
  assert.equal(clf.labels.length, 28);
});

test('a precision that is not one', async () => {
  await assert.rejects(Classifier.create({ precision: 'int4' }), { message: `precision: expected 'int16', 'int8' or 'f32', found "int4"` });
  await assert.rejects(Classifier.create({ precision: 16 }), { name: 'TypeError', message: "options.precision: expected 'int16', 'int8' or 'f32', found number" });
});
