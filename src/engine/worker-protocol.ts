import type { ModelConfig } from '../config.ts';
import * as errors from '../errors.ts';
import type { CreateEngineOptions, EngineProgress } from './create.ts';
import type { EngineBackend } from './api.ts';
import type { PackRange } from '../packs/pack-shapes.ts';
import type { GenerateOptions, GenerationProgress, GenerationResult } from './generation.ts';

// The messages between WorkerEngine (the page) and the engine worker (src/engine/worker.ts).
// Everything is structured-cloneable: no functions, signals or GPU objects cross.

export type WorkerCreateOptions = Omit<CreateEngineOptions, 'onProgress' | 'signal' | 'gpu' | 'store' | 'worker'>;

/**
 * Text pieces the worker may post ahead of the page's reading: the page grants one more each
 * time its reader takes a piece ('pull'), so a page that reads slowly holds the generation back
 * instead of piling up messages.
 */
export const CHUNK_WINDOW = 8;

export type ToWorker =
  | { kind: 'create'; options: WorkerCreateOptions }
  // `progress`: post a 'tokens' message after each new token (the page's onProgress).
  | { kind: 'generate'; id: number; prompt: string; options: Omit<GenerateOptions, 'signal' | 'onProgress'>; progress: boolean }
  | { kind: 'pull'; id: number; pieces: number }
  | { kind: 'abort'; id: number }
  | { kind: 'encode'; id: number; text: string }
  | { kind: 'decode'; id: number; ids: number[] }
  | { kind: 'reset'; id: number }
  | { kind: 'setPacks'; id: number; packs: string[] }
  | { kind: 'dispose'; id: number };

/** What each request answers with. */
export interface Replies {
  generate: GenerationResult;
  encode: number[];
  decode: string;
  reset: null;
  /** The model's config and packs after the change (or after a failed change: what it runs now). */
  setPacks: { config: ModelConfig; packs: PackRange[] };
  dispose: null;
}

export type RequestKind = keyof Replies;

/** The reply to one request, typed by the request's kind. */
export type Reply = { [K in RequestKind]: { kind: 'reply'; id: number; request: K; value: Replies[K] } }[RequestKind];

export interface SerializedError {
  name: string;
  message: string;
  stack?: string;
  cause?: SerializedError;
}

export type FromWorker =
  | { kind: 'progress'; event: EngineProgress }
  | { kind: 'ready'; config: ModelConfig; maxContext: number; device: string; backend: EngineBackend; packs: PackRange[] }
  | { kind: 'chunk'; id: number; text: string }
  | { kind: 'tokens'; id: number; progress: GenerationProgress }
  | Reply
  | { kind: 'error'; id?: number; error: SerializedError; state?: Replies['setPacks'] };

/** Causes kept across the boundary: enough for any real chain, bounded for a cyclic one. */
const MAX_CAUSES = 8;

/** An error as the worker posts it: class name, message, stack and its chain of causes. */
export function serializeError(e: unknown, depth = 0): SerializedError {
  const err = e instanceof Error ? e : new Error(String(e));
  const out: SerializedError = { name: err.name, message: err.message };
  if (err.stack) out.stack = err.stack;
  if (err.cause !== undefined && depth < MAX_CAUSES) out.cause = serializeError(err.cause, depth + 1);
  return out;
}

/**
 * The error on this side of the boundary: one of molm-web's classes when the name is one
 * (so `instanceof DeviceLostError` works on the page), with its cause chain and the worker's stack.
 */
export function deserializeError(s: SerializedError): Error {
  const known = (errors as Record<string, unknown>)[s.name];
  const Ctor =
    typeof known === 'function' && (known === errors.MolmError || known.prototype instanceof errors.MolmError) ? (known as typeof errors.MolmError) : Error;
  const e = s.cause ? new Ctor(s.message, { cause: deserializeError(s.cause) }) : new Ctor(s.message);
  if (Ctor === Error) e.name = s.name;
  if (s.stack) e.stack = s.stack;
  return e;
}
