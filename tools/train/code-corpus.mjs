// A JavaScript / TypeScript code corpus from the npm packages in node_modules/ (the expert pack's data).
//
//   node tools/train/code-corpus.mjs [outDir=tools/train/data/code]
//
// node_modules/ is what `npm ci` installs from package-lock.json, so a fresh clone rebuilds the
// same corpus. Everything is deterministic (sorted walks, a hash of the package name for the split).
//
// Packages: every entry of package-lock.json that is installed, the first (shallowest) copy of each
// name only, none restricted to an os / cpu (those differ between machines), and only with a
// permissive licence in package.json's "license" (MIT, ISC, Apache-2.0, BSD-2-Clause, BSD-3-Clause,
// 0BSD; an "A OR B" expression counts if one side does).
// Files: .js .mjs .cjs .ts .mts under the package folder (not its nested node_modules/), sorted by
// path; skipped: .d.ts, *.min.js, files over 200 KB, minified or generated-looking files (mean line
// length over 200 or a line over 2000 characters, "generated" / "do not edit" near the top, mostly
// data lines or mostly number literals), bundles (webpack / rollup / esbuild / rolldown markers), exact duplicates, and the
// second copy of one module shipped in several builds (same path once dist/ lib/ esm/ cjs/ … and
// the extension are dropped; .ts is preferred, then .mjs, .js, .cjs).
// Split by package: sha256(name)[0] % 10 == 0 → held out (never trained on), otherwise train.
// Caps: PER_PACKAGE tokens of one package (files in sorted order until the cap), packages in hash
// order until TRAIN_CAP / HELDOUT_CAP.
//
// Writes to outDir:
//   train.u32     little-endian uint32 ids of the training files, each followed by <|endoftext|> (50256)
//   heldout.u32   the same for the held-out packages' files
//   heldout.js    the held-out files' text, each followed by <|endoftext|>: tokenises to exactly heldout.u32
//   packages.json [{ name, version, license, split, files, tokens }] every package used
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tokenizer } from '@huggingface/tokenizers';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const outDir = process.argv[2] ?? join(here, 'data', 'code');
const EOS = 50256;
const EOS_TEXT = '<|endoftext|>';
const TRAIN_CAP = 4_000_000;
const HELDOUT_CAP = 150_000;
const PER_PACKAGE = { train: 150_000, heldout: 25_000 };
const MAX_BYTES = 200_000;
const PERMISSIVE = new Set(['MIT', 'ISC', 'Apache-2.0', 'BSD-2-Clause', 'BSD-3-Clause', '0BSD']);
const BUILD_DIRS = new Set([
  'dist',
  'build',
  'lib',
  'esm',
  'cjs',
  'es',
  'es6',
  'es2015',
  'umd',
  'module',
  'modules',
  'commonjs',
  'src',
  'node',
  'browser',
  'mjs',
  'out',
  'prod',
  'dev',
  'development',
  'production',
]);
/** @type {Record<string, number>} */
const EXT_RANK = { '.ts': 0, '.mts': 0, '.mjs': 1, '.js': 2, '.cjs': 3 };

/** @param {string} s */
const sha = (s) => createHash('sha256').update(s).digest();
/** @param {string} a @param {string} b */
const byCodePoint = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

/** @param {{ license?: unknown; licenses?: unknown }} pj @returns {string | null} */
function licenceOf(pj) {
  /** @type {any} */
  let l = pj.license ?? pj.licenses;
  if (Array.isArray(l)) l = l.map((/** @type {any} */ x) => (typeof x === 'string' ? x : x.type)).join(' OR ');
  else if (l && typeof l === 'object') l = l.type;
  return typeof l === 'string' ? l : null;
}

/** @param {string | null} licence @returns {boolean} */
function permissive(licence) {
  if (!licence) return false;
  const expr = licence.replace(/[()]/g, ' ').trim();
  if (/\bAND\b/.test(expr)) return expr.split(/\bAND\b/).every((p) => permissive(p));
  return expr.split(/\bOR\b/).some((p) => PERMISSIVE.has(p.trim()));
}

