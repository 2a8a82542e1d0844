// emotions-wasm side by side with onnxruntime-web's WASM backend (the engine transformers.js
// runs in browsers), in one Node process, single-threaded, on the first 1,000 go_emotions test
// texts in batches of 32: the same models/minilm/model.onnx, with transformers.js's tokenizer,
// mean pooling and normalisation for onnxruntime-web. Also transformers.js's own Node path
// (`device: 'cpu'`: native onnxruntime-node) for reference. Each side runs --runs times after a
// warm-up pass, alternating; the median is reported, with the min cosine between the sides.
//
//   npm --prefix bindings/wasm run build        # the release package, bindings/wasm/pkg
//   node benches/wasm_side_by_side.mjs [--runs 3] [--texts 1000]
//
// onnxruntime-web and @huggingface/transformers are installed into target/wasm-bench by npm
// (--ignore-scripts: onnxruntime-node's install script reaches the network; its Linux x64
// binaries ship in the package). Writes its table into docs/PERFORMANCE.md.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const RUNS = opt('--runs', 3);
const N = opt('--texts', 1000);
const BATCH = 32;
const ORT_WEB = '1.31.1';
const TRANSFORMERS = '4.3.2';

const work = join(root, 'target', 'wasm-bench');
mkdirSync(work, { recursive: true });
if (!existsSync(join(work, 'node_modules', 'onnxruntime-web')) || !existsSync(join(work, 'node_modules', '@huggingface', 'transformers'))) {
  writeFileSync(join(work, 'package.json'), JSON.stringify({ private: true, type: 'module' }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts', `onnxruntime-web@${ORT_WEB}`, `@huggingface/transformers@${TRANSFORMERS}`], { cwd: work, stdio: 'inherit' });
}
const require = createRequire(join(work, 'package.json'));
const ort = await import(pathToFileURL(require.resolve('onnxruntime-web')));
const { AutoTokenizer, env, pipeline } = await import(pathToFileURL(require.resolve('@huggingface/transformers')));
const { Classifier } = await import(pathToFileURL(join(root, 'bindings', 'wasm', 'pkg', 'index.js')));

// transformers.js reads a model folder as <localModelPath>/<name>/ with the ONNX file under onnx/.
const models = join(work, 'models');
const minilm = join(models, 'minilm');
if (!existsSync(join(minilm, 'onnx', 'model.onnx'))) {
  mkdirSync(join(minilm, 'onnx'), { recursive: true });
  for (const f of readdirSync(join(root, 'models', 'minilm'))) {
    if (f !== 'model.onnx') symlinkSync(join(root, 'models', 'minilm', f), join(minilm, f));
  }
  symlinkSync(join(root, 'models', 'minilm', 'model.onnx'), join(minilm, 'onnx', 'model.onnx'));
}
env.localModelPath = models + '/';
env.allowRemoteModels = false;

const texts = readFileSync(join(root, '..', 'shared', 'data', 'go_emotions', 'test.tsv'), 'utf8')
  .split('\n').filter((l) => l.length).slice(0, N).map((l) => l.split('\t')[0]);
const batches = [];
for (let i = 0; i < texts.length; i += BATCH) batches.push(texts.slice(i, i + BATCH));

// --- onnxruntime-web, WASM backend, one thread --------------------------------------------
ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
const tokenizer = await AutoTokenizer.from_pretrained('minilm');
const modelBytes = readFileSync(join(root, 'models', 'minilm', 'model.onnx'));
const session = await ort.InferenceSession.create(modelBytes, { executionProviders: ['wasm'], intraOpNumThreads: 1 });

async function ortWebEmbed() {
  const out = [];
  for (const batch of batches) {
    const enc = tokenizer(batch, { padding: true, truncation: true, max_length: 256 });
    const feeds = {};
    for (const name of session.inputNames) {
      const t = enc[name];
      feeds[name] = new ort.Tensor('int64', t.data, t.dims);
    }
    const { last_hidden_state: h } = await session.run(feeds);
    const [rows, len, dim] = h.dims;
    const mask = enc.attention_mask.data;
    for (let r = 0; r < rows; r++) {
      const v = new Float32Array(dim);
      let count = 0;
      for (let t = 0; t < len; t++) {
        if (mask[r * len + t] === 0n) continue;
        count++;
        const base = (r * len + t) * dim;
        for (let j = 0; j < dim; j++) v[j] += h.data[base + j];
      }
      let norm = 0;
      for (let j = 0; j < dim; j++) {
        v[j] /= count;
        norm += v[j] * v[j];
      }
      norm = Math.max(Math.sqrt(norm), 1e-12);
      for (let j = 0; j < dim; j++) v[j] /= norm;
      out.push(v);
    }
  }
  return out;
}

// --- emotions-wasm ---------------------------------------------------------------------------
const clf = await Classifier.create();
async function emotionsEmbed() {
  const out = [];
  for (const batch of batches) out.push(...clf.embed(batch));
  return out;
}

// --- transformers.js in Node: native onnxruntime-node --------------------------------------
const extractor = await pipeline('feature-extraction', 'minilm', { device: 'cpu', dtype: 'fp32', session_options: { intraOpNumThreads: 1, interOpNumThreads: 1 } });
async function transformersNodeEmbed() {
  const out = [];
  for (const batch of batches) {
    const t = await extractor(batch, { pooling: 'mean', normalize: true });
    const [rows, dim] = t.dims;
    for (let r = 0; r < rows; r++) out.push(t.data.slice(r * dim, (r + 1) * dim));
  }
  return out;
}

function minCos(a, b) {
  let min = Infinity;
  for (let i = 0; i < a.length; i++) {
    let ab = 0, aa = 0, bb = 0;
    for (let j = 0; j < a[i].length; j++) {
      ab += a[i][j] * b[i][j];
      aa += a[i][j] * a[i][j];
      bb += b[i][j] * b[i][j];
    }
    min = Math.min(min, ab / Math.sqrt(aa * bb));
  }
  return min;
}

const sides = [['onnxruntime-web', ortWebEmbed], ['emotions-wasm', emotionsEmbed], ['transformers.js Node', transformersNodeEmbed]];
const times = Object.fromEntries(sides.map(([n]) => [n, []]));
const results = {};
for (const [name, f] of sides) results[name] = await f(); // warm-up
for (let r = 0; r < RUNS; r++) {
  for (const [name, f] of sides) {
    const t0 = performance.now();
    await f();
    times[name].push((performance.now() - t0) / 1000);
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const t = Object.fromEntries(sides.map(([n]) => [n, median(times[n])]));

const wasmFile = join(root, 'bindings', 'wasm', 'pkg', 'emotions_wasm_bg.wasm');
const wasmBytes = readFileSync(wasmFile);
const onnxBytes = statSync(join(root, 'models', 'minilm', 'model.onnx')).size;
const lines = [
  `${texts.length.toLocaleString('en')} go_emotions test texts in batches of ${BATCH}, one thread, Node ${process.version}, ` +
  `median of ${RUNS} after a warm-up pass, the sides alternating; onnxruntime-web ${ORT_WEB}, transformers.js ${TRANSFORMERS}.`,
  '',
  '| engine | time | texts/s | onnxruntime-web time / this | min cos against emotions-wasm |',
  '|---|---|---|---|---|',
];
for (const [name] of sides) {
  const cos = name === 'emotions-wasm' ? '' : minCos(results[name], results['emotions-wasm']).toFixed(7);
  lines.push(`| ${name}${name === 'emotions-wasm' ? ` (\`${clf.isa}\`, ${clf.precision})` : name === 'onnxruntime-web' ? ' (WASM backend)' : ' (`device: \'cpu\'`)'} | ` +
    `${t[name].toFixed(2)} s | ${(texts.length / t[name]).toFixed(0)} | **${(t['onnxruntime-web'] / t[name]).toFixed(2)}×** | ${cos} |`);
}
lines.push('', `\`emotions_wasm_bg.wasm\`: ${(wasmBytes.length / 2 ** 20).toFixed(2)} MiB raw, ` +
  `${(gzipSync(wasmBytes, { level: 9 }).length / 2 ** 20).toFixed(2)} MiB gzipped, models included; ` +
  `of it the encoder's model.onnx is ${(onnxBytes / 2 ** 20).toFixed(2)} MiB, so ${((wasmBytes.length - onnxBytes) / 2 ** 20).toFixed(2)} MiB without it (code, tokenizer, head and adapter).`);
const table = lines.join('\n');
console.log(table);

// docs/PERFORMANCE.md, the section of this script (perf_doc.py's format).
const doc = join(root, 'docs', 'PERFORMANCE.md');
const key = 'wasm_side_by_side.mjs wasm32-simd128';
const commit = (() => {
  const git = (...a) => execFileSync('git', a, { cwd: root, encoding: 'utf8' }).trim();
  const sha = git('rev-parse', '--short', 'HEAD');
  return git('status', '--porcelain', '--untracked-files=no') ? `${sha} (with uncommitted changes)` : sha;
})();
const cpu = (() => {
  const info = readFileSync('/proc/cpuinfo', 'utf8');
  const f = (k) => info.match(new RegExp(`^${k}\\s*:\\s*(.*)$`, 'm'))?.[1];
  return `${f('model name')} (cpu family ${f('cpu family')}, model ${f('model')})`;
})();
const body = `<!-- begin ${key} -->\n### \`wasm_side_by_side.mjs\`, wasm32 with SIMD128\n\n` +
  `- CPU: ${cpu}, ${cpus().length} cores (one used)\n- commit ${commit}, ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC\n` +
  `- command: \`node benches/wasm_side_by_side.mjs ${args.join(' ')}\`\n\n${table}\n<!-- end ${key} -->\n`;
let text = readFileSync(doc, 'utf8');
const begin = `<!-- begin ${key} -->`, end = `<!-- end ${key} -->`;
if (text.includes(begin)) {
  text = text.slice(0, text.indexOf(begin)) + body + text.slice(text.indexOf(end) + end.length + 1);
} else {
  const marker = '<!-- runs: new sections go above this line -->';
  text = text.includes(marker) ? text.replace(marker, body + '\n' + marker) : text.trimEnd() + '\n\n' + body;
}
writeFileSync(doc, text);
console.log(`wrote docs/PERFORMANCE.md: ${key}`);
