// The engine worker's bundled code, as text: made by vite.lib.config.ts for the package's build.
declare module 'virtual:molm-engine-worker' {
  const source: string;
  export default source;
}
