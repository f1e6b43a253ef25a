import { createEngine, deleteCachedModel, listCachedModels, type Engine, type EngineProgress } from '../src/index.ts';

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

const mb = (n: number) => (n / 1e6).toFixed(1);
const download = $('download');
const bar = $<HTMLProgressElement>('download-bar');
const downloadText = $('download-text');
let downloadStart = 0;

/** Shows a download's bytes, speed and time left. */
function showDownload(loaded: number, total: number): void {
  download.hidden = false;
  bar.value = total ? loaded / total : 0;
  const seconds = (performance.now() - downloadStart) / 1000;
  const speed = seconds > 0 ? loaded / seconds : 0;
  const left = speed > 0 ? (total - loaded) / speed : Infinity;
  downloadText.textContent = `${mb(loaded)} of ${mb(total)} MB · ${mb(speed)} MB/s · ${Number.isFinite(left) ? `${left.toFixed(0)} s left` : '…'}`;
}

function describe(e: EngineProgress): string {
  switch (e.type) {
    case 'initiate':
      downloadStart = performance.now();
      return e.downloadBytes > 0 ? `Downloading ${mb(e.downloadBytes)} MB…` : 'Loading from the cache…';
    case 'progress':
      showDownload(e.overallLoaded, e.overallTotal);
      return 'Downloading…';
    case 'upload':
      return `Loading weights: ${Math.round((e.overallLoaded / e.overallTotal) * 100)}%`;
    case 'ready':
      download.hidden = true;
      return 'Ready.';
    default:
      return status.textContent ?? '';
  }
}

/** The cache status: each cached model, its size, and a button that deletes it. */
async function showCache(): Promise<void> {
  const list = $('cache-list');
  const models = await listCachedModels().catch(() => []);
  list.replaceChildren(
    ...models.map((m) => {
      const item = document.createElement('li');
      const name = document.createElement('span');
      name.textContent = `${m.url} · ${mb(m.cachedBytes)} of ${mb(m.bytes)} MB${m.complete ? '' : ' (incomplete)'}`;
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.textContent = 'Delete';
      remove.setAttribute('aria-label', `Delete ${m.url} from the cache`);
      remove.addEventListener('click', async () => {
        await deleteCachedModel(m.url);
        await showCache();
      });
      item.append(name, ' ', remove);
      return item;
    }),
  );
  if (models.length === 0) {
    const none = document.createElement('li');
    none.textContent = 'None yet.';
    list.append(none);
  }
}

async function engine(): Promise<Engine> {
  const url = chosenUrl();
  if (loaded?.url === url) return loaded.engine;
  await loaded?.engine.dispose();
  loaded = null;
  say('Loading the model…');
  try {
    const e = await createEngine({ model: url, onProgress: (p) => say(describe(p)) });
    loaded = { url, engine: e };
    return e;
  } finally {
    download.hidden = true;
    await showCache();
  }
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
      topK: Number($<HTMLInputElement>('top-k').value),
      topP: Number($<HTMLInputElement>('top-p').value),
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

// Share links: ?model=URL picks a converted model, ?prompt=TEXT fills the prompt.
const shared = new URLSearchParams(location.search);
const sharedModel = shared.get('model');
if (sharedModel) {
  (document.querySelector('input[name=source][value=url]') as HTMLInputElement).checked = true;
  $<HTMLInputElement>('model-url').value = sharedModel;
}
const sharedPrompt = shared.get('prompt');
if (sharedPrompt !== null) $<HTMLTextAreaElement>('prompt').value = sharedPrompt;
void showCache();
