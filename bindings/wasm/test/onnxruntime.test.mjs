// The package against onnxruntime's reference outputs (crates/conformance/fixtures), as the
// conformance crate and the Python binding check them: the exact (f32) mode's tolerances.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { assertClose, fixtureTexts, fixtures, flatten, loadPackage, minCosine, readNpy } from './helpers.mjs';

// The same named tolerances as crates/conformance (exact mode): embeddings and text-to-score.
const EMBEDDING_TOLERANCE = 1e-5;
const TEXT_SCORE_TOLERANCE = 1e-5;

const texts = fixtureTexts();
const { Classifier } = await loadPackage();
const clf = await Classifier.create({ precision: 'f32' });

test('runs the SIMD128 class, exact mode', () => {
  assert.equal(clf.isa, 'simd128');
  assert.equal(clf.precision, 'f32');
});

test('embeddings match onnxruntime', () => {
  const want = readNpy(join(fixtures, 'encoder', 'embeddings.npy'));
  assert.deepEqual(want.shape, [texts.length, 384]);
  const got = flatten(clf.embed(texts));
  const worst = assertClose(got, want.data, EMBEDDING_TOLERANCE, 'embeddings against onnxruntime', 384);
  console.log(`embeddings: worst |Δ| ${worst.toExponential(2)}, min cosine ${minCosine(got, want.data, 384).toFixed(8)}`);
});

test('tuned text scores match onnxruntime', () => {
  const want = readNpy(join(fixtures, 'shipped', 'tuned_text_scores.npy'));
  assert.deepEqual(want.shape, [texts.length, 28]);
  const got = clf.classify(texts).flatMap((p) => clf.labels.map((l) => p.scores[l]));
  const worst = assertClose(got, want.data, TEXT_SCORE_TOLERANCE, 'tuned text scores against onnxruntime', 28);
  console.log(`text scores: worst |Δ| ${worst.toExponential(2)}`);
});
