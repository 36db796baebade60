// check.mjs - server/blurhash.c against the authors' npm package (pinned in
// package-lock.json, installed by scripts/test with npm ci).
//
// Usage: node tests/blurhash/check.mjs BLURHASH_CLI
// For images of several kinds and sizes (flat colours, gradients, noise,
// a bright subject on a flat ground) and component counts from 1x1 to 9x9,
// the C encoder must give exactly the string the package's encode() gives,
// and a flat image's string must decode (package decode()) to its colour
// within 3 levels. Exit 0 when every case agrees.
import { spawnSync } from 'node:child_process';
import { encode, decode, isBlurhashValid } from 'blurhash';

const cli = process.argv[2];
if (!cli) {
  console.error('usage: check.mjs BLURHASH_CLI');
  process.exit(2);
}

// A small deterministic generator, so a failure is reproducible.
let seed = 12345;
function rand() {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed / 0x7fffffff;
}

function image(w, h, kind) {
  const px = new Uint8ClampedArray(w * h * 4);
  const c0 = [rand() * 255, rand() * 255, rand() * 255];
  const c1 = [rand() * 255, rand() * 255, rand() * 255];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = (y * w + x) * 4;
      let c;
      if (kind === 'flat') c = c0;
      else if (kind === 'gradient') {
        const t = (x + y) / (w + h - 2 || 1);
        c = c0.map((v, k) => v * (1 - t) + c1[k] * t);
      } else if (kind === 'noise') c = [rand() * 255, rand() * 255, rand() * 255];
      else {
        const dx = x - w * 0.75, dy = y - h * 0.3;
        c = dx * dx + dy * dy < (w * h) / 60 ? [255, 255, 240] : [40, 60, 50];
      }
      px[i] = c[0]; px[i + 1] = c[1]; px[i + 2] = c[2]; px[i + 3] = 255;
    }
  }
  return px;
}

function mean(px, n) {
  const m = [0, 0, 0];
  for (let i = 0; i < n; i++) for (let k = 0; k < 3; k++) m[k] += px[i * 4 + k];
  return m.map((v) => v / n);
}

let failures = 0, cases = 0;
const kinds = ['flat', 'gradient', 'noise', 'subject'];
const sizes = [[1, 1], [32, 24], [24, 32], [32, 32], [7, 13]];
const comps = [[1, 1], [4, 3], [3, 4], [9, 9], [5, 2]];
for (const kind of kinds) {
  for (const [w, h] of sizes) {
    for (const [cx, cy] of comps) {
      const px = image(w, h, kind);
      const want = encode(px, w, h, cx, cy);
      const r = spawnSync(cli, [w, h, cx, cy].map(String), { input: Buffer.from(px.buffer) });
      const got = r.stdout.toString().trim();
      cases++;
      if (r.status !== 0 || got !== want || !isBlurhashValid(got).result) {
        failures++;
        console.error(`${kind} ${w}x${h} ${cx}x${cy}: C "${got}" npm "${want}"`);
        continue;
      }
      // A flat image decodes to its colour (its AC terms are all but 0).
      const m0 = mean(px, w * h), m1 = mean(decode(got, 32, 32), 32 * 32);
      const far = m0.some((v, k) => Math.abs(v - m1[k]) > 3);
      if (kind === 'flat' && w >= 24 && far) {
        failures++;
        console.error(`${kind} ${w}x${h} ${cx}x${cy}: decodes to ${m1} for mean ${m0}`);
      }
    }
  }
}
console.log(`blurhash: ${cases - failures}/${cases} cases agree with the npm reference`);
process.exit(failures ? 1 : 0);
