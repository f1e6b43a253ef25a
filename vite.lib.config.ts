import { fileURLToPath } from 'node:url';
import { build, defineConfig, type Plugin } from 'vite';

// The package's browser build (`npm run build:lib`): src/index.ts → dist/browser/index.mjs and
// the widget, src/widget/index.ts → dist/browser/widget.mjs, as ES modules for whatever bundler
// the user has. What only Vite understands is settled here: the WGSL files (import.meta.glob)
// and the wasm kernels (a generated module) are inlined as strings, and the engine's worker is
// bundled, minified, into a string started from a Blob URL (src/engine/start-worker-blob.ts).
// npm dependencies stay imports, for the user's bundler to resolve and share. Node's entry,
// dist/node.mjs, is vite.cli.config.ts's.

const WORKER = 'virtual:molm-engine-worker';
const file = (path: string) => fileURLToPath(new URL(path, import.meta.url));

/** Node's built-ins out of the browser build: no browser bundler has to meet a node: import. */
function withoutNodeBuiltins(): Plugin {
  const browserVariant = file('./src/wasm/node-builtins-browser.ts');
  return {
    name: 'molm-without-node-builtins',
    enforce: 'pre',
    resolveId: (id) => (/(^|\/)node-builtins\.ts$/.test(id) ? browserVariant : undefined),
  };
}

/** The engine worker as one self-contained, minified ES module, as text. */
async function bundleWorker(): Promise<string> {
  const out = await build({
    configFile: false,
    publicDir: false,
    logLevel: 'warn',
    plugins: [withoutNodeBuiltins()],
    build: {
      write: false,
      target: 'es2022',
      minify: true,
      // An app build, not lib mode: Vite keeps whitespace in a library's ES output.
      rollupOptions: { input: file('./src/engine/worker.ts'), output: { format: 'es' } },
    },
  });
  const chunks = (Array.isArray(out) ? out : [out]).flatMap((o) => ('output' in o ? o.output : [])).filter((c) => c.type === 'chunk');
  if (chunks.length !== 1) throw new Error(`the engine worker bundled into ${chunks.length} chunks, expected 1`);
  const [worker] = chunks;
  // From a Blob URL no import resolves: the worker has to carry every module it uses.
  if (worker.imports.length + worker.dynamicImports.length > 0) {
    throw new Error(`the engine worker bundle still imports ${[...worker.imports, ...worker.dynamicImports].join(', ')}`);
  }
  return `URL.revokeObjectURL(import.meta.url);\n${worker.code}`;
}

/** Swaps the worker's start-from-a-file for start-from-a-Blob and supplies the Blob's text. */
function engineWorkerAsBlob(): Plugin {
  const blobStarter = file('./src/engine/start-worker-blob.ts');
  return {
    name: 'molm-engine-worker-blob',
    enforce: 'pre',
    resolveId(id) {
      if (id === WORKER) return `\0${WORKER}`;
      if (/(^|\/)start-worker\.ts$/.test(id)) return blobStarter;
      // The widget imports the worker the Vite way; give it the same Blob starter (one copy).
      if (/\/engine\/worker\.ts\?worker&inline$/.test(id)) return '\0molm-widget-worker';
      return undefined;
    },
    async load(id) {
      if (id === `\0${WORKER}`) return `export default ${JSON.stringify(await bundleWorker())};`;
      if (id === '\0molm-widget-worker') {
        return `import { startEngineWorker } from ${JSON.stringify(blobStarter)};\nexport default function EngineWorker() { return startEngineWorker(); }`;
      }
      return undefined;
    },
  };
}

export default defineConfig({
  publicDir: false,
  plugins: [withoutNodeBuiltins(), engineWorkerAsBlob()],
  build: {
    outDir: 'dist/browser',
    emptyOutDir: true,
    target: 'es2022',
    // Readable output: the user's bundler minifies the page; only the worker's text is minified
    // here, since no bundler can reach inside a string.
    minify: false,
    sourcemap: true,
    lib: {
      entry: { index: 'src/index.ts', widget: 'src/widget/index.ts' },
      formats: ['es'],
      fileName: (_format, name) => `${name}.mjs`,
    },
    rollupOptions: {
      external: [/^@huggingface\//, 'idb-keyval'],
      output: { chunkFileNames: 'chunks/[name]-[hash].mjs' },
    },
  },
});
