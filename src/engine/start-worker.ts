// Starts the engine's worker (worker.ts) from its own file. Vite understands this pattern, so
// `npm run dev`, the demo and the tests run the worker from source. The package's build
// (vite.lib.config.ts) swaps this module for start-worker-blob.ts: a bundler other than Vite
// (esbuild, Rollup) would leave the URL pointing at a file its output does not have.
export function startEngineWorker(): Worker {
  return new Worker(new URL('./worker.ts', import.meta.url), { type: 'module', name: 'molm-engine' });
}
