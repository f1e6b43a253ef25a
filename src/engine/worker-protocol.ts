import type { ModelConfig } from '../config.ts';
import * as errors from '../errors.ts';
import type { CreateEngineOptions, EngineProgress } from './create.ts';
import type { EngineBackend } from './engine.ts';
import type { GenerateOptions, GenerationProgress, GenerationResult } from './generation.ts';

// The messages between WorkerEngine (the page) and the engine worker (src/engine/worker.ts).
// Everything is structured-cloneable: no functions, signals or GPU objects cross.

export type WorkerCreateOptions = Omit<CreateEngineOptions, 'onProgress' | 'signal' | 'gpu' | 'store' | 'worker'>;

export type ToWorker =
  | { kind: 'create'; options: WorkerCreateOptions }
  // `progress`: post a 'tokens' message after each new token (the page's onProgress).
  | { kind: 'generate'; id: number; prompt: string; options: Omit<GenerateOptions, 'signal' | 'onProgress'>; progress: boolean }
  | { kind: 'abort'; id: number }
  | { kind: 'encode'; id: number; text: string }
  | { kind: 'decode'; id: number; ids: number[] }
  | { kind: 'reset'; id: number }
  | { kind: 'dispose'; id: number };

export interface SerializedError {
  name: string;
  message: string;
}

export type FromWorker =
  | { kind: 'progress'; event: EngineProgress }
  | { kind: 'ready'; config: ModelConfig; maxContext: number; device: string; backend: EngineBackend }
  | { kind: 'chunk'; id: number; text: string }
  | { kind: 'tokens'; id: number; progress: GenerationProgress }
  | { kind: 'result'; id: number; result: GenerationResult }
  | { kind: 'value'; id: number; value: unknown }
  | { kind: 'error'; id?: number; error: SerializedError };

export function serializeError(e: unknown): SerializedError {
  const err = e instanceof Error ? e : new Error(String(e));
  return { name: err.name, message: err.message };
}

/** The same error class on this side of the worker boundary, where it is one of molm-web's. */
export function deserializeError(s: SerializedError): Error {
  const known = (errors as Record<string, unknown>)[s.name];
  const Ctor = typeof known === 'function' && (known === errors.MolmError || known.prototype instanceof errors.MolmError) ? (known as typeof errors.MolmError) : Error;
  const e = new Ctor(s.message);
  if (Ctor === Error) e.name = s.name;
  return e;
}
