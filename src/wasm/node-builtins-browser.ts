// node-builtins.ts in the package's browser build (vite.lib.config.ts): that build runs in
// pages and workers, where these paths are never taken (Node's `import 'molm-web'` gets
// dist/node.mjs), so it carries no node: import for a bundler to trip on.
const unavailable = () => Promise.reject(new Error("Node's built-in modules are not in molm-web's browser build; Node resolves 'molm-web' to dist/node.mjs."));
export const nodeWorkerThreads = unavailable as () => Promise<typeof import('node:worker_threads')>;
export const nodeOs = unavailable as () => Promise<typeof import('node:os')>;
