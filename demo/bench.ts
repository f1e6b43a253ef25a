import { benchModelOf, runBench, type BenchModel, type BenchResult } from '../src/bench/run-bench.ts';
import { chooseBackend, type BackendChoice } from '../src/engine/backend.ts';
import { browserGpu } from '../src/gpu/browser-gpu.ts';
import { loadModel } from '../src/index.ts';
import { loadWasmModelFromUrl } from '../src/wasm/load.ts';

// The benchmark page: the model loads on this thread (a benchmark wants no worker hop between
// it and the GPU or the wasm engine's threads) and runBench, the code behind `molm bench`, runs
// once per context. ?model=URL&contexts=128,512&new=32&backend=webgpu|wasm|auto&threads=N&run=1
// presets the form (run=1 starts at once).
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const BUILTIN = new URL('models/molm-brown/', new URL(import.meta.env.BASE_URL, location.href)).href;
const params = new URLSearchParams(location.search);
$<HTMLInputElement>('bench-model').value = params.get('model') ?? BUILTIN;
if (params.has('contexts')) $<HTMLInputElement>('bench-contexts').value = params.get('contexts')!;
if (params.has('new')) $<HTMLInputElement>('bench-new').value = params.get('new')!;
if (params.has('backend')) $<HTMLSelectElement>('bench-backend').value = params.get('backend')!;
if (params.has('threads')) $<HTMLInputElement>('bench-threads').value = params.get('threads')!;
// Errors quote what a model host sent: text only.
const say = (text: string, error = false) => {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
};

/** The model on the chosen backend, as runBench drives it. */
async function load(url: string, maxContext: number): Promise<BenchModel & { destroy(): void }> {
  const choice = $<HTMLSelectElement>('bench-backend').value as BackendChoice;
  if (!['webgpu', 'wasm', 'auto'].includes(choice)) throw new Error(`Unknown backend ${JSON.stringify(choice)}: webgpu, wasm or auto.`);
  const backend = await chooseBackend(choice, browserGpu);
  if (backend.kind === 'webgpu') {
    const gpu = await loadModel(url, { maxContext, gpu: backend.gpu });
    return { ...benchModelOf(gpu), destroy: () => gpu.destroy() };
  }
  const threadsText = $<HTMLInputElement>('bench-threads').value.trim();
  const wasm = await loadWasmModelFromUrl(url, { maxContext, threads: threadsText ? Number(threadsText) : undefined });
  return {
    config: wasm.config,
    description: wasm.description,
    wasm,
    reset: () => wasm.reset(),
    generate: (p, n, s) => wasm.generate(p, n, s),
    destroy: () => wasm.destroy(),
  };
}

async function run(): Promise<BenchResult[]> {
  const contexts = $<HTMLInputElement>('bench-contexts')
    .value.split(',')
    .map((s) => Number(s.trim()));
  const newTokens = Number($<HTMLInputElement>('bench-new').value);
  if (contexts.some((c) => !Number.isInteger(c) || c < 1) || !(newTokens >= 2))
    throw new Error('Contexts must be positive integers and new tokens at least 2.');
  say('Loading the model…');
  const model = await load($<HTMLInputElement>('bench-model').value, Math.max(...contexts) + newTokens);
  const results: BenchResult[] = [];
  try {
    const body = $('bench-table').querySelector('tbody')!;
    body.replaceChildren();
    $('bench-table').hidden = false;
    for (const context of contexts) {
      say(`Running at a context of ${context} tokens…`);
      const r = await runBench(model, { promptTokens: context, newTokens });
      results.push(r);
      const row = document.createElement('tr');
      for (const v of [
        r.context,
        r.prefill_tokens_per_s.toFixed(1),
        r.decode_tokens_per_s.toFixed(2),
        r.ttft_ms.toFixed(0),
        ((r.gpu_bytes ?? r.memory_bytes ?? 0) / 1e6).toFixed(1),
        r.dispatches_per_token ?? '–',
        ((r.copy_bandwidth_bytes_per_s ?? 0) / 1e9).toFixed(2),
        r.roofline_ratio?.toFixed(4),
      ]) {
        const cell = document.createElement('td');
        cell.textContent = String(v);
        row.append(cell);
      }
      body.append(row);
    }
    $('bench-json').textContent = JSON.stringify(results, null, 1);
    say(`Done on ${model.description}.`);
    return results;
  } finally {
    model.destroy();
  }
}

const w = window as unknown as { benchResults?: BenchResult[]; benchError?: string };
$('bench-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $<HTMLButtonElement>('bench-run').disabled = true;
  try {
    w.benchResults = await run();
  } catch (e) {
    w.benchError = `${(e as Error).name}: ${(e as Error).message}`;
    say(w.benchError, true);
  } finally {
    $<HTMLButtonElement>('bench-run').disabled = false;
  }
});
if (params.get('run') === '1') $<HTMLFormElement>('bench-form').requestSubmit();
