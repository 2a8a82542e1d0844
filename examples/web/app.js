// The demo page: loads emotions-wasm from ./pkg/ (the built bindings/wasm/pkg, served there by
// `npm --prefix bindings/wasm run demo`, or copied beside this file for any static server).
import { Classifier } from './pkg/index.js';

const $ = (id) => document.getElementById(id);
const status = $('status');

function show(prediction, ms) {
  const predicted = new Set(prediction.labels);
  const sorted = Object.entries(prediction.scores).sort((a, b) => b[1] - a[1]);
  $('labels').textContent = `Predicted: ${prediction.labels.join(', ') || '(none above its threshold)'}`;
  $('labels').dataset.labels = prediction.labels.join(',');
  const bars = $('bars');
  bars.replaceChildren(...sorted.map(([label, score]) => {
    const li = document.createElement('li');
    li.dataset.label = label;
    if (predicted.has(label)) li.className = 'predicted';
    const name = document.createElement('span');
    name.textContent = label;
    const bar = document.createElement('div');
    bar.className = 'bar';
    bar.style.width = `${(score * 100).toFixed(1)}%`;
    const value = document.createElement('span');
    value.className = 'score';
    value.textContent = score.toFixed(3);
    li.append(name, bar, value);
    return li;
  }));
  status.textContent = `${status.dataset.load} · this text: ${ms.toFixed(1)} ms`;
}

try {
  const t0 = performance.now();
  const clf = await Classifier.create();
  status.dataset.load = `model loaded in ${(performance.now() - t0).toFixed(0)} ms (${clf.isa})`;
  status.textContent = status.dataset.load;
  const button = $('classify');
  button.disabled = false;
  button.addEventListener('click', () => {
    try {
      const t = performance.now();
      const [prediction] = clf.classify([$('text').value]);
      show(prediction, performance.now() - t);
    } catch (e) {
      status.textContent = `Error: ${e.message}`;
    }
  });
} catch (e) {
  status.textContent = `Could not load the model: ${e.message}`;
}
