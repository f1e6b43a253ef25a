import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { hubResolveUrl, looksLikeHubRepo, parseHubRepo, parseHubUrl } from '../../src/checkpoint/hub.ts';
import { UsageError } from '../../src/errors.ts';
import { synthesize } from '../../src/cli/synth.ts';
import { importHubModel } from '../../src/shards/hub-import.ts';
import { molm } from '../molm-cli.ts';
import { type HubStandIn, startHubStandIn } from '../hub-server.ts';

// Models from the Hugging Face hub, without the internet: the stand-in (tests/hub-server.ts)
// serves the fixtures' checkpoints in every form as hub repos, and `molm --model ORG/NAME`
// imports them into a cache folder and runs them on the CPU reference.

const FIXTURES = join(__dirname, '..', 'fixtures');
const TOKENIZER = join(FIXTURES, 'tokenizer/tokenizer.json');
const tmp = mkdtempSync(join(tmpdir(), 'molm-hub-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function golden(name: string): { input_ids: number[]; greedy_new_tokens: number[] } {
  return JSON.parse(readFileSync(join(FIXTURES, 'golden', name, 'expected.json'), 'utf8'));
}

/** A fixture folder's files as a repo's, with the tokenizer every real MoLM repo has. */
function repoFiles(folder: string, changes: Record<string, string> = {}): Record<string, string> {
  const dir = join(FIXTURES, folder);
  const files = Object.fromEntries(readdirSync(dir).map((f) => [f, join(dir, f)]));
  return { ...files, 'tokenizer.json': TOKENIZER, ...changes };
}

/** A config.json next to the fixture's, edited. */
function editedConfig(folder: string, name: string, edit: (c: Record<string, unknown>) => void): string {
  const config = JSON.parse(readFileSync(join(FIXTURES, folder, 'config.json'), 'utf8'));
  edit(config);
  const path = join(tmp, name);
  writeFileSync(path, JSON.stringify(config));
  return path;
}

// Every checkpoint form holds the same weights as its golden folder (tools/fixtures/make_checkpoints.py).
const FORMS = [
  ['tiny-molm', 'golden/tiny-molm', 'tiny-molm'],
  ['tiny-molm-bin', 'checkpoints/tiny-molm-bin', 'tiny-molm'],
  ['tiny-molm-bin-sharded', 'checkpoints/tiny-molm-bin-sharded', 'tiny-molm'],
  ['tiny-molm-st-sharded', 'checkpoints/tiny-molm-st-sharded', 'tiny-molm'],
  ['tiny-generic-bf16', 'golden/tiny-generic-bf16', 'tiny-generic-bf16'],
  ['tiny-generic-bf16-bin', 'checkpoints/tiny-generic-bf16-bin', 'tiny-generic-bf16'],
] as const;

let hub: HubStandIn;
let host: string;

beforeAll(async () => {
  hub = await startHubStandIn();
  host = new URL(hub.hubUrl).host.replace(':', '_');
  for (const [name, folder] of FORMS) hub.addRepo(`test-org/${name}`, repoFiles(folder));
  hub.addRepo('test-org/tiny-molm', repoFiles('checkpoints/tiny-molm-bin'), 'refs/pr/1');
  const golden = repoFiles('golden/tiny-molm');
  hub.addRepo('test-org/no-config', { 'model.safetensors': golden['model.safetensors'] });
  hub.addRepo('test-org/llama', { ...golden, 'config.json': editedConfig('golden/tiny-molm', 'llama.json', (c) => (c.model_type = 'llama')) });
  hub.addRepo('test-org/three-layers', { ...golden, 'config.json': editedConfig('golden/tiny-molm', 'three.json', (c) => (c.n_layer = 3)) });
  hub.addRepo('test-org/no-weights', { 'config.json': golden['config.json'] });
});
afterAll(() => hub.close());
afterEach(() => {
  hub.switches.ranges = true;
  hub.switches.direct.clear();
  hub.switches.changeAfter.clear();
  hub.switches.expireAfter.clear();
  vi.unstubAllEnvs();
});

let caches = 0;
const newCache = () => join(tmp, `cache-${++caches}`);

/** `molm generate --ids` of a golden case on the CPU reference, the model from the stand-in. */
function generate(repo: string, cache: string, ...extra: string[]) {
  const e = golden(repo.includes('bf16') ? 'tiny-generic-bf16' : 'tiny-molm');
  return molm(
    'generate',
    '--model',
    repo,
    '--hub-url',
    hub.hubUrl,
    '--cache-dir',
    cache,
    '--ids',
    e.input_ids.join(','),
    '--max-new-tokens',
    '8',
    '--greedy',
    '--json',
    '--device',
    'cpu',
    ...extra,
  );
}

/** Every file under `dir`, relative. */
function walk(dir: string, prefix = ''): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => (d.isDirectory() ? walk(join(dir, d.name), `${prefix}${d.name}/`) : [`${prefix}${d.name}`]));
}

