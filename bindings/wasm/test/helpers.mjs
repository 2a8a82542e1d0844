// Shared by the Node tests: the built package, the fixtures, an .npy reader and the named
// tolerance check that reports the worst element.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const here = dirname(fileURLToPath(import.meta.url));
export const root = join(here, '..', '..', '..');
export const fixtures = join(root, 'crates', 'conformance', 'fixtures');

/** The package as a user imports it: the built pkg/ (npm run build). */
export async function loadPackage() {
  return import(join(here, '..', 'pkg', 'index.js'));
}

/** The conformance texts (onnxruntime's fixtures were made from these). */
export function fixtureTexts() {
  return JSON.parse(readFileSync(join(fixtures, 'encoder', 'texts.json'), 'utf8'));
}

/** A little-endian float32 or float64 .npy file: `{ shape, data }` (data as a Float64Array). */
export function readNpy(path) {
  const buf = readFileSync(path);
  if (buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(`${path}: not an .npy file`);
  const major = buf[6];
  const headerLen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + headerLen;
  const header = buf.toString('latin1', major === 1 ? 10 : 12, start);
  const descr = header.match(/'descr':\s*'([^']+)'/)[1];
  if (/'fortran_order':\s*True/.test(header)) throw new Error(`${path}: Fortran order`);
  const shape = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(',').map((s) => s.trim()).filter(Boolean).map(Number);
  const count = shape.reduce((a, b) => a * b, 1);
  const body = buf.subarray(start);
  const data = new Float64Array(count);
  if (descr === '<f4') for (let i = 0; i < count; i++) data[i] = body.readFloatLE(i * 4);
  else if (descr === '<f8') for (let i = 0; i < count; i++) data[i] = body.readDoubleLE(i * 8);
  else throw new Error(`${path}: dtype ${descr}, expected <f4 or <f8`);
  return { shape, data };
}

/** Asserts |got - want| <= tolerance element by element; the message names the worst one. */
export function assertClose(got, want, tolerance, what, width = 1) {
  if (got.length !== want.length) {
    throw new Error(`${what}: ${got.length} values, expected ${want.length}`);
  }
  let worst = -1;
  let worstAt = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= worst) || Number.isNaN(d)) {
      worst = Number.isNaN(d) ? Infinity : d;
      worstAt = i;
    }
  }
  const at = width > 1 ? `row ${Math.floor(worstAt / width)}, column ${worstAt % width}` : `element ${worstAt}`;
  if (!(worst <= tolerance)) {
    throw new Error(`${what}: worst |Δ| ${worst.toExponential(3)} at ${at} (got ${got[worstAt]}, ` +
      `expected ${want[worstAt]}) exceeds the tolerance ${tolerance.toExponential(1)}`);
  }
  return worst;
}

/** The smallest cosine between matching rows of two flat arrays of `width`-wide rows. */
export function minCosine(a, b, width) {
  let min = Infinity;
  for (let r = 0; r < a.length / width; r++) {
    let ab = 0, aa = 0, bb = 0;
    for (let j = r * width; j < (r + 1) * width; j++) {
      ab += a[j] * b[j];
      aa += a[j] * a[j];
      bb += b[j] * b[j];
    }
    min = Math.min(min, ab / Math.sqrt(aa * bb));
  }
  return min;
}

export function flatten(rows) {
  const width = rows[0].length;
  const out = new Float64Array(rows.length * width);
  rows.forEach((r, i) => out.set(r, i * width));
  return out;
}
