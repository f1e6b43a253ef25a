// Node's built-in modules, for the wasm engine's paths that run only in Node (isNode()). The
// names are concatenated, with @vite-ignore, so that Vite's page builds leave them alone. The
// package's browser build (vite.lib.config.ts) puts node-builtins-browser.ts in this module's
// place: esbuild and webpack refuse a node: import in a browser bundle, even on a path that
// never runs there.
export const nodeWorkerThreads = () => import(/* @vite-ignore */ 'node:' + 'worker_threads') as Promise<typeof import('node:worker_threads')>;
export const nodeOs = () => import(/* @vite-ignore */ 'node:' + 'os') as Promise<typeof import('node:os')>;
