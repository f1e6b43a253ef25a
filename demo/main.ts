import { createEngine, type Engine, type EngineProgress } from '../src/index.ts';

// The demo is UI only: it picks a model, hands prompts to the engine (which runs in a Web
// Worker) and shows the streamed text.
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = $('status');
const echo = $('prompt-echo');
const continuation = $('continuation');
const go = $<HTMLButtonElement>('go');
const stop = $<HTMLButtonElement>('stop');
const BUILTIN = new URL('models/molm-brown/', new URL(import.meta.env.BASE_URL, location.href)).href;

let loaded: { url: string; engine: Engine } | null = null;
let abort: AbortController | null = null;

function say(text: string, error = false): void {
  status.textContent = text;
  status.classList.toggle('error', error);
}

function chosenUrl(): string {
  const source = (document.querySelector('input[name=source]:checked') as HTMLInputElement).value;
  if (source === 'url') {
    const url = $<HTMLInputElement>('model-url').value.trim();
    if (!url) throw new Error('Enter the URL of a converted model (its manifest.json or its folder).');
    return url;
  }
  return BUILTIN;
}

function describe(e: EngineProgress): string {
  const mb = (n: number) => (n / 1e6).toFixed(1);
  switch (e.type) {
    case 'initiate':
      return e.downloadBytes > 0 ? `Downloading ${mb(e.downloadBytes)} MB…` : 'Loading from the cache…';
    case 'progress':
      return `Downloading: ${mb(e.overallLoaded)} of ${mb(e.overallTotal)} MB`;
    case 'upload':
      return `Loading weights: ${Math.round((e.overallLoaded / e.overallTotal) * 100)}%`;
    case 'ready':
      return 'Ready.';
    default:
      return status.textContent ?? '';
  }
}

async function engine(): Promise<Engine> {
  const url = chosenUrl();
  if (loaded?.url === url) return loaded.engine;
  await loaded?.engine.dispose();
  loaded = null;
  say('Loading the model…');
  const e = await createEngine({ model: url, onProgress: (p) => say(describe(p)) });
  loaded = { url, engine: e };
  return e;
}

$('run').addEventListener('submit', async (event) => {
  event.preventDefault();
  go.disabled = true;
  stop.disabled = false;
  abort = new AbortController();
  const prompt = $<HTMLTextAreaElement>('prompt').value;
  echo.textContent = prompt;
  continuation.textContent = '';
  try {
    const e = await engine();
    const stream = e.generate(prompt, {
      maxNewTokens: Number($<HTMLInputElement>('new-tokens').value),
      temperature: Number($<HTMLInputElement>('temperature').value),
      seed: Number($<HTMLInputElement>('seed').value),
      signal: abort.signal,
    });
    say('Generating…');
    // Model output is text, never HTML.
    for await (const text of stream) continuation.textContent += text;
    const { usage, finishReason } = await stream.result;
    say(
      `${usage.completionTokens} tokens (${finishReason}) · first after ${usage.timeToFirstTokenMs.toFixed(0)} ms · ` +
        `${usage.decodeTokensPerS.toFixed(1)} tokens/s · ${e.device}`,
    );
  } catch (err) {
    say(`${(err as Error).name}: ${(err as Error).message}`, true);
  } finally {
    go.disabled = false;
    stop.disabled = true;
  }
});

stop.addEventListener('click', () => abort?.abort());
