import type { BackendChoice } from '../engine/backend.ts';
import { usageFromChat } from '../engine/chat.ts';
import type { ChatMessage, ChatUsage } from '../engine/api.ts';
import { describeEngine } from '../engine/describe-engine.ts';
import type { Engine } from '../engine/api.ts';
import type { GenerationResult } from '../engine/generation.ts';
import { WorkerEngine } from '../engine/worker-engine.ts';
// The engine's worker, bundled into this script as a string and started from a Blob URL: a
// page on another origin cannot start a worker from the widget's own origin.
import EngineWorker from '../engine/worker.ts?worker&inline';

// <molm-chat>: a chat box on a MoLM model, for any page. Shadow DOM keeps the page's styles
// out; the model's text is set as textContent, never parsed as HTML.

/**
 * Where the built-in model sits relative to this script in molm-web's own build. The classic
 * script (IIFE) knows its URL from document.currentScript while it runs; the module from
 * import.meta.url.
 */
const SCRIPT_URL = document.currentScript instanceof HTMLScriptElement ? document.currentScript.src : import.meta.url;
const BUILT_IN_MODEL = new URL('../models/molm-brown/', SCRIPT_URL).href;

const STYLE = `
:host { display: block; font: 15px/1.45 system-ui, sans-serif; --molm-accent: #1d4ed8; --molm-ink: #111827;
  --molm-muted: #4b5563; --molm-paper: #ffffff; --molm-panel: #f3f4f6; --molm-user: #dbeafe; --molm-error: #b91c1c; }
:host([theme='dark']) { --molm-accent: #93c5fd; --molm-ink: #f3f4f6; --molm-muted: #d1d5db; --molm-paper: #111827;
  --molm-panel: #1f2937; --molm-user: #1e3a8a; --molm-error: #fca5a5; }
@media (prefers-color-scheme: dark) { :host(:not([theme='light'])) { --molm-accent: #93c5fd; --molm-ink: #f3f4f6;
  --molm-muted: #d1d5db; --molm-paper: #111827; --molm-panel: #1f2937; --molm-user: #1e3a8a; --molm-error: #fca5a5; } }
.box { color: var(--molm-ink); background: var(--molm-paper); border: 1px solid #8888; border-radius: 10px; padding: 10px;
  display: grid; grid-template-columns: minmax(0, 1fr); gap: 8px; }
ol { list-style: none; margin: 0; padding: 0; display: grid; gap: 6px; max-height: 22em; overflow-y: auto; }
ol:empty { display: none; }
li { padding: 6px 10px; border-radius: 8px; background: var(--molm-panel); white-space: pre-wrap; }
li.user { background: var(--molm-user); margin-left: 12%; }
li.assistant { margin-right: 12%; }
/* On a narrow page the message box gives way, not the page: the box's column may be narrower than
   its content's minimum, and the message box narrower than its 20 columns, so Send and Stop stay
   on the screen. */
form { display: flex; gap: 6px; }
textarea { flex: 1; min-width: 0; font: inherit; color: inherit; background: var(--molm-paper); border: 1px solid #6b7280; border-radius: 6px;
  padding: 6px 8px; resize: vertical; min-height: 2.4em; }
button { font: inherit; border-radius: 6px; border: 1px solid var(--molm-accent); padding: 0 14px; cursor: pointer;
  background: var(--molm-accent); color: var(--molm-paper); }
button.stop { background: var(--molm-panel); color: var(--molm-ink); border-color: #6b7280; }
button:disabled { opacity: 0.55; cursor: not-allowed; }
button:focus-visible, textarea:focus-visible { outline: 3px solid var(--molm-accent); outline-offset: 2px; }
.status { margin: 0; font-size: 0.85em; color: var(--molm-muted); min-height: 1.2em; }
.status.error { color: var(--molm-error); }
/* The model's text, and errors that quote a model's URL, can hold a URL or code with no space:
   it breaks anywhere rather than make the page wider than a phone's screen. */
li, .status { overflow-wrap: anywhere; }
.vh { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
`;

