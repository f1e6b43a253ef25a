#!/usr/bin/env node
// The package as a user gets it (`npm run pack:check`; .ci/run runs it after the tests).
// `npm pack` (whose `prepare` builds dist/), then in a scratch project outside the repository
// the tarball installed like any dependency, and:
//   - Node: `import { createEngine } from 'molm-web'` loads the built-in model on the wasm
//     engine and decodes the golden greedy tokens (tests/fixtures/golden/molm-brown);
//   - TypeScript: a file using the API type-checks against the shipped declarations, with
//     skipLibCheck off (every .d.ts checked), for a bundler and for Node's resolution;
//   - esbuild and Vite each bundle a page that imports 'molm-web' and 'molm-web/widget';
//   - headless Chromium opens both pages, which load the same model in the engine's worker
//     (started from the bundle itself) on the wasm engine and must answer the same text.
// Any failure exits non-zero. Chromium: CHROMIUM_PATH, or Debian's /usr/bin/chromium.
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { CHROMIUM, CHROMIUM_FLAGS } from './chromium.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const MODEL = join(root, 'public', 'models', 'molm-brown');
const GOLDEN = join(root, 'tests', 'fixtures', 'golden', 'molm-brown', 'expected.json');
/** @type {{ input_ids: number[], greedy_new_tokens: number[] }} */
const golden = JSON.parse(readFileSync(GOLDEN, 'utf8'));
// Greedy, with no repetition penalty: the tokens the golden file's PyTorch reference chose.
const SETTINGS = { maxNewTokens: golden.greedy_new_tokens.length, temperature: 0, repetitionPenalty: 1 };

/**
 * What the check page (web/main.js and page() below) puts on window.
 * @typedef {{
 *   runCheck: (model: string, inputIds: number[], settings: typeof SETTINGS) => Promise<{ backend: string, device: string, text: string, widget: boolean }>,
 *   startedWorkers: { url: string, name?: string, type?: string }[],
 * }} CheckPage
 */
/** The value of package.json's "exports": a path, or conditions (or subpaths) mapping to more of them. @typedef {string | { [key: string]: ExportsValue }} ExportsValue */

const started = Date.now();
const log = (/** @type {string} */ text) => console.log(`pack-check ${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s  ${text}`);
const repoRequire = createRequire(join(root, 'package.json'));
/** The repository's own copy of a tool (esbuild, Vite, TypeScript, Playwright), not the scratch project's. */
const tool = async (/** @type {string} */ name) => import(pathToFileURL(repoRequire.resolve(name)).href);

/** @param {unknown} ok @param {string} message */
function check(ok, message) {
  if (!ok) throw new Error(message);
}

/**
 * Runs a command; its output is shown only if it fails. Returns stdout.
 * @param {string} command @param {string[]} args @param {string} cwd
 */
