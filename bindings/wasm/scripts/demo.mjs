// Serves the demo page (examples/web) at http://127.0.0.1:PORT/ with the built package at
// /pkg/: `npm --prefix bindings/wasm run demo -- --port 8000`. Loopback only, files only.
import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const page = join(here, '..', '..', 'examples', 'web');
const pkg = join(here, 'pkg');
const types = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm', '.json': 'application/json', '.css': 'text/css', '.ts': 'text/plain',
};

const args = process.argv.slice(2);
const at = args.indexOf('--port');
const port = at >= 0 ? Number(args[at + 1]) : 8000;
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`--port: expected a port number (0 to 65535), found ${args[at + 1]}`);
  process.exit(2);
}

/** The file a URL path names, inside `page` or (under /pkg/) `pkg`; null outside them. */
function resolve(pathname) {
  const [base, rest] = pathname.startsWith('/pkg/') ? [pkg, pathname.slice(5)] : [page, pathname.slice(1)];
  const file = normalize(join(base, decodeURIComponent(rest) || 'index.html'));
  return file === base || file.startsWith(base + sep) ? file : null;
}

const server = createServer(async (req, res) => {
  const file = resolve(new URL(req.url, 'http://x').pathname);
  try {
    if (!file || req.method !== 'GET') throw Object.assign(new Error(), { code: 'ENOENT' });
    const body = await readFile(file);
    res.writeHead(200, { 'Content-Type': types[extname(file)] ?? 'application/octet-stream' });
    res.end(body);
  } catch (e) {
    res.writeHead(e.code === 'ENOENT' || e.code === 'EISDIR' ? 404 : 500, { 'Content-Type': 'text/plain' });
    res.end(e.code === 'ENOENT' || e.code === 'EISDIR' ? 'not found\n' : `${e.message}\n`);
  }
});
server.listen(port, '127.0.0.1', () => {
  console.log(`emotions demo at http://127.0.0.1:${server.address().port}/`);
});
