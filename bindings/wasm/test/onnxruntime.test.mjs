// The package against onnxruntime's reference outputs (crates/conformance/fixtures), with the
// named tolerances the conformance crate and the Python binding hold every class to: the exact
// (f32) mode's, and the integer mode's stated ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { assertClose, fixtureTexts, fixtures, flatten, loadPackage, minCosine, readNpy } from './helpers.mjs';

const EMBEDDING_TOLERANCE = { f32: 1e-4, int16: 5e-4 };
const TEXT_SCORE_TOLERANCE = { f32: 1e-5, int16: 1e-3 };
const MIN_COSINE = 0.99999;

const texts = fixtureTexts();
const { Classifier } = await loadPackage();

test('runs the SIMD128 class, int16 by default', async () => {
  const clf = await Classifier.create();
  assert.equal(clf.isa, 'simd128');
  assert.equal(clf.precision, 'int16');
});

for (const precision of ['f32', 'int16']) {
  const clf = await Classifier.create({ precision });

  test(`embeddings match onnxruntime, ${precision}`, () => {
    const want = readNpy(join(fixtures, 'encoder', 'embeddings.npy'));
    assert.deepEqual(want.shape, [texts.length, 384]);
    const got = flatten(clf.embed(texts));
    const worst = assertClose(got, want.data, EMBEDDING_TOLERANCE[precision], `embeddings against onnxruntime, ${precision}`, 384);
    const cos = minCosine(got, want.data, 384);
    assert.ok(cos >= MIN_COSINE, `min cosine ${cos} < ${MIN_COSINE}`);
    console.log(`embeddings, ${precision}: worst |Δ| ${worst.toExponential(2)}, min cosine ${cos.toFixed(8)}`);
  });

  test(`tuned text scores match onnxruntime, ${precision}`, () => {
    const want = readNpy(join(fixtures, 'shipped', 'tuned_text_scores.npy'));
    assert.deepEqual(want.shape, [texts.length, 28]);
    const got = clf.classify(texts).flatMap((p) => clf.labels.map((l) => p.scores[l]));
    const worst = assertClose(got, want.data, TEXT_SCORE_TOLERANCE[precision], `tuned text scores against onnxruntime, ${precision}`, 28);
    console.log(`text scores, ${precision}: worst |Δ| ${worst.toExponential(2)}`);
  });
}
