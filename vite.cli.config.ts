import { defineConfig } from 'vite';
import { builtinModules } from 'node:module';

// Bundles the Node CLI (src/cli/main.ts) into dist/cli.mjs. Shaders are inlined through `?raw`
// imports; npm dependencies and Node built-ins stay external.
export default defineConfig({
  build: {
    ssr: 'src/cli/main.ts',
    outDir: 'dist',
    emptyOutDir: true,
    target: 'node20',
    minify: false,
    sourcemap: true,
    rollupOptions: {
      external: [...builtinModules, ...builtinModules.map((m) => `node:${m}`), 'webgpu'],
      output: { entryFileNames: 'cli.mjs', format: 'es' },
    },
  },
});