/** No file in the cache: no model, nothing half-written, no temporary folder. */
function expectNothingKept(cache: string): void {
  expect(walk(cache)).toEqual([]);
}

describe('hub repo ids', () => {
  it('parses ORG/NAME[@REV] by the hub rules and builds resolve URLs', () => {
    expect(parseHubRepo('ibm-research/MoLM-350M-4B')).toEqual({ org: 'ibm-research', name: 'MoLM-350M-4B', revision: 'main', id: 'ibm-research/MoLM-350M-4B' });
    expect(parseHubRepo('ibm/MoLM-700M-8B@v1.0').revision).toBe('v1.0');
    const pr = parseHubRepo('a_b/c.d@refs/pr/3');
    expect(hubResolveUrl(pr)).toBe('https://huggingface.co/a_b/c.d/resolve/refs%2Fpr%2F3/');
    expect(hubResolveUrl(pr, 'http://127.0.0.1:8080/mirror/')).toBe('http://127.0.0.1:8080/mirror/a_b/c.d/resolve/refs%2Fpr%2F3/');
    for (const bad of [
      'ibm',
      'a/b/c',
      '/abs/path',
      'a/-b',
      'a/b-',
      'a--b/c',
      'a/b..c',
      'a/b.git',
      'a b/c',
      'a/ü',
      `a/${'x'.repeat(97)}`,
      'a/b@',
      'a/b@../x',
      'a/b@x.lock',
      'a/b@.hidden',
      'a/b@x//y',
      'a/b@x y',
      'a/b@x:y',
    ]) {
      expect(() => parseHubRepo(bad), bad).toThrow(UsageError);
    }
    expect(() => parseHubUrl('ftp://x')).toThrow(UsageError);
    expect(() => parseHubUrl('https://u:p@huggingface.co')).toThrow(UsageError);
    expect(parseHubUrl('https://huggingface.co/')).toBe('https://huggingface.co');
  });

  it('tells a hub id from a path', () => {
    for (const id of ['ibm/MoLM-350M-4B', 'a/b@refs/pr/1', 'my org/x']) expect(looksLikeHubRepo(id), id).toBe(true);
    for (const path of ['models', './a/b', '../a/b', '/a/b', '~/a/b', 'a/b/c', 'a\\b', '.cache/x', 'C:/x']) expect(looksLikeHubRepo(path), path).toBe(false);
  });
});

