// emotions-wasm: the go_emotions classifier, in Node (>= 20) and in browsers (ESM).
//
//   import { Classifier } from 'emotions-wasm';
//   const clf = await Classifier.create();
//   clf.classify(['Thank you so much!']);  // [{ labels: ['gratitude'], scores: {...} }]
//
// The module is loaded once, on the first `create`: in Node from the package's folder, in a
// browser from beside this file (or from `wasm`, a URL, Response or bytes, when given).
import init, { Classifier as Core } from './emotions_wasm.js';

let ready = null;

function isNode() {
  return typeof process !== 'undefined' && process.versions != null && process.versions.node != null;
}

async function load(wasm) {
  if (wasm !== undefined) {
    return init({ module_or_path: wasm });
  }
  const url = new URL('./emotions_wasm_bg.wasm', import.meta.url);
  if (isNode() && url.protocol === 'file:') {
    const { readFile } = await import('node:fs/promises');
    return init({ module_or_path: await readFile(url) });
  }
  return init({ module_or_path: url });
}

function typeName(v) {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v;
}

/** Checks `texts` is a non-empty array of strings (or one string) and returns an array. */
function checkTexts(texts) {
  if (typeof texts === 'string') return [texts];
  if (!Array.isArray(texts)) {
    throw new TypeError(`texts: expected a string or an array of strings, found ${typeName(texts)}`);
  }
  if (texts.length === 0) {
    throw new Error('texts: expected at least one text, found an empty array');
  }
  texts.forEach((t, i) => {
    if (typeof t !== 'string') {
      throw new TypeError(`texts[${i}]: expected a string, found ${typeName(t)}`);
    }
  });
  return texts;
}

function bytesOf(name, value) {
  if (value === undefined || value === null) return undefined;
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new TypeError(`${name}: expected a Uint8Array or ArrayBuffer, found ${typeName(value)}`);
}

/** Runs `work`, turning a wasm-bindgen `JsError` (already an Error) or a trap into an Error. */
function call(work) {
  try {
    return work();
  } catch (e) {
    if (e instanceof Error) throw e;
    throw new Error(String(e));
  }
}

export class Classifier {
  #core;

  constructor(core) {
    if (!(core instanceof Core)) {
      throw new TypeError('use `await Classifier.create()`');
    }
    this.#core = core;
  }

  /**
   * The compiled-in models (all-MiniLM-L6-v2 with the tuned head), or `{ head }`: a head's ONNX
   * bytes over the compiled-in encoder, with `thresholds` (`{label: t}` or an array in label
   * order) when given. `precision`: `'f32'` (the exact mode) or `'int16'` (integer
   * projections); the default is the class's. `wasm` overrides where the module is loaded from.
   */
  static async create(options = {}) {
    if (options === null || typeof options !== 'object') {
      throw new TypeError(`options: expected an object, found ${typeName(options)}`);
    }
    for (const key of Object.keys(options)) {
      if (!['head', 'thresholds', 'precision', 'wasm'].includes(key)) {
        throw new TypeError(`options.${key}: unknown option (expected head, thresholds, precision or wasm)`);
      }
    }
    ready ??= load(options.wasm);
    await ready;
    const head = bytesOf('options.head', options.head);
    let thresholds;
    if (options.thresholds !== undefined) {
      thresholds = JSON.stringify(options.thresholds);
    }
    const { precision } = options;
    if (precision !== undefined && typeof precision !== 'string') {
      throw new TypeError(`options.precision: expected 'int16', 'int8' or 'f32', found ${typeName(precision)}`);
    }
    return new Classifier(call(() => Core.load(head, thresholds, precision)));
  }

  /** One `{labels, scores}` per text, exactly as `emotions classify` prints them. */
  classify(texts) {
    const list = checkTexts(texts);
    return JSON.parse(call(() => this.#core.classifyJson(list)));
  }

  /** One Float32Array of `dim` (384) per text: the plain encoder's sentence embedding. */
  embed(texts) {
    const list = checkTexts(texts);
    const flat = call(() => this.#core.embed(list));
    const dim = this.#core.dim;
    return list.map((_, i) => flat.subarray(i * dim, (i + 1) * dim));
  }

  /** The 28 go_emotions labels, in the order of the score columns. */
  get labels() {
    return this.#core.labels;
  }

  /** The embedding width. */
  get dim() {
    return this.#core.dim;
  }

  /** `'int16'`, `'int8'` or `'f32'`: how the encoder's projections multiply. */
  get precision() {
    return this.#core.precision;
  }

  /** The instruction-set class the kernels run: `simd128` or `portable`. */
  get isa() {
    return this.#core.isa;
  }

  /** Frees the model's memory now rather than when the object is collected. */
  free() {
    this.#core.free();
  }
}
