import { defineConfig } from 'vite';
import { builtinModules } from 'node:module';

// Bundles for Node: the CLI (src/cli/main.ts → dist/cli.mjs) and the library's Node entry
// (src/node.ts → dist/node.mjs, what `import 'molm-web'` gives in Node). Shaders are inlined
// through `?raw` imports; npm dependencies and Node built-ins stay external.
export default defineConfig({
  build: {
    ssr: true,
    copyPublicDir: false,
    outDir: 'dist',
    emptyOutDir: true,
    target: 'node20',
    minify: false,
    sourcemap: true,
    rollupOptions: {
      input: { cli: 'src/cli/main.ts', node: 'src/node.ts' },
      external: [...builtinModules, ...builtinModules.map((m) => `node:${m}`), 'webgpu', /^@huggingface\//, 'idb-keyval'],
      output: { entryFileNames: '[name].mjs', chunkFileNames: 'chunks/[name]-[hash].mjs', format: 'es' },
    },
  },
});
