import {
  ComputeThreadError,
  DeviceLimitError,
  createEngine,
  deleteCachedModel,
  listCachedModels,
  type ChatMessage,
  type Engine,
  type EngineProgress,
  type GenerateOptions,
  type GenerationProgress,
  type RoutingTrace,
  type Usage,
  usageFromChat,
} from '../src/index.ts';
import { chooseBackend, type BackendChoice } from '../src/engine/backend.ts';
import { describeEngine } from '../src/engine/describe-engine.ts';
import { browserGpu } from '../src/gpu/browser-gpu.ts';
import { defaultShardStore } from '../src/store/shard-store.ts';
import { type PackRanges, renderRouting } from './routing-view.ts';

// The demo is UI only: it picks a model, hands the conversation to the engine (which runs in
// a Web Worker) and shows the streamed reply, its speed and its expert routing.
const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const status = $('status');
const messages = $('messages');
const promptBox = $<HTMLTextAreaElement>('prompt');
const go = $<HTMLButtonElement>('go');
const stop = $<HTMLButtonElement>('stop');
const BUILTIN = new URL('models/molm-brown/', new URL(import.meta.env.BASE_URL, location.href)).href;
/** The expert pack shipped for the built-in model: JavaScript and TypeScript experts. */
const PACK = new URL('models/molm-brown-js/', new URL(import.meta.env.BASE_URL, location.href)).href;

let loaded: { url: string; backend: BackendChoice; engine: Engine } | null = null;
let abort: AbortController | null = null;
/** The conversation so far: chat messages, or in text mode the pieces of one document. */
let history: ChatMessage[] = [];
let lastRouting: RoutingTrace | null = null;
/** The expert packs of the model that made lastRouting (engine.packs then). */
let lastPacks: PackRanges = [];
/** A reply (with the model's loading) is under way. */
let generating = false;
/** The expert pack is being added or removed. */
let switching = false;

// Errors quote what a model host sent (its status text, its files' contents): text only.
function say(text: string, error = false): void {
  status.textContent = text;
  status.classList.toggle('error', error);
}

const chosenSource = () => (document.querySelector('input[name=source]:checked') as HTMLInputElement).value;

function chosenUrl(): string {
  if (chosenSource() === 'url') {
    const url = $<HTMLInputElement>('model-url').value.trim();
    if (!url) throw new Error('Enter the URL of a converted model (its manifest.json or its folder).');
    return url;
  }
  return BUILTIN;
}

const chosenBackend = () => (document.querySelector('input[name=backend]:checked') as HTMLInputElement).value as BackendChoice;
const chatMode = () => (document.querySelector('input[name=mode]:checked') as HTMLInputElement).value === 'chat';
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

/**
 * An error as a sentence a user can act on. DeviceLimitError covers several matters, each said
 * as what it is: no WebGPU (only when WebGPU was asked for: Auto falls back to the CPU engine),
 * a CPU engine this browser cannot run, and a device or memory too small for the model.
 */
function explain(err: unknown): string {
  const e = err as Error;
  if (e.name === 'DeviceLimitError' || err instanceof DeviceLimitError) {
    if (/no WebGPU|WebGPU is not available|No WebGPU adapter/i.test(e.message)) {
      return `WebGPU is not available: ${e.message} Choose “Auto” or “CPU (WebAssembly)” under Engine to run the model on the processor.`;
    }
    if (/WebAssembly has no SIMD/.test(e.message)) return `The CPU engine cannot run in this browser: ${e.message}`;
    return `This device cannot hold this model: ${e.message}`;
  }
  if (e.name === 'ComputeThreadError' || err instanceof ComputeThreadError) {
    return `The CPU engine stopped (${e.message}). The next message loads it again.`;
  }
  return `${e.name}: ${e.message}`;
}

const engineLine = $('engine');

async function engine(): Promise<Engine> {
  const url = chosenUrl();
  const backend = chosenBackend();
  if (loaded?.url === url && loaded.backend === backend) return loaded.engine;
  await loaded?.engine.dispose();
  loaded = null;
  say('Loading the model…');
  engineLine.textContent = 'The engine is chosen when the model loads.';
  // The built-in model loads with the expert pack when its switch is on.
  const packs = url === BUILTIN && pack && packToggle.checked ? [PACK] : undefined;
  try {
    const e = await createEngine({ model: url, backend, packs, onProgress: (p) => say(describe(p)) });
    loaded = { url, backend, engine: e };
    engineLine.textContent = describeEngine(e).sentence;
    if (packs) sayPack(expertsOf(e));
    return e;
  } catch (err) {
    if (packs) sayPack('The model did not load with the expert pack; turn the pack off to run the base model alone.', true);
    throw err;
  } finally {
    download.hidden = true;
    await showCache();
  }
}

