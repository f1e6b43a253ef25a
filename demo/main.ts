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
import { DEFAULT_HUB_URL, parseHubUrl } from '../src/checkpoint/hub.ts';
import type { ImportProgress } from '../src/shards/hub-store-import.ts';
import { checkReleases, drawReleases, type ReleaseRow, showVerdicts } from './release-list.ts';
import { formatBytes, RELEASE_DTYPE, type Release } from './releases.ts';
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
/** The model being loaded (a release's import may take hours): one load at a time. */
let pending: { url: string; backend: BackendChoice; engine: Promise<Engine> } | null = null;
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

/**
 * The hub IBM's models come from: huggingface.co, or ?hub=URL (a mirror, or the tests' stand-in
 * on 127.0.0.1); a value that is not an http(s) address is ignored, and said so.
 */
const askedHub = new URLSearchParams(location.search).get('hub');
let badHub = false;
const hubUrl = (() => {
  if (askedHub === null) return DEFAULT_HUB_URL;
  try {
    return parseHubUrl(askedHub);
  } catch {
    badHub = true;
    return DEFAULT_HUB_URL;
  }
})();
/** The release chosen in "Models from IBM" (source 'hub'). */
let release: Release | null = null;

/** The model to load: its cache identity (what `loaded` is keyed by) and createEngine's options for it. */
interface ModelChoice {
  url: string;
  model: string;
  release?: Release;
}

function chosenModel(): ModelChoice {
  const source = chosenSource();
  if (source === 'hub' && release) return { url: `${hubUrl}/${release.repo}@${RELEASE_DTYPE}`, model: release.repo, release };
  if (source === 'url') {
    const url = $<HTMLInputElement>('model-url').value.trim();
    if (!url) throw new Error('Enter the URL of a converted model (its manifest.json or its folder).');
    return { url, model: url };
  }
  return { url: BUILTIN, model: BUILTIN };
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
    case 'import':
      showImport(e);
      return `Downloading and converting ${e.repo.replace(/^.*\//, '')} (see Models from IBM)…`;
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
  // What is cached changes what the releases need of the storage.
  void refreshReleases();
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
  if (e.name === 'AbortError') return e.message;
  if (e.name === 'QuotaError') return `The browser's storage has no room for the model: ${e.message}`;
  return `${e.name}: ${e.message}`;
}

const engineLine = $('engine');

/**
 * The engine of the chosen model, loaded if need be (one load at a time: a message sent while
 * a release is being imported waits for it). `signal` stops the loading: a release's import
 * keeps what it stored, and goes on from there the next time.
 */
async function engine(signal?: AbortSignal): Promise<Engine> {
  const choice = chosenModel();
  const backend = backendFor(choice);
  if (loaded?.url === choice.url && loaded.backend === backend) return loaded.engine;
  if (pending?.url === choice.url && pending.backend === backend) return pending.engine;
  if (pending) throw new Error('Another model is loading: wait for it, or stop it.');
  const load = loadEngine(choice, backend, signal);
  pending = { url: choice.url, backend, engine: load };
  showVerdicts($('release-list'), releaseRows, true);
  try {
    return await load;
  } finally {
    pending = null;
    await showCache();
  }
}

/** The engine for a model: Engine's choice, except that a release checked to fit only the CPU engine runs there under Auto. */
function backendFor(choice: ModelChoice): BackendChoice {
  const backend = chosenBackend();
  if (!choice.release || backend !== 'auto') return backend;
  const row = releaseRows.find((r) => r.release === choice.release);
  return row?.verdict.kind === 'cpu-only' ? 'wasm' : backend;
}

