// Every WGSL file under shaders/, inlined at build time by Vite (browser, worker, Node CLI
// bundle and tests all go through Vite), keyed by its path relative to shaders/.
const modules = import.meta.glob('../../shaders/**/*.wgsl', { query: '?raw', import: 'default', eager: true }) as Record<string, string>;

const sources = new Map<string, string>(Object.entries(modules).map(([path, text]) => [path.replace(/^.*\/shaders\//, ''), text]));

export function shaderSource(file: string): string {
  const text = sources.get(file);
  if (text === undefined) throw new Error(`no shader named ${file} under shaders/`);
  return text;
}
