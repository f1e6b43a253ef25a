import source from 'virtual:molm-engine-worker';

// Starts the engine's worker from a Blob of its bundled code: what the package's browser build
// (vite.lib.config.ts) uses instead of start-worker.ts, so that any bundler, or none, gets a
// working worker without serving or copying a file. A page's Content-Security-Policy has to
// allow `worker-src blob:`, as it already must for the wasm engine's compute threads
// (src/wasm/threads.ts).
export function startEngineWorker(): Worker {
  // The worker revokes the URL once it runs (its code starts with that), or this does if it
  // fails to start. The Blob is made here, not at import, so importing costs nothing until an
  // engine starts.
  const url = URL.createObjectURL(new Blob([source], { type: 'text/javascript' }));
  try {
    const worker = new Worker(url, { type: 'module', name: 'molm-engine' });
    worker.addEventListener('error', () => URL.revokeObjectURL(url), { once: true });
    return worker;
  } catch (e) {
    URL.revokeObjectURL(url);
    throw e;
  }
}