async function loadEngine(choice: ModelChoice, backend: BackendChoice, signal?: AbortSignal): Promise<Engine> {
  await loaded?.engine.dispose();
  loaded = null;
  say('Loading the model…');
  engineLine.textContent = 'The engine is chosen when the model loads.';
  // The built-in model loads with the expert pack when its switch is on.
  const packs = choice.url === BUILTIN && pack && packToggle.checked ? [PACK] : undefined;
  const hub = choice.release ? { hubUrl, dtype: RELEASE_DTYPE } : {};
  if (choice.release) {
    // The import's own Stop, with the message's (Stop, Escape) when a message started it.
    const stop = new AbortController();
    importing = { stop, last: null };
    // (Without AbortSignal.any, in older browsers, only the import's own Stop stops it.)
    signal = signal && typeof AbortSignal.any === 'function' ? AbortSignal.any([signal, stop.signal]) : stop.signal;
    startImport(choice.release);
  }
  const options = { model: choice.model, backend, packs, signal, ...hub, onProgress: (p: EngineProgress) => say(describe(p)) };
  try {
    let e: Engine;
    try {
      e = await createEngine(options);
    } catch (err) {
      // A release the GPU has no room for: the experts under a budget, a quarter of them on the
      // GPU and the rest copied in from memory when picked (docs/experts.md).
      if (!choice.release || !/has no room/.test((err as Error).message) || (err as Error).name !== 'DeviceLimitError') throw err;
      say(`The GPU has no room for all of ${choice.release.name}: loading it with a quarter of its experts on the GPU, the rest streamed in…`);
      e = await createEngine({ ...options, backend: 'webgpu', gpuMemoryBudget: '25%' });
    }
    loaded = { url: choice.url, backend, engine: e };
    engineLine.textContent = describeEngine(e).sentence;
    if (packs) sayPack(expertsOf(e));
    if (choice.release) endImport(`${choice.release.name} is ready: ${describeEngine(e).label}.`);
    return e;
  } catch (err) {
    if (packs) sayPack('The model did not load with the expert pack; turn the pack off to run the base model alone.', true);
    const stopped = choice.release ? importStopped(choice.release, err) : 'Loading the model stopped.';
    if (choice.release) endImport(stopped);
    if ((err as Error).name === 'AbortError') throw Object.assign(new Error(stopped), { name: 'AbortError' });
    throw err;
  } finally {
    download.hidden = true;
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
    const e = await engine(abort.signal);
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
    void refreshReleases();
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
  // Hidden, it is no control (and nothing to tap on a phone).
  packToggle.disabled = packBox.hidden || generating || switching;
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

// Models from IBM: the three released MoLMs, each with its sizes and what this device can do
// with it (checked before any download, again when Engine changes or the cache does). Choosing
// one imports it from the hub into the shard cache (createEngine with the repo id: converted to
// q4 in the engine's worker, shard by shard, resumable) and loads it.
const releaseList = $('release-list');
const hubImport = $('hub-import');
const importBar = $<HTMLProgressElement>('hub-import-bar');
const importText = $('hub-import-text');
const importStop = $<HTMLButtonElement>('hub-import-stop');
let releaseRows: ReleaseRow[] = [];
/** The import under way: its stop, and its last progress event. */
let importing: { stop: AbortController; last: ImportProgress | null } | null = null;
let checks = 0;

/** Checks the device again and redraws the verdicts (the latest check wins). */
async function refreshReleases(): Promise<void> {
  const n = ++checks;
  const rows = await checkReleases(hubUrl, chosenBackend(), await webGpuProbe).catch((err) => {
    console.warn('molm-web: the device check failed', err);
    return null;
  });
  if (!rows || n !== checks) return;
  releaseRows = rows;
  showVerdicts(releaseList, rows, pending !== null);
}

function chooseRelease(r: Release): void {
  release = r;
  const radio = document.querySelector<HTMLInputElement>('input[name=source][value=hub]')!;
  radio.disabled = false;
  radio.checked = true;
  $('hub-choice').textContent = `${r.name}, from the hub, as q4`;
  showPackSwitch();
  engine().then(
    () => say(`${r.name} is loaded: send a message.`),
    (err) => say(explain(err), true),
  );
}

function startImport(r: Release): void {
  hubImport.hidden = false;
  importBar.hidden = false;
  importStop.hidden = false;
  importStop.disabled = false;
  importBar.removeAttribute('value');
  importText.textContent = `${r.name}: looking at the repo on ${new URL(hubUrl).host}…`;
}

/** One import event: MB read from the hub, MB stored of the converted copy, and the time left. */
function showImport(p: ImportProgress): void {
  if (importing) importing.last = p;
  importBar.value = p.totalBytes ? p.writtenBytes / p.totalBytes : 0;
  const left = p.secondsLeft === null ? 'time left: measuring' : p.secondsLeft > 0 ? `about ${duration(p.secondsLeft)} left` : 'stored';
  const resumed = p.resumedBytes > 0 ? ` (${formatBytes(p.resumedBytes)} from before)` : '';
  importText.textContent =
    `${p.repo.replace(/^.*\//, '')}: ${formatBytes(p.readBytes)} read from the hub · ` +
    `${formatBytes(p.writtenBytes)} of ${formatBytes(p.totalBytes)} stored${resumed} · ${left}`;
}

function duration(seconds: number): string {
  if (seconds < 90) return `${Math.ceil(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

/** What a stopped or failed import leaves, in words. */
function importStopped(r: Release, err: unknown): string {
  const last = importing?.last;
  const kept =
    last && last.writtenBytes > 0
      ? ` ${formatBytes(last.writtenBytes)} of ${formatBytes(last.totalBytes)} are stored: choosing it again goes on from there.`
      : '';
  if ((err as Error).name === 'AbortError') return `Stopped ${r.name}.${kept}`;
  return `${r.name} did not load: ${explain(err)}${kept}`;
}

function endImport(text: string): void {
  importing = null;
  // Hidden and disabled: not a control until the next import.
  importStop.hidden = true;
  importStop.disabled = true;
  importBar.hidden = true;
  importText.textContent = text;
}

importStop.addEventListener('click', () => {
  importStop.disabled = true;
  importing?.stop.abort();
});

$('hub-name').textContent = new URL(hubUrl).host + (badHub ? ' (the page’s ?hub= is not an http(s) address)' : '');
drawReleases(releaseList, hubUrl, chooseRelease);