/** Appends a message to the conversation; its text goes in as text, never as HTML. */
function addMessage(role: 'user' | 'assistant', text: string): { body: HTMLElement; meta: HTMLElement } {
  const item = document.createElement('li');
  item.className = `message ${role}`;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = role === 'user' ? 'You' : 'Model';
  const body = document.createElement('div');
  body.className = 'text';
  body.textContent = text;
  const meta = document.createElement('div');
  meta.className = 'meta';
  item.append(who, body, meta);
  messages.append(item);
  item.scrollIntoView({ block: 'end' });
  return { body, meta };
}

function settings(): GenerateOptions {
  const n = (id: string) => Number($<HTMLInputElement>(id).value);
  return { maxNewTokens: n('new-tokens'), temperature: n('temperature'), topK: n('top-k'), topP: n('top-p'), seed: n('seed') };
}

const live = (p: GenerationProgress) =>
  `Generating… ${p.completionTokens} tokens · first after ${p.timeToFirstTokenMs.toFixed(0)} ms` +
  (p.completionTokens > 1 ? ` · ${p.decodeTokensPerS.toFixed(1)} tokens/s` : '');

const summary = (u: Usage, finishReason: string, e: Engine) =>
  `${u.completionTokens} tokens (${finishReason}) · first after ${u.timeToFirstTokenMs.toFixed(0)} ms · ` +
  `${u.decodeTokensPerS.toFixed(1)} tokens/s · ${describeEngine(e).label}`;

/** Streams one reply: chat messages through chat.completions, or the document continued. */
async function reply(e: Engine, input: string, signal: AbortSignal): Promise<void> {
  const onProgress = (p: GenerationProgress) => say(live(p));
  const out = addMessage('assistant', '');
  out.body.classList.add('streaming');
  let text = '';
  let usage: Usage | undefined;
  let finish = '';
  if (chatMode()) {
    history.push({ role: 'user', content: input });
    const s = settings();
    const chunks = await e.chat.completions.create({
      messages: history,
      stream: true,
      max_tokens: s.maxNewTokens,
      temperature: s.temperature,
      top_k: s.topK,
      top_p: s.topP,
      seed: s.seed,
      routing_trace: true,
      signal,
      onProgress,
    });
    for await (const chunk of chunks) {
      const piece = chunk.choices[0]?.delta.content;
      if (piece) out.body.textContent = text += piece;
      if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
      if (chunk.usage) {
        usage = usageFromChat(chunk.usage);
        lastRouting = chunk.routing ?? null;
      }
    }
    history.push({ role: 'assistant', content: text.trim() });
  } else {
    // Text mode: the conversation is one document the model continues.
    history.push({ role: 'user', content: input });
    const document = history.map((m) => m.content).join('');
    const stream = e.generate(document, { ...settings(), routingTrace: true, signal, onProgress });
    for await (const piece of stream) out.body.textContent = text += piece;
    const r = await stream.result;
    usage = r.usage;
    finish = r.finishReason;
    lastRouting = r.routing ?? null;
    history.push({ role: 'assistant', content: text });
  }
  // The packs cannot change during a reply (the switch is disabled): these made the routing.
  lastPacks = e.packs;
  out.body.classList.remove('streaming');
  if (usage) {
    const line = summary(usage, finish, e);
    out.meta.textContent = line;
    say(line);
  }
  showRouting();
}

function showRouting(): void {
  if (!lastRouting) return;
  renderRouting($('routing'), $('routing-readout'), lastRouting, $<HTMLInputElement>('routing-prompt').checked, lastPacks);
}

$('run').addEventListener('submit', async (event) => {
  event.preventDefault();
  if (go.disabled) return;
  const input = promptBox.value;
  if (!input.trim() && chatMode()) return;
  go.disabled = true;
  stop.disabled = false;
  generating = true;
  showPackSwitch();
  abort = new AbortController();
  addMessage('user', input);
  promptBox.value = '';
  try {
    const e = await engine();
    say('Generating…');
    await reply(e, input, abort.signal);
  } catch (err) {
    say(explain(err), true);
    if ((err as Error).name === 'ComputeThreadError' && loaded) {
      const dead = loaded.engine;
      loaded = null;
      void dead.dispose().catch(() => {});
    }
  } finally {
    go.disabled = false;
    stop.disabled = true;
    generating = false;
    showPackSwitch();
    promptBox.focus();
  }
});

