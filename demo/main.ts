import { blobFileSource, urlFileSource } from '../src/checkpoint/web-files.ts';
import type { FileSource } from '../src/checkpoint/types.ts';
import { loadGpuModel } from '../src/model/load.ts';
import { GREEDY, type GpuModel } from '../src/model/model.ts';

// The demo is UI only: it picks a checkpoint, hands it to the engine and shows the tokens.
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = $('status');
const output = $('output');
const go = $<HTMLButtonElement>('go');
const stop = $<HTMLButtonElement>('stop');
const BUILTIN = new URL('models/tiny-random-molm/', new URL(import.meta.env.BASE_URL, location.href)).href;

let loaded: { key: string; model: GpuModel } | null = null;
let stopRequested = false;

function say(text: string, error = false): void {
  status.textContent = text;
  status.classList.toggle('error', error);
}

function chosenSource(): { key: string; files: FileSource } {
  const source = (document.querySelector('input[name=source]:checked') as HTMLInputElement).value;
  if (source === 'url') {
    const url = $<HTMLInputElement>('model-url').value.trim();
    if (!url) throw new Error('Enter the URL of a checkpoint folder (config.json and weights inside).');
    return { key: url, files: urlFileSource(url.endsWith('/') ? url : `${url}/`) };
  }
  if (source === 'files') {
    const files = Array.from($<HTMLInputElement>('model-files').files ?? []);
    if (!files.length) throw new Error('Choose a local checkpoint folder.');
    return { key: `files:${files.map((f) => f.name).join(',')}`, files: blobFileSource(files) };
  }
  return { key: BUILTIN, files: urlFileSource(BUILTIN) };
}

async function model(): Promise<GpuModel> {
  const { key, files } = chosenSource();
  if (loaded?.key === key && !loaded.model.ctx.isLost) return loaded.model;
  loaded?.model.destroy();
  loaded = null;
  say('Loading the model…');
  const m = await loadGpuModel(files, {
    maxContext: 2048,
    onProgress: (p) => say(`Loading weights: ${Math.round((p.loadedBytes / p.totalBytes) * 100)}%`),
  });
  loaded = { key, model: m };
  return m;
}

$('run').addEventListener('submit', async (event) => {
  event.preventDefault();
  go.disabled = true;
  stop.disabled = false;
  stopRequested = false;
  output.textContent = '';
  try {
    const ids = $<HTMLInputElement>('ids').value.split(',').map((s) => Number(s.trim()));
    if (ids.some((n) => !Number.isInteger(n) || n < 0)) throw new Error('Prompt ids must be comma-separated non-negative integers.');
    const newTokens = Number($<HTMLInputElement>('new-tokens').value);
    const temperature = Number($<HTMLInputElement>('temperature').value);
    const m = await model();
    m.reset();
    const sampling = temperature > 0 ? { temperature, topK: 0, topP: 1, seed: Date.now() >>> 0 } : GREEDY;
    const t0 = performance.now();
    let first = 0;
    let count = 0;
    for await (const id of m.generate(ids, newTokens, sampling)) {
      if (count++ === 0) first = performance.now();
      output.textContent += `${count > 1 ? ', ' : ''}${id}`;
      if (stopRequested) break;
    }
    const decode = count > 1 ? ((count - 1) / ((performance.now() - first) / 1000)).toFixed(1) : '–';
    say(`${count} tokens · first after ${(first - t0).toFixed(0)} ms · ${decode} tokens/s · ${m.ctx.description}`);
  } catch (e) {
    say((e as Error).message, true);
  } finally {
    go.disabled = false;
    stop.disabled = true;
  }
});

stop.addEventListener('click', () => {
  stopRequested = true;
});