/** @param {string} dir */
function listFiles(dir) {
  /** @type {string[]} */
  const out = [];
  /** @param {string} d */
  const walk = (d) => {
    for (const e of readdirSync(d, { withFileTypes: true }).sort((a, b) => byCodePoint(a.name, b.name))) {
      if (e.name === 'node_modules') continue;
      const f = join(d, e.name);
      if (e.isDirectory()) walk(f);
      else if (e.isFile() && /\.(js|mjs|cjs|ts|mts)$/.test(e.name) && !/\.d\.[mc]?ts$/.test(e.name) && !/\.min\.js$/.test(e.name)) out.push(f);
    }
  };
  walk(dir);
  return out;
}

const BUNDLE = [
  /__webpack_require__/,
  /^\/\/#region /m,
  /\b__toESM\(/,
  /\b__commonJS\(/,
  /\b__defProp\b/,
  /^\/\/ (src|lib|node_modules)\/[\w@/.-]+\.[mc]?[jt]sx?$/m,
  /\(function \(global, factory\) \{/,
  /^System\.register\(/m,
];

/** Why a file is skipped, or null. */
/** @param {string} text */
function reject(text) {
  if (text.includes('\0') || text.includes('\uFFFD')) return 'binary';
  if (text.includes(EOS_TEXT)) return 'special token';
  const lines = text.split('\n');
  const nonBlank = lines.filter((l) => l.trim());
  if (nonBlank.length < 3) return 'tiny';
  if (text.length / lines.length > 200 || lines.some((l) => l.length > 2000)) return 'minified';
  if (/generated|do not edit|don't edit/i.test(text.slice(0, 600))) return 'generated';
  // data tables: lines of only literals, brackets and punctuation
  const data = nonBlank.filter((l) => /^[\s\d"'`,:;.\-+[\]{}()xXa-fA-F\\u]*$/.test(l) || /^\s*["'][^"']*["']\s*:\s*["'\d[{]/.test(l)).length;
  if (data > 0.6 * nonBlank.length) return 'data';
  const words = text.match(/[A-Za-z_$][\w$]*|\d[\w.]*/g) ?? [];
  if (words.filter((w) => /^\d/.test(w)).length > 0.4 * words.length) return 'data';
  if (BUNDLE.some((re) => re.test(text))) return 'bundle';
  return null;
}

/** Path key of one module across builds: build folders and the extension dropped. */
/** @param {string} rel */
function moduleKey(rel) {
  const parts = rel.replace(/\.[mc]?[jt]s$/, '').split('/');
  return parts.filter((p, i) => i === parts.length - 1 || !BUILD_DIRS.has(p)).join('/');
}

const tok = new Tokenizer(JSON.parse(readFileSync(join(root, 'tests', 'fixtures', 'tokenizer', 'tokenizer.json'), 'utf8')), {});
/** @param {string} text @returns {number[]} */
const encode = (text) => tok.encode(text, { add_special_tokens: false }).ids;

// -------------------------------------------------------------- packages
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
const seen = new Set();
/** @type {{ name: string; version: string; license: string | null; dir: string; split: 'train' | 'heldout'; order: string }[]} */
const packages = [];
/** @type {Record<string, string>} */
const skippedPkgs = {};
// Shallowest copy first: sort by depth, then by path.
const paths = Object.keys(lock.packages)
  .filter((p) => p.startsWith('node_modules/'))
  .sort((a, b) => a.split('node_modules/').length - b.split('node_modules/').length || byCodePoint(a, b));
for (const p of paths) {
  const dir = join(root, p);
  if (!existsSync(join(dir, 'package.json'))) continue; // optional, not installed on this platform
  const pj = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const name = pj.name ?? p.slice(p.lastIndexOf('node_modules/') + 13);
  if (seen.has(name)) continue;
  seen.add(name);
  const licence = licenceOf(pj);
  if (pj.os || pj.cpu) {
    skippedPkgs[name] = 'platform-specific';
    continue;
  }
  if (!permissive(licence)) {
    skippedPkgs[name] = `licence ${licence}`;
    continue;
  }
  const h = sha(name);
  packages.push({ name, version: pj.version, license: licence, dir, split: h[0] % 10 === 0 ? 'heldout' : 'train', order: h.toString('hex') });
}
packages.sort((a, b) => byCodePoint(a.order, b.order));

// -------------------------------------------------------------- files
/** @type {Record<'train' | 'heldout', number[]>} */
const ids = { train: [], heldout: [] };
/** @type {string[]} */
const heldText = [];
/** @type {{ name: string; version: string; license: string | null; split: string; files: number; tokens: number }[]} */
const used = [];
/** @type {Record<string, number>} */
const reasons = {};
const seenContent = new Set();
for (const pkg of packages) {
  const split = pkg.split;
  const cap = split === 'train' ? TRAIN_CAP : HELDOUT_CAP;
  if (ids[split].length >= cap) continue;
  // One file per module key, preferring .ts, then .mjs, .js, .cjs (then the first path).
  const files = listFiles(pkg.dir).map((f) => relative(pkg.dir, f));
  const best = new Map();
  for (const rel of files) {
    const k = moduleKey(rel);
    const ext = rel.slice(rel.lastIndexOf('.'));
    const cur = best.get(k);
    if (!cur || EXT_RANK[ext] < EXT_RANK[cur.slice(cur.lastIndexOf('.'))]) best.set(k, rel);
  }
  const chosen = new Set(best.values());
  let nFiles = 0;
  let nTokens = 0;
  for (const rel of files) {
    if (!chosen.has(rel)) {
      reasons['other build'] = (reasons['other build'] ?? 0) + 1;
      continue;
    }
    const f = join(pkg.dir, rel);
    if (statSync(f).size > MAX_BYTES) {
      reasons.large = (reasons.large ?? 0) + 1;
      continue;
    }
    const text = readFileSync(f, 'utf8')
      .replace(/^\uFEFF/, '')
      .replace(/\r\n?/g, '\n');
    const h = sha(text).toString('hex');
    const why = seenContent.has(h) ? 'duplicate' : reject(text);
    if (why) {
      reasons[why] = (reasons[why] ?? 0) + 1;
      continue;
    }
    seenContent.add(h);
    const enc = encode(text);
    if (nTokens + enc.length + 1 > PER_PACKAGE[split] && nFiles > 0) break;
    if (ids[split].length + enc.length + 1 > cap) break;
    for (const id of enc) ids[split].push(id);
    ids[split].push(EOS);
    if (split === 'heldout') heldText.push(text + EOS_TEXT);
    nFiles++;
    nTokens += enc.length + 1;
  }
  if (nFiles) used.push({ name: pkg.name, version: pkg.version, license: pkg.license, split, files: nFiles, tokens: nTokens });
}
used.sort((a, b) => byCodePoint(a.name, b.name));

// -------------------------------------------------------------- write + check
mkdirSync(outDir, { recursive: true });
/** @param {number[]} a */
const u32 = (a) => Buffer.from(new Uint32Array(a).buffer);
writeFileSync(join(outDir, 'train.u32'), u32(ids.train));
writeFileSync(join(outDir, 'heldout.u32'), u32(ids.heldout));
const heldJs = heldText.join('');
writeFileSync(join(outDir, 'heldout.js'), heldJs);
const again = encode(readFileSync(join(outDir, 'heldout.js'), 'utf8'));
if (again.length !== ids.heldout.length || again.some((x, i) => x !== ids.heldout[i])) {
  throw new Error(`heldout.js tokenises to ${again.length} ids, not the ${ids.heldout.length} of heldout.u32`);
}
writeFileSync(join(outDir, 'packages.json'), JSON.stringify(used, null, 1) + '\n');
/** @param {string} s */
const count = (s) => used.filter((u) => u.split === s);
/** @type {Record<string, number>} */
const licences = {};
for (const u of used) licences[String(u.license)] = (licences[String(u.license)] ?? 0) + 1;
console.log(`train: ${count('train').length} packages, ${count('train').reduce((s, u) => s + u.files, 0)} files, ${ids.train.length} tokens`);
console.log(
  `held out: ${count('heldout').length} packages (${count('heldout')
    .map((u) => u.name)
    .join(', ')}), ` + `${count('heldout').reduce((s, u) => s + u.files, 0)} files, ${ids.heldout.length} tokens; heldout.js tokenises to exactly heldout.u32`,
);
console.log(`licences: ${JSON.stringify(licences)}`);
console.log(
  `files skipped: ${JSON.stringify(reasons)}; packages skipped: ${Object.keys(skippedPkgs).length} ` +
    `(${Object.entries(skippedPkgs)
      .map(([n, r]) => `${n}: ${r}`)
      .join(', ')})`,
);
console.log(`→ ${outDir}`);