// The settings are read when a message is sent; Enter in one of them must not reload the page.
$('settings-form').addEventListener('submit', (ev) => ev.preventDefault());
promptBox.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    $<HTMLFormElement>('run').requestSubmit();
  }
});
document.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && !stop.disabled) abort?.abort();
});
stop.addEventListener('click', () => abort?.abort());
$('clear').addEventListener('click', async () => {
  abort?.abort();
  history = [];
  messages.replaceChildren();
  await loaded?.engine.reset();
  say('');
});
$('routing-prompt').addEventListener('change', showRouting);
// Another engine loads at the next message (the conversation stays: it is text).
for (const radio of document.querySelectorAll('input[name=backend]')) {
  radio.addEventListener('change', () => {
    void showWebGpuNote();
    if (!loaded) return;
    const next = loaded.backend === chosenBackend() ? '' : ' The next message loads the engine chosen under Engine.';
    engineLine.textContent = describeEngine(loaded.engine).sentence + next;
  });
}
// A new mode starts a new conversation: a chat transcript is not a document, nor the reverse.
for (const radio of document.querySelectorAll('input[name=mode]')) radio.addEventListener('change', () => $('clear').click());
for (const radio of document.querySelectorAll('input[name=source]')) radio.addEventListener('change', showPackSwitch);

// The expert pack: new attention and MLP experts, and router rows, added to every layer of the
// built-in model. The switch runs engine.setPacks on the loaded model (src/engine/api.ts: it
// rebuilds the model and forgets the context), or, before the model loads, decides what
// createEngine loads. Its name, field and size come from the pack's manifest.
const packBox = $('pack');
const packToggle = $<HTMLInputElement>('pack-toggle');
const packStatus = $('pack-status');

interface PackAbout {
  name: string;
  domain: string;
  attExperts: number;
  mlpExperts: number;
  bytes: number;
}
let pack: PackAbout | null = null;

/** What the demo shows of a pack manifest (text only: it is the host's), or null for anything else. */
function aboutPack(m: unknown): PackAbout | null {
  const o = m as { format?: unknown; name?: unknown; domain?: unknown; adds?: { attExperts?: unknown; mlpExperts?: unknown }; shards?: unknown };
  if (o?.format !== 'molm-web-pack' || typeof o.name !== 'string' || typeof o.domain !== 'string') return null;
  const count = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0);
  const shards = Array.isArray(o.shards) ? (o.shards as { bytes?: unknown }[]) : [];
  return {
    name: o.name,
    domain: o.domain,
    attExperts: count(o.adds?.attExperts),
    mlpExperts: count(o.adds?.mlpExperts),
    bytes: shards.reduce((a, s) => a + count(s?.bytes), 0),
  };
}

/**
 * The shipped pack's manifest from the site, or, offline, as the shard cache stored it when the
 * pack was last loaded (then its shards are cached too); null when this site has no pack.
 */
async function findPack(): Promise<PackAbout | null> {
  const url = `${PACK}manifest.json`;
  try {
    const r = await fetch(url);
    if (r.status === 404) return null;
    if (r.ok) return aboutPack(await r.json());
  } catch {
    // Offline (or not JSON): the cached copy, if any.
  }
  const record = await defaultShardStore()
    .getModel(url)
    .catch(() => undefined);
  return record ? aboutPack(record.manifest) : null;
}

function sayPack(text: string, error = false): void {
  packStatus.textContent = text;
  packStatus.classList.toggle('error', error);
}

/** The experts per layer the engine's model has, and which came from packs. */
function expertsOf(e: Engine): string {
  const c = e.config;
  if (e.packs.length === 0) return `Base model: ${c.nAttExperts} attention + ${c.nMlpExperts} MLP experts per layer.`;
  const added = e.packs.map((p) => `${p.att[1] - p.att[0]} attention + ${p.mlp[1] - p.mlp[0]} MLP experts per layer added (${p.name})`);
  return `${added.join('; ')}: ${c.nAttExperts} + ${c.nMlpExperts} in all.`;
}

/** The switch: shown for the built-in model when the site has the pack; usable between replies. */
function showPackSwitch(): void {
  packBox.hidden = !pack || chosenSource() !== 'builtin';
  packToggle.disabled = generating || switching;
}

