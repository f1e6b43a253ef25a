import { benchModelOf, runBench, type BenchResult } from '../src/bench/run-bench.ts';
import { loadModel } from '../src/index.ts';

// The benchmark page: the model loads on this thread (a benchmark wants no worker hop between
// it and the GPU) and runBench, the code behind `molm bench`, runs once per context.
// ?model=URL&contexts=128,512&new=32&run=1 presets the form (run=1 starts at once).
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const BUILTIN = new URL('models/molm-brown/', new URL(import.meta.env.BASE_URL, location.href)).href;
const params = new URLSearchParams(location.search);
$<HTMLInputElement>('bench-model').value = params.get('model') ?? BUILTIN;
if (params.has('contexts')) $<HTMLInputElement>('bench-contexts').value = params.get('contexts')!;
if (params.has('new')) $<HTMLInputElement>('bench-new').value = params.get('new')!;
const say = (text: string, error = false) => {
  $('status').textContent = text;
  $('status').classList.toggle('error', error);
};

async function run(): Promise<BenchResult[]> {
  const contexts = $<HTMLInputElement>('bench-contexts').value.split(',').map((s) => Number(s.trim()));
  const newTokens = Number($<HTMLInputElement>('bench-new').value);
  if (contexts.some((c) => !Number.isInteger(c) || c < 1) || !(newTokens >= 2)) throw new Error('Contexts must be positive integers and new tokens at least 2.');
  say('Loading the model…');
  const model = await loadModel($<HTMLInputElement>('bench-model').value, { maxContext: Math.max(...contexts) + newTokens });
  const results: BenchResult[] = [];
  try {
    const body = $('bench-table').querySelector('tbody')!;
    body.replaceChildren();
    $('bench-table').hidden = false;
    for (const context of contexts) {
      say(`Running at a context of ${context} tokens…`);
      const r = await runBench(benchModelOf(model), { promptTokens: context, newTokens });
      results.push(r);
      const row = document.createElement('tr');
      for (const v of [
        r.context,
        r.prefill_tokens_per_s.toFixed(1),
        r.decode_tokens_per_s.toFixed(2),
        r.ttft_ms.toFixed(0),
        ((r.gpu_bytes ?? 0) / 1e6).toFixed(1),
        r.dispatches_per_token,
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
    say(`Done on ${model.ctx.description}.`);
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