describe('molm --model ORG/NAME from a hub stand-in', () => {
  it.each(FORMS)('%s: imports, converts and generates the golden tokens', async (name, _folder, goldenName) => {
    const cache = newCache();
    const r = await generate(`test-org/${name}`, cache, '--dtype', 'f32');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual({ new_tokens: golden(goldenName).greedy_new_tokens });
    const dir = join(cache, host, 'test-org', name, 'main', 'f32');
    expect(r.stderr).toContain(`molm: importing test-org/${name}@main on ${hub.hubUrl} as f32 into ${dir}\n`);
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8'));
    expect(manifest.dtype).toBe('f32');
    expect(readFileSync(join(dir, 'tokenizer.json')).equals(readFileSync(TOKENIZER))).toBe(true);
    expect(JSON.parse(readFileSync(join(dir, 'hub-source.json'), 'utf8'))).toMatchObject({
      repo: `test-org/${name}`,
      revision: 'main',
      hub: hub.hubUrl,
      dtype: 'f32',
    });
    expect(walk(cache).filter((f) => f.includes('.partial-'))).toEqual([]);
    // Each weights file cost the hub one request (the redirect); its reads went to the CDN.
    const weights = readdirSync(join(FIXTURES, _folder)).filter((f) => /\.(bin|safetensors)$/.test(f));
    for (const f of weights) {
      expect(hub.count('hub', `test-org/${name}/main/${f}`), f).toBe(1);
      expect(hub.count('cdn', `test-org/${name}/main/${f}`), f).toBeGreaterThan(2);
    }
  });

  it('runs from the cache with the hub gone, and imports q4 into $XDG_CACHE_HOME/molm-web by default', async () => {
    const own = await startHubStandIn();
    own.addRepo('test-org/tiny-molm', repoFiles('golden/tiny-molm'));
    const xdg = join(tmp, 'xdg');
    vi.stubEnv('XDG_CACHE_HOME', xdg);
    const e = golden('tiny-molm');
    const run = () =>
      molm(
        'generate',
        '--model',
        'test-org/tiny-molm',
        '--hub-url',
        own.hubUrl,
        '--ids',
        e.input_ids.join(','),
        '--max-new-tokens',
        '3',
        '--json',
        '--device',
        'cpu',
      );
    let first: Awaited<ReturnType<typeof molm>>;
    try {
      first = await run();
    } finally {
      await own.close();
    }
    expect(first.code, first.stderr).toBe(0);
    expect(first.stderr).toMatch(/^molm: importing /);
    const dir = join(xdg, 'molm-web', new URL(own.hubUrl).host.replace(':', '_'), 'test-org/tiny-molm/main/q4');
    expect(JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')).dtype).toBe('q4');

    const offline = await run();
    expect(offline.code, offline.stderr).toBe(0);
    expect(offline.stderr).toBe('');
    expect(offline.stdout).toBe(first.stdout);
  });

  it('reads a revision, and converts a hub repo in place with molm convert', async () => {
    const cache = newCache();
    const r = await generate('test-org/tiny-molm@refs/pr/1', cache, '--dtype', 'f32');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).new_tokens).toEqual(golden('tiny-molm').greedy_new_tokens);
    expect(existsSync(join(cache, host, 'test-org/tiny-molm/refs%2Fpr%2F1/f32/manifest.json'))).toBe(true);
    expect(hub.count('hub', 'test-org/tiny-molm/refs/pr/1/pytorch_model.bin')).toBe(1);

    const out = join(tmp, 'converted');
    const c = await molm('convert', '--model', 'test-org/tiny-molm-st-sharded', '--hub-url', hub.hubUrl, '--out', out, '--dtype', 'f32');
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout).toMatch(/with tokenizer\.json\n$/);
    const e = golden('tiny-molm');
    const g = await molm('generate', '--model', out, '--ids', e.input_ids.join(','), '--max-new-tokens', '8', '--json', '--device', 'cpu');
    expect(g.code, g.stderr).toBe(0);
    expect(JSON.parse(g.stdout).new_tokens).toEqual(e.greedy_new_tokens);
  });

  it('follows a fresh redirect when a signed CDN address expires, and takes JSON files the hub sends whole', async () => {
    const cache = newCache();
    hub.switches.expireAfter.set('test-org/tiny-molm-bin/main/pytorch_model.bin', 3);
    hub.switches.direct = new Set(['config.json', 'tokenizer.json']);
    const r = await generate('test-org/tiny-molm-bin', cache, '--dtype', 'f32');
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).new_tokens).toEqual(golden('tiny-molm').greedy_new_tokens);
    expect(hub.requests.some((q) => q.server === 'cdn' && q.status === 403)).toBe(true);
    expect(hub.count('hub', 'test-org/tiny-molm-bin/main/pytorch_model.bin')).toBeGreaterThan(1);
  });

  it('importHubModel (the Node API): imports once, then answers from the cache', async () => {
    const cacheDir = newCache();
    const progress: number[] = [];
    const first = await importHubModel({
      repo: 'test-org/tiny-molm-bin',
      hubUrl: hub.hubUrl,
      cacheDir,
      dtype: 'q8',
      onProgress: (p) => progress.push(p.doneBytes),
    });
    expect(first.imported).toBe(true);
    expect(first.dir).toBe(join(cacheDir, host, 'test-org/tiny-molm-bin/main/q8'));
    expect(first.manifest?.dtype).toBe('q8');
    expect(progress.at(-1)).toBe(first.manifest!.shards.reduce((a, s) => a + s.bytes, 0));
    const requests = hub.requests.length;
    const again = await importHubModel({ repo: 'test-org/tiny-molm-bin', hubUrl: hub.hubUrl, cacheDir, dtype: 'q8' });
    expect(again).toEqual({ dir: first.dir, imported: false, manifest: null });
    expect(hub.requests.length).toBe(requests);
  });

  it('cleans up the temporary folder of an import whose process died', async () => {
    const cache = newCache();
    const dead = spawnSync(process.execPath, ['-e', '']).pid;
    const parent = join(cache, host, 'test-org/tiny-molm/main');
    const stale = join(parent, `.f32.partial-${dead}-abcdef`);
    mkdirSync(stale, { recursive: true });
    writeFileSync(join(stale, 'manifest.json'), '{}');
    const r = await generate('test-org/tiny-molm', cache, '--dtype', 'f32');
    expect(r.code, r.stderr).toBe(0);
    expect(existsSync(stale)).toBe(false);
    expect(readdirSync(parent)).toEqual(['f32']);
  });
});

