// Builds pkg/, the npm package emotions-wasm: the Rust crate for wasm32-unknown-unknown (SIMD128
// on, .cargo/config.toml), wasm-bindgen's glue (`--target web`: ESM that Node and browsers both
// load), wasm-opt, then js/ and the package.json. Installs what it needs: the Rust target
// (rustup), wasm-bindgen-cli at the crate's pinned version (cargo install, from crates.io, into
// a cache outside the clone: $EMOTIONS_WASM_TOOLS, else ~/.cache/emotions/wasm-tools, so a fresh
// clone on the same machine does not build it again) and binaryen's wasm-opt (npm).
//
//   npm --prefix bindings/wasm run build [-- --dev] [-- --no-opt] [-- --tools-only]
//
// --dev builds with Cargo's dev profile (dependencies optimised as in every dev build; quicker
// to build, for tests); --no-opt skips wasm-opt; --tools-only installs the tools and stops
// (.ci/run builds them while the host's tests run).
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const root = join(here, '..', '..');
const args = process.argv.slice(2);
const dev = args.includes('--dev');
const opt = !args.includes('--no-opt');
const toolsOnly = args.includes('--tools-only');
const target = 'wasm32-unknown-unknown';

function run(cmd, argv, opts = {}) {
  console.error(`+ ${cmd} ${argv.join(' ')}`);
  execFileSync(cmd, argv, { stdio: 'inherit', cwd: root, ...opts });
}

function output(cmd, argv) {
  try {
    return execFileSync(cmd, argv, { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return '';
  }
}

// The wasm-bindgen version the crate pins ("=0.2.130"): the CLI must match it exactly.
const manifest = readFileSync(join(here, 'Cargo.toml'), 'utf8');
const bindgenVersion = manifest.match(/^wasm-bindgen = "=([^"]+)"/m)?.[1];
if (!bindgenVersion) throw new Error('bindings/wasm/Cargo.toml: no pinned wasm-bindgen = "=x.y.z"');

if (!output('rustup', ['target', 'list', '--installed']).split('\n').includes(target)) {
  run('rustup', ['target', 'add', target]);
}
const tools = process.env.EMOTIONS_WASM_TOOLS
  || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'emotions', 'wasm-tools');
const bindgen = join(tools, 'bin', 'wasm-bindgen');
if (!output(bindgen, ['--version']).includes(bindgenVersion)) {
  // Not --locked: the CLI's lock file names a webpki-roots release that crates.io no longer has.
  // Without CI's clippy wrapper (.ci/run), which is for this workspace's crates, not the tool's.
  // At opt-level 1 the install took 5.9 CPU-minutes against 7.5 at the default 3, and the tool
  // 7.8 s against 6.1 s on the dev build's module (AVX2 Zen 3, 2026-12-07): a fresh CI machine
  // builds it every run.
  const { RUSTC_WORKSPACE_WRAPPER, CLIPPY_ARGS, ...env } = process.env;
  run('cargo', ['install', '--quiet', 'wasm-bindgen-cli', '--version', `=${bindgenVersion}`, '--root', tools],
    { env: { ...env, CARGO_PROFILE_RELEASE_OPT_LEVEL: '1' } });
}
if (opt && !existsSync(join(here, 'node_modules', 'binaryen'))) {
  run('npm', ['install', '--no-audit', '--no-fund', '--ignore-scripts'], { cwd: here });
}

if (toolsOnly) process.exit(0);

const profile = dev ? 'dev' : 'release';
// Not stripped by rustc: wasm-bindgen reads the target-features section (SIMD128) from the
// module; wasm-opt strips the debug sections after it.
run('cargo', ['build', '--profile', profile, '--target', target, '-p', 'emotions-wasm'],
  { env: { ...process.env, CARGO_PROFILE_RELEASE_STRIP: 'false' } });
const built = join(root, 'target', target, dev ? 'debug' : 'release', 'emotions_wasm.wasm');

const pkg = join(here, 'pkg');
rmSync(pkg, { recursive: true, force: true });
mkdirSync(pkg);
run(bindgen, ['--target', 'web', '--out-dir', pkg, '--out-name', 'emotions_wasm', built]);
const wasm = join(pkg, 'emotions_wasm_bg.wasm');
if (opt) {
  // Speed first (-O3); SIMD128 and the other features rustc emitted must be allowed through.
  run(join(here, 'node_modules', '.bin', 'wasm-opt'),
    ['-O3', '--strip-debug', '--strip-producers', '--enable-simd', '--enable-bulk-memory', '--enable-sign-ext', '--enable-mutable-globals',
      '--enable-nontrapping-float-to-int', '--enable-multivalue', '--enable-reference-types',
      wasm, '-o', wasm]);
}
for (const f of ['index.js', 'index.d.ts']) copyFileSync(join(here, 'js', f), join(pkg, f));
copyFileSync(join(here, 'README.md'), join(pkg, 'README.md'));
const version = readFileSync(join(root, 'Cargo.toml'), 'utf8').match(/^\[workspace\.package\][^[]*?version = "([^"]+)"/m)[1];
writeFileSync(join(pkg, 'package.json'), JSON.stringify({
  name: 'emotions-wasm',
  version,
  description: 'go_emotions emotion classifier (28 labels) in WebAssembly: all-MiniLM-L6-v2 and a tuned head, no onnxruntime',
  license: 'Apache-2.0',
  type: 'module',
  main: './index.js',
  types: './index.d.ts',
  exports: { '.': { types: './index.d.ts', default: './index.js' } },
  files: ['index.js', 'index.d.ts', 'emotions_wasm.js', 'emotions_wasm.d.ts', 'emotions_wasm_bg.wasm', 'README.md'],
  engines: { node: '>=20' },
  sideEffects: false,
}, null, 2) + '\n');
const bytes = readFileSync(wasm);
console.error(`built ${pkg}: emotions_wasm_bg.wasm ${statSync(wasm).size} bytes, ${gzipSync(bytes, { level: 9 }).length} gzipped`);