export interface MolmChatEventMap {
  token: CustomEvent<{ text: string }>;
  done: CustomEvent<GenerationResult>;
  error: CustomEvent<{ name: string; message: string }>;
}

/**
 * Attributes: `model` (a converted model's URL; default: the built-in model next to this
 * script), `backend` (auto | webgpu | wasm; default auto: WebGPU on a GPU, otherwise the
 * WebAssembly CPU engine), `placeholder`, `theme` (light | dark; default: the system's),
 * `max-tokens`, `temperature`, `system` (a system message). Events (bubbling, composed): `token`
 * (each streamed piece), `done` (the GenerationResult), `error` ({ name, message }).
 */
export class MolmChat extends HTMLElement {
  static observedAttributes = ['placeholder', 'model'];
  private readonly root: ShadowRoot;
  private readonly log: HTMLOListElement;
  private readonly input: HTMLTextAreaElement;
  private readonly send: HTMLButtonElement;
  private readonly stopButton: HTMLButtonElement;
  private readonly status: HTMLParagraphElement;
  private engine: Promise<Engine> | null = null;
  private engineModel = '';
  private engineBackend: BackendChoice = 'auto';
  private history: ChatMessage[] = [];
  private abort: AbortController | null = null;

  constructor() {
    super();
    this.root = this.attachShadow({ mode: 'open' });
    const style = document.createElement('style');
    style.textContent = STYLE;
    const box = document.createElement('div');
    box.className = 'box';
    box.setAttribute('part', 'box');
    this.log = document.createElement('ol');
    this.log.setAttribute('aria-label', 'Messages');
    this.log.setAttribute('aria-live', 'polite');
    const form = document.createElement('form');
    const label = document.createElement('label');
    label.className = 'vh';
    label.htmlFor = 'molm-input';
    label.textContent = 'Message';
    this.input = document.createElement('textarea');
    this.input.id = 'molm-input';
    this.input.rows = 1;
    this.send = button('Send', 'submit');
    this.stopButton = button('Stop', 'button');
    this.stopButton.className = 'stop';
    this.stopButton.hidden = true;
    this.status = document.createElement('p');
    this.status.className = 'status';
    this.status.setAttribute('role', 'status');
    form.append(label, this.input, this.send, this.stopButton);
    box.append(this.log, form, this.status);
    this.root.append(style, box);

    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      void this.ask(this.input.value);
    });
    this.input.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        form.requestSubmit();
      } else if (ev.key === 'Escape') this.stop();
    });
    this.stopButton.addEventListener('click', () => this.stop());
    this.attributeChangedCallback();
  }

  attributeChangedCallback(): void {
    this.input.placeholder = this.getAttribute('placeholder') ?? 'Ask something…';
  }

  disconnectedCallback(): void {
    // A widget taken off the page frees its GPU memory; it loads again (from the cache) if re-added.
    this.stop();
    const engine = this.engine;
    this.engine = null;
    void engine?.then((e) => e.dispose()).catch(() => {});
  }

  /** The model URL the widget uses. */
  get model(): string {
    return new URL(this.getAttribute('model') || BUILT_IN_MODEL, location.href).href;
  }

  /** The backend the widget asks for: the `backend` attribute, 'auto' when absent. */
  get backend(): BackendChoice {
    return (this.getAttribute('backend') || 'auto') as BackendChoice;
  }

  /** Loads the model now rather than at the first message. */
  load(): Promise<Engine> {
    if (this.engine && this.engineModel === this.model && this.engineBackend === this.backend) return this.engine;
    void this.engine?.then((e) => e.dispose()).catch(() => {});
    this.engineModel = this.model;
    this.engineBackend = this.backend;
    this.history = [];
    this.say('Loading the model…');
    const worker = new EngineWorker({ name: 'molm-engine' });
    const engine = WorkerEngine.create(
      {
        model: this.engineModel,
        backend: this.engineBackend,
        onProgress: (p) => {
          if (p.type === 'progress') this.say(`Downloading the model: ${Math.round((p.overallLoaded / p.overallTotal) * 100)}%`);
          else if (p.type === 'ready') this.say('');
        },
      },
      worker,
    );
    this.engine = engine;
    engine.then(
      (e) => {
        // Which engine runs, out of the way: the status line's tooltip and accessible description.
        const { sentence } = describeEngine(e);
        this.status.title = sentence;
        this.status.setAttribute('aria-description', sentence);
      },
      () => {
        if (this.engine === engine) this.engine = null; // the next message tries again
      },
    );
    return engine;
  }

  /** Sends a user message and streams the reply into the conversation. */
  async ask(text: string): Promise<GenerationResult | undefined> {
    if (!text.trim() || this.abort) return undefined;
    this.input.value = '';
    this.item('user', text);
    const abort = (this.abort = new AbortController());
    this.send.disabled = true;
    this.stopButton.hidden = false;
    try {
      const engine = await this.load();
      const system = this.getAttribute('system');
      this.history.push({ role: 'user', content: text });
      const messages: ChatMessage[] = system ? [{ role: 'system', content: system }, ...this.history] : [...this.history];
      const reply = this.item('assistant', '');
      const maxTokens = Number(this.getAttribute('max-tokens') ?? 128);
      const temperature = this.hasAttribute('temperature') ? Number(this.getAttribute('temperature')) : undefined;
      this.say('…');
      let content = '';
      let usage: ChatUsage | undefined;
      let finishReason: GenerationResult['finishReason'] = 'stop';
      const chunks = await engine.chat.completions.create({ messages, stream: true, max_tokens: maxTokens, temperature, signal: abort.signal });
      for await (const chunk of chunks) {
        const piece = chunk.choices[0]?.delta.content;
        if (piece) {
          reply.textContent = content += piece;
          this.emit('token', { text: piece });
        }
        finishReason = chunk.choices[0]?.finish_reason ?? finishReason;
        usage = chunk.usage ?? usage;
      }
      this.history.push({ role: 'assistant', content: content.trim() });
      if (!usage) return undefined;
      this.say(`${usage.completion_tokens} tokens · ${usage.extra.decode_tokens_per_s.toFixed(1)} tokens/s · ${describeEngine(engine).short}`);
      const result: GenerationResult = { text: content, finishReason, usage: usageFromChat(usage) };
      this.emit('done', result);
      return result;
    } catch (e) {
      const err = e as Error;
      this.say(`${err.message}`, true);
      this.emit('error', { name: err.name, message: err.message });
      return undefined;
    } finally {
      this.abort = null;
      this.send.disabled = false;
      this.stopButton.hidden = true;
    }
  }

  /** Ends the reply being streamed (it keeps what it has). */
  stop(): void {
    this.abort?.abort();
  }

  /** Starts a new conversation. */
  async reset(): Promise<void> {
    this.stop();
    this.history = [];
    this.log.replaceChildren();
    await (await this.engine)?.reset();
  }

  private item(role: 'user' | 'assistant', text: string): HTMLLIElement {
    const li = document.createElement('li');
    li.className = role;
    li.setAttribute('part', `message ${role}`);
    li.textContent = text;
    this.log.append(li);
    this.log.scrollTop = this.log.scrollHeight;
    return li;
  }

  /** Errors quote what a model host sent (its status text, its files' contents): text only. */
  private say(text: string, error = false): void {
    this.status.textContent = text;
    this.status.classList.toggle('error', error);
  }

  private emit<K extends keyof MolmChatEventMap>(type: K, detail: MolmChatEventMap[K]['detail']): void {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }
}

function button(text: string, type: 'submit' | 'button'): HTMLButtonElement {
  const b = document.createElement('button');
  b.type = type;
  b.textContent = text;
  return b;
}

/** Defines <molm-chat> (or another tag name) once. */
export function defineMolmChat(tag = 'molm-chat'): void {
  if (!customElements.get(tag)) customElements.define(tag, class extends MolmChat {});
}