describe('molm --model ORG/NAME: bad input', () => {
  it.each([
    ['test-org/no-config', /^molm: test-org\/no-config@main on http:\/\/127\.0\.0\.1:\d+ has no config\.json/],
    ['test-org/llama', /^molm: config\.json: field "model_type" is "llama"; molm-web runs "moduleformer"/],
    ['test-org/three-layers', /^molm: model\.safetensors lacks \d+ tensor\(s\) the model needs: "transformer\.h\.2\./],
    ['test-org/no-weights', /^molm: test-org\/no-weights@main on .* holds no weights: looked for model\.safetensors/],
    ['test-org/nope', /^molm: http:\/\/127\.0\.0\.1:\d+ has no model repo test-org\/nope \(or it is private/],
    ['test-org/tiny-molm@v9', /^molm: test-org\/tiny-molm on http:\/\/127\.0\.0\.1:\d+ has no revision "v9"/],
  ])('%s: a clear error, and nothing kept', async (repo, message) => {
    const cache = newCache();
    const r = await generate(repo, cache);
    expect(r.code).toBe(1);
    expect(r.stderr.split('\n').find((l) => l.startsWith('molm: ') && !l.startsWith('molm: importing'))).toMatch(message);
    expectNothingKept(cache);
  });

  it('a CDN that ignores Range: a clear error, and nothing kept', async () => {
    const cache = newCache();
    hub.switches.ranges = false;
    const r = await generate('test-org/tiny-molm', cache);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/model\.safetensors: the server ignored an HTTP Range request \(status 200\)/);
    expectNothingKept(cache);
  });

  it.each([
    ['test-org/tiny-molm', 'model.safetensors'],
    ['test-org/tiny-molm-bin-sharded', 'pytorch_model-00002-of-00002.bin'],
  ])('%s: %s changes on the server mid-import: a clear error, and nothing kept', async (repo, file) => {
    const cache = newCache();
    hub.switches.changeAfter.set(`${repo}/main/${file}`, 3);
    const r = await generate(repo, cache);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`/resolve/main/${file.replace(/\./g, '\\.')} changed on the server while it was being read \\(its ETag went from "\\w+" to "\\w+"\\)`),
    );
    expectNothingKept(cache);
    // The same import, the file no longer changing: complete.
    hub.switches.changeAfter.clear();
    const again = await generate(repo, cache);
    expect(again.code, again.stderr).toBe(0);
  });

  it('refuses a bad id, a bad hub URL and hub options with a local folder before anything loads (exit 2)', async () => {
    const cache = newCache();
    for (const [args, message] of [
      [
        ['--model', 'test-org/bad--name', '--cache-dir', cache],
        /--model test-org\/bad--name is not a local folder, and "test-org\/bad--name" is not a Hugging Face repo id: the name "bad--name" must have no "--"/,
      ],
      [['--model', 'test-org/x@a..b', '--cache-dir', cache], /the revision "a\.\.b" must be a branch, tag or commit name/],
      [['--model', 'test-org/tiny-molm', '--hub-url', 'ftp://example.org'], /--hub-url must be the Hugging Face hub .*, got "ftp:\/\/example.org"/],
      [['--model', 'test-org/tiny-molm', '--dtype', 'q5'], /--dtype must be one of f32, f16, bf16, q8, q4: how a model from the hub is stored/],
      [
        ['--model', join(FIXTURES, 'golden/tiny-molm'), '--dtype', 'q8'],
        /--dtype applies to a model from the Hugging Face hub \(ORG\/NAME\); .* is a local folder/,
      ],
      [['--model', join(FIXTURES, 'golden/tiny-molm'), '--cache-dir', cache], /--cache-dir applies to a model from the Hugging Face hub/],
    ] as const) {
      const r = await molm('generate', '--ids', '1,2', '--device', 'cpu', ...args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr.split('\n')[0]).toMatch(message);
    }
    expect(hub.requests.filter((q) => q.file.includes('bad--name') || q.file.includes('a..b'))).toEqual([]);
    expect(walk(cache)).toEqual([]);
    // Not an id: a path that does not exist (exit 1).
    const path = await molm('generate', '--ids', '1', '--model', 'a/b/c', '--device', 'cpu');
    expect(path.code).toBe(1);
    expect(path.stderr).toBe('molm: --model a/b/c does not exist: give the folder that holds the model (config.json or manifest.json, with its weights).\n');
    // convert reads the hub in place: no cache to name.
    const convert = await molm('convert', '--model', 'test-org/tiny-molm', '--out', join(tmp, 'c'), '--dtype', 'q8', '--cache-dir', cache);
    expect(convert.code).toBe(2);
    expect(convert.stderr).toMatch(/Unknown option --cache-dir/);
  });
});

