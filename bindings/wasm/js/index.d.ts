/** One text's result, exactly as `emotions classify` prints it. */
export interface Prediction {
  /** The predicted labels, highest score first. */
  labels: string[];
  /** Every label's score (the probability of the label), keyed by label. */
  scores: Record<string, number>;
}

export interface CreateOptions {
  /** A classifier head's ONNX bytes, over the compiled-in encoder. */
  head?: Uint8Array | ArrayBuffer;
  /** Per-label thresholds: `{label: t}` or an array in label order. */
  thresholds?: Record<string, number> | number[];
  /** `'f32'` (the exact mode) or `'int16'` (integer projections); default: the class's. */
  precision?: 'int16' | 'int8' | 'f32';
  /** Where to load the .wasm module from (default: beside this package's index.js). */
  wasm?: string | URL | Response | BufferSource | WebAssembly.Module;
}

export class Classifier {
  private constructor();
  /** Loads the compiled-in models (all-MiniLM-L6-v2 with the tuned head), or the given head. */
  static create(options?: CreateOptions): Promise<Classifier>;
  /** One prediction per text. Throws an Error for bad input (not strings, an empty array). */
  classify(texts: string | string[]): Prediction[];
  /** One Float32Array of `dim` values per text: the plain encoder's sentence embedding. */
  embed(texts: string | string[]): Float32Array[];
  /** The 28 go_emotions labels, in the order of the score columns. */
  readonly labels: string[];
  /** The embedding width (384). */
  readonly dim: number;
  /** How the encoder's projections multiply. */
  readonly precision: 'int16' | 'int8' | 'f32';
  /** The instruction-set class the kernels run: `simd128` or `portable`. */
  readonly isa: string;
  /** Frees the model's memory now. */
  free(): void;
}