function run(command, args, cwd) {
  const r = spawnSync(command, args, { cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) {
    process.stderr.write(r.stdout + r.stderr);
    throw new Error(`${command} ${args.join(' ')} (in ${cwd}) exited with ${r.status ?? r.signal}`);
  }
  return r.stdout;
}

const work = mkdtempSync(join(tmpdir(), 'molm-pack-check-'));
/** @type {{ url: string, close: () => void } | undefined} */
let server;
/** @type {import('vite').ViteDevServer | undefined} */
let devServer;
/** @type {import('playwright-core').Browser | undefined} */
let browser;
try {
  // 1. The tarball, and what is in it.
  const packed = run('npm', ['pack', '--json', '--pack-destination', work], root);
  // `prepare`'s build output comes first on stdout; npm's JSON report is the last thing printed.
  /** @type {[{ filename: string, size: number, unpackedSize: number, files: { path: string }[] }]} */
  const [info] = JSON.parse(packed.slice(packed.lastIndexOf('\n[\n') + 1));
  const files = new Set(info.files.map((f) => f.path));
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  /** @type {string[]} */
  const targets = [];
  const walk = (/** @type {ExportsValue} */ v) => (typeof v === 'string' ? targets.push(v.replace(/^\.\//, '')) : Object.values(v).forEach(walk));
  walk(manifest.exports);
  for (const t of targets) check(files.has(t), `package.json exports ${t}, which the tarball lacks`);
  check(files.has('bin/molm.mjs') && files.has('dist/cli.mjs'), 'the tarball lacks the molm command (bin/molm.mjs, dist/cli.mjs)');
  const stray = [...files].filter((f) => /^(src|tests|public|shaders|demo|tools|dist\/app)\//.test(f));
  check(stray.length === 0, `the tarball carries files no user needs: ${stray.slice(0, 5).join(', ')}`);
  log(`npm pack: ${info.filename}, ${files.size} files, ${(info.size / 1024).toFixed(0)} KiB (${(info.unpackedSize / 1024).toFixed(0)} KiB unpacked)`);

  // 2. A fresh project with the tarball installed. --prefer-offline: after `npm ci` the npm
  // cache holds every dependency, so this needs the registry only for what it lacks.
  const app = join(work, 'app');
  mkdirSync(join(app, 'src'), { recursive: true });
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'molm-web-pack-check', private: true, type: 'module' }, null, 2));
  run('npm', ['install', join(work, info.filename), '--prefer-offline', '--no-audit', '--no-fund'], app);
  log('installed into a scratch project');

  // 3. Node: the package's Node entry, on the wasm engine, against the golden greedy tokens.
  writeFileSync(
    join(app, 'node-check.mjs'),
    `import { createEngine } from 'molm-web';
const [model, goldenIds, settings] = process.argv.slice(2).map((a, i) => (i ? JSON.parse(a) : a));
const engine = await createEngine({ model, backend: 'wasm', maxContext: 64 });
const prompt = await engine.decode(goldenIds.input);
const out = {
  resolved: import.meta.resolve('molm-web'),
  backend: engine.backend,
  prompt,
  ids: await engine.encode(prompt),
  text: (await engine.complete(prompt, settings)).text,
  expected: await engine.decode(goldenIds.output),
};
await engine.dispose();
console.log(JSON.stringify(out));
`,
  );
  const goldenIds = JSON.stringify({ input: golden.input_ids, output: golden.greedy_new_tokens });
  const node = JSON.parse(
    /** @type {string} */ (
      run(process.execPath, ['node-check.mjs', MODEL, goldenIds, JSON.stringify(SETTINGS)], app)
        .trim()
        .split('\n')
        .at(-1)
    ),
  );
  check(node.resolved.endsWith('/node_modules/molm-web/dist/node.mjs'), `Node resolved molm-web to ${node.resolved}, not dist/node.mjs`);
  check(node.backend === 'wasm', `Node's engine is ${node.backend}, not wasm`);
  check(JSON.stringify(node.ids) === JSON.stringify(golden.input_ids), `the prompt encodes to ${node.ids}, not the golden ${golden.input_ids}`);
  check(
    node.text === node.expected && node.text.length > 0,
    `Node generated ${JSON.stringify(node.text)}; the golden tokens are ${JSON.stringify(node.expected)}`,
  );
  log(`Node: ${JSON.stringify(node.prompt)} → ${JSON.stringify(node.text)} (the golden greedy tokens)`);
  const help = run(join(app, 'node_modules', '.bin', 'molm'), ['--help'], app);
  check(/generate/.test(help), 'molm --help does not list the commands');

  // 4. TypeScript against the shipped declarations: as a bundler resolves (index.d.ts) and as
  // Node does (node.d.ts, through the "node" condition).
  writeFileSync(
    join(app, 'src', 'browser-types.ts'),
    `import { createEngine, UsageError, type Engine, type GenerationResult } from 'molm-web';
import { MolmChat } from 'molm-web/widget';
export async function run(): Promise<number> {
  const engine: Engine = await createEngine({ model: '/models/molm-brown/', backend: 'wasm', threads: 2 });
  const result: GenerationResult = await engine.complete('The jury said', { maxNewTokens: 4, temperature: 0 });
  const element: MolmChat = document.createElement('molm-chat') as MolmChat;
  void element;
  // @ts-expect-error: an option createEngine does not have
  await createEngine({ model: 'x', modle: 'y' });
  return new UsageError('x').name.length + result.usage.completionTokens;
}
`,
  );
  writeFileSync(
    join(app, 'src', 'node-types.mts'),
    `import { createEngine, nodeFileSource, type Engine } from 'molm-web';
const engine: Engine = await createEngine({ model: './models/molm-brown', backend: 'wasm' });
void nodeFileSource;
const backend: string = engine.backend;
console.log(backend);
`,
  );
  const common = { target: 'ES2022', strict: true, noEmit: true, skipLibCheck: false, lib: ['ES2022', 'DOM', 'DOM.Iterable'], types: [] };
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({ compilerOptions: { ...common, module: 'ESNext', moduleResolution: 'Bundler' }, files: ['src/browser-types.ts'] }),
  );
  // @types/node comes from the repository: the scratch project has no dev dependencies.
  writeFileSync(
    join(app, 'tsconfig.node.json'),
    JSON.stringify({
      compilerOptions: { ...common, module: 'NodeNext', moduleResolution: 'NodeNext', typeRoots: [join(root, 'node_modules', '@types')], types: ['node'] },
      files: ['src/node-types.mts'],
    }),
  );
  const tsc = repoRequire.resolve('typescript/bin/tsc');
  run(process.execPath, [tsc, '-p', 'tsconfig.json'], app);
  run(process.execPath, [tsc, '-p', 'tsconfig.node.json'], app);
  // Each entry's declarations on their own must bring WebGPU's types (the check above loads
  // them together): some file they import carries the reference to @webgpu/types.
  const installed = join(app, 'node_modules', 'molm-web');
  for (const entry of targets.filter((t) => t.endsWith('.d.ts'))) {
    /** @type {Set<string>} */
    const seen = new Set();
    const visit = (/** @type {string} */ file) => {
      if (seen.has(file)) return;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      for (const [, spec] of text.matchAll(/(?:from\s+|import\()['"](\.[^'"]+)['"]/g)) visit(join(dirname(file), spec.replace(/\.ts$/, '.d.ts')));
    };
    visit(join(installed, entry));
    const referencing = [...seen].some((f) => readFileSync(f, 'utf8').includes('/// <reference types="@webgpu/types"'));
    check(referencing, `${entry} and the declarations it imports do not reference @webgpu/types`);
  }
  log('TypeScript: the declarations check (bundler and NodeNext resolution, skipLibCheck off)');

  // 5. The same page bundled by esbuild and by Vite (whose root, web/, holds the page).
  const web = join(app, 'web');
  mkdirSync(web);
  writeFileSync(
    join(web, 'main.js'),
    `import { createEngine } from 'molm-web';
import { MolmChat } from 'molm-web/widget';
window.runCheck = async (model, inputIds, settings) => {
  const engine = await createEngine({ model, backend: 'wasm', maxContext: 64 });
  const prompt = await engine.decode(inputIds);
  const { text } = await engine.complete(prompt, settings);
  const out = { backend: engine.backend, device: engine.device, text, widget: customElements.get('molm-chat')?.prototype instanceof MolmChat };
  await engine.dispose();
  return out;
};
`,
  );
  // Records the workers the page starts, before the bundle runs.
  const page = (/** @type {string} */ script) => `<!doctype html><meta charset="utf-8"><title>molm-web pack check</title>
<script>
  window.startedWorkers = [];
  const PageWorker = window.Worker;
  window.Worker = class extends PageWorker {
    constructor(url, options) { super(url, options); window.startedWorkers.push({ url: String(url), name: options && options.name, type: options && options.type }); }
  };
</script>
<script type="module" src="${script}"></script>
`;
  const esbuild = /** @type {typeof import('esbuild')} */ (await tool('esbuild'));
  const esOut = join(app, 'out-esbuild');
  await esbuild.build({
    entryPoints: [join(web, 'main.js')],
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    minify: true,
    outfile: join(esOut, 'main.js'),
    logLevel: 'error',
    absWorkingDir: app,
  });
  writeFileSync(join(esOut, 'index.html'), page('./main.js'));

  writeFileSync(join(web, 'index.html'), page('./main.js'));
  const vite = /** @type {typeof import('vite')} */ (await tool('vite'));
  await vite.build({
    configFile: false,
    root: web,
    base: './',
    logLevel: 'error',
    publicDir: false,
    build: { outDir: join(app, 'out-vite'), emptyOutDir: true, target: 'es2022' },
  });
  const viteOut = join(app, 'out-vite');

  for (const [name, dir] of [
    ['esbuild', esOut],
    ['Vite', viteOut],
  ]) {
    const js = listFiles(dir).filter((f) => f.endsWith('.js'));
    const text = js.map((f) => readFileSync(f, 'utf8')).join('\n');
    // What a bundle needs inside it: the worker's code, the WGSL kernels, the gzipped wasm.
    check(text.includes('URL.revokeObjectURL(import.meta.url)'), `${name}'s bundle lacks the engine worker's code`);
    check(/@compute\s*@workgroup_size/.test(text), `${name}'s bundle lacks the WGSL shaders`);
    check(text.includes('H4sI'), `${name}'s bundle lacks the wasm kernels`);
    check(!text.includes('import.meta.glob'), `${name}'s bundle still has import.meta.glob`);
    check(!/from\s*["'](molm-web|@huggingface\/|idb-keyval)/.test(text), `${name}'s bundle left a package import unresolved`);
    const kib = js.reduce((n, f) => n + statSync(f).size, 0) / 1024;
    log(`${name}: bundled (${js.length} JavaScript file${js.length === 1 ? '' : 's'}, ${kib.toFixed(0)} KiB)`);
  }

  // 6. The pages in Chromium, cross-origin isolated (so the wasm engine runs on threads): the
  // two bundles, and the Vite page from Vite's dev server, which pre-bundles molm-web into
  // node_modules/.vite/deps (where a worker file next to the package would not be found).
  check(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`);
  const isolation = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
  server = await serve({ '/esbuild/': esOut, '/vite/': viteOut, '/model/': MODEL }, isolation);
  const modelsDir = join(app, 'dev-public');
  mkdirSync(modelsDir);
  symlinkSync(MODEL, join(modelsDir, 'model'));
  devServer = await vite.createServer({
    configFile: false,
    root: web,
    publicDir: modelsDir,
    logLevel: 'error',
    server: { host: '127.0.0.1', port: 0, headers: isolation, hmr: false },
  });
  await devServer.listen();
  // Listening (not in middleware mode) on a TCP port: the server's address is an AddressInfo.
  const address = devServer.httpServer?.address();
  if (!address || typeof address === 'string') throw new Error('the Vite dev server is not listening on a TCP port');
  const devUrl = `http://127.0.0.1:${address.port}`;
  const { chromium } = /** @type {typeof import('playwright-core')} */ (repoRequire('playwright-core'));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: CHROMIUM_FLAGS,
  });
  const pages = [
    ['esbuild bundle', `${server.url}/esbuild/index.html`],
    ['Vite bundle', `${server.url}/vite/index.html`],
    ["Vite's dev server", `${devUrl}/index.html`],
  ];
  for (const [name, url] of pages) {
    const tab = await browser.newPage();
    /** @type {string[]} */
    const problems = [];
    tab.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    // A failed request is counted once, from its response; the loader probes for manifest.json.
    tab.on('console', (m) => m.type() === 'error' && !m.text().startsWith('Failed to load resource') && problems.push(`console: ${m.text()}`));
    tab.on('response', (r) => r.status() >= 400 && !/\/(manifest\.json|favicon\.ico)$/.test(r.url()) && problems.push(`HTTP ${r.status()}: ${r.url()}`));
    await tab.goto(url);
    await tab
      .waitForFunction(() => typeof (/** @type {Partial<CheckPage>} */ (/** @type {unknown} */ (window)).runCheck) === 'function', null, { timeout: 30_000 })
      .catch(() => {});
    check(
      problems.length === 0 && (await tab.evaluate(() => typeof (/** @type {Partial<CheckPage>} */ (/** @type {unknown} */ (window)).runCheck))) === 'function',
      `${name}: the page did not load: ${problems.join('; ')}`,
    );
    const out = await tab.evaluate(
      ([ids, settings]) => /** @type {CheckPage} */ (/** @type {unknown} */ (window)).runCheck('/model/', ids, settings),
      /** @type {[number[], typeof SETTINGS]} */ ([golden.input_ids, SETTINGS]),
    );
    const workers = await tab.evaluate(() => /** @type {CheckPage} */ (/** @type {unknown} */ (window)).startedWorkers);
    const isolated = await tab.evaluate(() => crossOriginIsolated);
    await tab.close();
    check(problems.length === 0, `${name}: the page reported ${problems.join('; ')}`);
    check(
      workers.length === 1 && workers[0].name === 'molm-engine' && workers[0].url.startsWith('blob:'),
      `${name}: the page started ${JSON.stringify(workers)}, not one engine worker from a Blob`,
    );
    check(out.backend === 'wasm', `${name}: the engine is ${out.backend}, not wasm`);
    check(out.text === node.text, `${name}: the page generated ${JSON.stringify(out.text)}, Node ${JSON.stringify(node.text)}`);
    check(out.widget, `${name}: molm-web/widget defined no <molm-chat>`);
    log(`Chromium, ${name}: ${out.device}${isolated ? '' : ' (not cross-origin isolated)'}, in the engine worker → ${JSON.stringify(out.text)}`);
  }
  log('the package works: Node, TypeScript, esbuild, Vite (build and dev server), Chromium');
} catch (e) {
  console.error(`pack-check FAILED: ${e instanceof Error ? e.message : e}`);
  process.exitCode = 1;
} finally {
  await browser?.close();
  await devServer?.close();
  server?.close();
  if (process.env.MOLM_PACK_CHECK_KEEP) console.log(`pack-check: the scratch project stays in ${work}`);
  else rmSync(work, { recursive: true, force: true });
}

/** @param {string} dir @returns {string[]} */
function listFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? listFiles(join(dir, e.name)) : [join(dir, e.name)]));
}

/**
 * Serves folders under URL prefixes on 127.0.0.1, with `extra` headers.
 * @param {Record<string, string>} mounts @param {Record<string, string>} extra
 * @returns {Promise<{ url: string, close: () => void }>}
 */
function serve(mounts, extra) {
  /** @type {Record<string, string>} */
  const types = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.json': 'application/json', '.map': 'application/json' };
  const http = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const prefix = Object.keys(mounts).find((p) => path.startsWith(p));
    const headers = { ...extra, 'Cache-Control': 'no-store' };
    const file = prefix === undefined ? '' : normalize(join(mounts[prefix], path.slice(prefix.length)));
    if (prefix === undefined || !file.startsWith(mounts[prefix] + sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, headers).end();
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Type': types[extname(file)] ?? 'application/octet-stream', 'Content-Length': statSync(file).size });
    createReadStream(file).pipe(res);
  });
  const port = () => /** @type {import('node:net').AddressInfo} */ (http.address()).port;
  return new Promise((resolve) => http.listen(0, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${port()}`, close: () => http.close() })));
}
