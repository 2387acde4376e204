// Bundles the uploader into dist/ (served by the API at /upload): one script and one
// stylesheet named by content hash, and index.html naming them. `make web` runs this.
import * as esbuild from 'esbuild';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';

const out = 'dist';
await rm(out, { recursive: true, force: true });
await mkdir(`${out}/assets`, { recursive: true });
const result = await esbuild.build({
  entryPoints: ['src/main.js'],
  bundle: true,
  minify: true,
  format: 'esm',
  target: ['chrome111', 'firefox115', 'safari16.4'],
  outdir: `${out}/assets`,
  entryNames: '[name]-[hash]',
  metafile: true,
  legalComments: 'linked',
  logLevel: 'warning',
});
const outputs = Object.entries(result.metafile.outputs);
const named = (suffix) => basename(outputs.find(([path]) => path.endsWith(suffix))[0]);
const page = (await readFile('src/index.html', 'utf8'))
  .replace('{{js}}', named('.js'))
  .replace('{{css}}', named('.css'));
await writeFile(`${out}/index.html`, page);
const { gzipSync } = await import('node:zlib');
let raw = 0;
let gzipped = 0;
for (const [path, { bytes }] of outputs) {
  if (path.endsWith('.txt')) continue;
  raw += bytes;
  gzipped += gzipSync(await readFile(path)).length;
}
console.log(`web bundle: ${(raw / 1024).toFixed(1)} KiB (${(gzipped / 1024).toFixed(1)} KiB gzipped) in ${out}/assets`);