// The released MoLMs' configs, layer-reduced (a few hundred MB each; MOLM_HUB_REAL=0 skips them).
describe.skipIf(process.env.MOLM_HUB_REAL === '0')('the real configs from a hub stand-in (MOLM_HUB_LAYERS, default 1)', () => {
  it.each(['molm-350m-4b', 'molm-700m-4b', 'molm-700m-8b'])(
    '%s',
    async (name) => {
      const layers = Number(process.env.MOLM_HUB_LAYERS ?? 1);
      const repo = join(tmp, `real-${name}`);
      await synthesize({ configPath: join(FIXTURES, 'configs', `${name}.json`), layers, outDir: repo, dtype: 'BF16' });
      const id = `ibm-research/${name.replace('molm', 'MoLM').replace(/m-(\d)b$/, 'M-$1B')}`;
      hub.addRepo(id, { 'config.json': join(repo, 'config.json'), 'model.safetensors': join(repo, 'model.safetensors'), 'tokenizer.json': TOKENIZER });
      const cache = newCache();
      const r = await molm(
        'generate',
        '--model',
        id,
        '--hub-url',
        hub.hubUrl,
        '--cache-dir',
        cache,
        '--prompt',
        'The committee said that',
        '--max-new-tokens',
        '4',
        '--json',
        '--device',
        'wasm',
      );
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).usage.completionTokens).toBeGreaterThan(0);
      const manifest = JSON.parse(readFileSync(join(cache, host, id, 'main/q4/manifest.json'), 'utf8'));
      const real = JSON.parse(readFileSync(join(FIXTURES, 'configs', `${name}.json`), 'utf8'));
      expect({ ...manifest.config, n_layer: real.n_layer, torch_dtype: real.torch_dtype }).toEqual(real);
      rmSync(repo, { recursive: true, force: true });
      rmSync(cache, { recursive: true, force: true });
    },
    1_800_000,
  );
});
