// The package gives what the `emotions` command line gives, on the conformance texts. The
// binary is EMOTIONS_BIN (ci.sh passes the one the tests built), else target/release/emotions.
// Both precisions. The exact mode (f32) within 1e-5. The int16 mode rounds each token's
// activations to integers, so the last-bit differences between any two builds' f32 parts
// (WebAssembly's exp and erf are tract-linalg's SIMD128 ones; the CLI's are its CPU's) move
// some roundings by one step: against the CLI it is held to the mode's stated tolerance of f32
// (as against onnxruntime), with identical labels.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assertClose, fixtureTexts, flatten, loadPackage, minCosine, readNpy, root } from './helpers.mjs';

const bin = process.env.EMOTIONS_BIN ?? join(root, 'target', 'release', 'emotions');
// A text per line for the CLI: the fixture texts that hold no line break.
const texts = fixtureTexts().filter((t) => !t.includes('\n') && !t.includes('\r'));
const EMBEDDING_TOLERANCE = { f32: 1e-5, int16: 5e-4 };
const SCORE_TOLERANCE = { f32: 1e-5, int16: 1e-3 };
const MIN_COSINE = 0.99999;

const dir = mkdtempSync(join(tmpdir(), 'emotions-wasm-'));
const textsFile = join(dir, 'texts.txt');
writeFileSync(textsFile, texts.map((t) => t + '\n').join(''));
const cli = (...args) => execFileSync(bin, args, { encoding: 'utf8', maxBuffer: 1 << 28 });

const { Classifier } = await loadPackage();

test('the texts cover the fixture', () => {
  assert.ok(texts.length >= 200, `${texts.length} texts`);
});

for (const precision of ['f32', 'int16']) {
  const clf = await Classifier.create({ precision });

  test(`classify matches the CLI, ${precision}`, () => {
    assert.equal(clf.precision, precision);
    const want = cli('classify', '--texts', textsFile, '--precision', precision).trim().split('\n').map((l) => JSON.parse(l));
    const got = clf.classify(texts);
    assert.equal(got.length, texts.length);
    assert.equal(want.length, texts.length);
    got.forEach((g, i) => {
      assert.deepEqual(g.labels, want[i].labels, `text ${i} ${JSON.stringify(texts[i])}`);
      assert.deepEqual(Object.keys(g.scores), Object.keys(want[i].scores));
    });
    const worst = assertClose(
      got.flatMap((g) => Object.values(g.scores)), want.flatMap((w) => Object.values(w.scores)),
      SCORE_TOLERANCE[precision], `classify scores against the CLI, ${precision}`, 28);
    console.log(`classify, ${precision}: worst |Δ| ${worst.toExponential(2)} against the CLI`);
  });

  test(`embed matches the CLI, ${precision}`, () => {
    const out = join(dir, `embeddings-${precision}.npy`);
    cli('embed', '--texts', textsFile, '--precision', precision, '--output', out);
    const want = readNpy(out);
    const got = clf.embed(texts);
    assert.equal(got.length, texts.length);
    got.forEach((row) => assert.ok(row instanceof Float32Array && row.length === 384));
    const flat = flatten(got);
    const worst = assertClose(flat, want.data, EMBEDDING_TOLERANCE[precision], `embeddings against the CLI, ${precision}`, 384);
    const cos = minCosine(flat, want.data, 384);
    assert.ok(cos >= MIN_COSINE, `min cosine ${cos} < ${MIN_COSINE}`);
    console.log(`embed, ${precision}: worst |Δ| ${worst.toExponential(2)}, min cosine ${cos.toFixed(8)} against the CLI`);
  });
}