/** The conversation starts again (the model changed, and forgot the context). */
function restartConversation(): void {
  history = [];
  messages.replaceChildren();
  lastRouting = null;
  const none = document.createElement('p');
  none.className = 'hint';
  none.textContent = 'Generate a reply to see its routing.';
  $('routing').replaceChildren(none);
  $('routing-readout').textContent = '';
  say('');
}

packToggle.addEventListener('change', async () => {
  const on = packToggle.checked;
  const e = loaded?.url === BUILTIN ? loaded.engine : null;
  if (!e) {
    sayPack(on ? 'The JavaScript experts are added when the model loads, with the next message.' : 'Base model.');
    return;
  }
  switching = true;
  go.disabled = true;
  showPackSwitch();
  sayPack(on ? 'Adding the JavaScript experts…' : 'Removing the JavaScript experts…');
  try {
    await e.setPacks(on ? [PACK] : []);
    restartConversation();
    sayPack(`${expertsOf(e)} The conversation starts anew: the model changed, and forgot the context.`);
  } catch (err) {
    // A pack that failed leaves the engine on what it had.
    sayPack(`${on ? 'The JavaScript experts could not be added' : 'The JavaScript experts could not be removed'}: ${explain(err)}`, true);
  } finally {
    packToggle.checked = e.packs.length > 0;
    switching = false;
    go.disabled = false;
    showPackSwitch();
    void showCache();
  }
});

void findPack().then((found) => {
  pack = found;
  if (found) {
    $('pack-name').textContent = found.name;
    $('pack-about').textContent =
      `Adds ${found.attExperts} attention and ${found.mlpExperts} MLP experts to each layer of the built-in model, ` +
      `trained on ${found.domain}; ${mb(found.bytes)} MB, kept for offline use once loaded. Switching restarts the conversation.`;
  }
  showPackSwitch();
});

// Share links: ?model=URL picks a converted model, ?prompt=TEXT fills the prompt, ?backend=
// auto | webgpu | wasm picks the engine.
const shared = new URLSearchParams(location.search);
const sharedModel = shared.get('model');
if (sharedModel) {
  (document.querySelector('input[name=source][value=url]') as HTMLInputElement).checked = true;
  $<HTMLInputElement>('model-url').value = sharedModel;
}
const sharedPrompt = shared.get('prompt');
if (sharedPrompt !== null) promptBox.value = sharedPrompt;
const sharedBackend = shared.get('backend');
const backendRadio = document.querySelector(`input[name=backend][value="${CSS.escape(sharedBackend ?? '')}"]`) as HTMLInputElement | null;
if (backendRadio) backendRadio.checked = true;

/**
 * Whether this browser's WebGPU is what Auto would use, and if not why: the same test
 * createEngine makes (chooseBackend: no navigator.gpu, no adapter, or a CPU emulation of one).
 * It asks for an adapter once, on load; no device.
 */
const webGpuProbe = chooseBackend('auto', browserGpu).catch(() => null);
const GET_WEBGPU =
  'For GPU speed use a current Chrome or Edge, Safari 26+, or Firefox 141+ on Windows; on Linux, Chrome needs chrome://flags/#enable-unsafe-webgpu.';

/** The note under the header: what the chosen engine will meet in this browser. */
async function showWebGpuNote(): Promise<void> {
  const probe = await webGpuProbe;
  const banner = $('no-webgpu');
  const choice = chosenBackend();
  banner.hidden = true;
  if (!probe || probe.kind === 'webgpu' || choice === 'wasm') return;
  const emulated = probe.reason === 'the WebGPU adapter is a CPU emulation';
  const why =
    probe.reason === 'no WebGPU'
      ? 'This browser has no WebGPU'
      : emulated
        ? "This browser's WebGPU runs on the processor (a CPU emulation such as SwiftShader)"
        : 'WebGPU found no graphics adapter here (no GPU, or hardware acceleration is off: see chrome://gpu)';
  if (choice === 'auto') {
    banner.textContent =
      `${why}, so the model runs on the processor, with the CPU engine (WebAssembly). ` +
      (emulated ? 'The CPU engine is the faster of the two here; choose WebGPU under Engine to compare.' : GET_WEBGPU);
  } else if (emulated) {
    banner.textContent = `${why}: WebGPU will work, slowly; “Auto” or “CPU (WebAssembly)” under Engine is faster here.`;
  } else {
    banner.textContent = `${why}, so WebGPU cannot run the model: choose “Auto” or “CPU (WebAssembly)” under Engine. ${GET_WEBGPU}`;
  }
  banner.hidden = false;
}
void showWebGpuNote();
void showCache();
