import { ModelFormatError } from './errors.ts';
import { CONFIG_BOUNDS, LIMITS, MAX_PARAMETERS, describeValue, parseJsonObject } from './limits.ts';

/**
 * The shapes and constants that the MoLM / ModuleFormer math needs, read from a Hugging Face
 * config.json. Names follow the JSON keys in camelCase. Keys the math does not use are ignored.
 */
export interface ModelConfig {
  vocabSize: number;
  nEmbd: number; // C
  nLayer: number;
  nHead: number;
  attHidden: number; // A: width of one attention expert's query (all heads together)
  ffdHidden: number; // F
  gatingSize: number; // G: hidden width of the router MLP
  nAttExperts: number;
  kAtt: number;
  nMlpExperts: number;
  kMlp: number;
  layerNormEpsilon: number;
  bosTokenId: number;
  eosTokenId: number;
  /** n_ctx: the longest context the model is meant for (undefined when the config has none). */
  nCtx?: number;
}

/** Head size d = A / n_head. */
export function headSize(c: ModelConfig): number {
  return c.attHidden / c.nHead;
}

/**
 * MoLM proper (n_head 1 and att_hidden == n_embd) uses the LayerNorm output as both key and value
 * and has no k_proj / v_proj. Every other ModuleFormer has both projections.
 */
export function hasKvProjections(c: ModelConfig): boolean {
  return !(c.nHead === 1 && c.attHidden === c.nEmbd);
}

/** Width of one cached key (and value) row. */
export function kvWidth(c: ModelConfig): number {
  return hasKvProjections(c) ? c.attHidden : c.nEmbd;
}

type Json = Record<string, unknown>;

function positiveInt(json: Json, key: keyof typeof CONFIG_BOUNDS, fallback?: number): number {
  const v = json[key] ?? fallback;
  if (v === undefined) {
    throw new ModelFormatError(`config.json: field "${key}" is missing; it must be a positive integer.`);
  }
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
    throw new ModelFormatError(`config.json: field "${key}" must be a positive integer, got ${describeValue(v)}.`);
  }
  if (v > CONFIG_BOUNDS[key]) {
    throw new ModelFormatError(
      `config.json: field "${key}" is ${v}, past the ${CONFIG_BOUNDS[key]} molm-web accepts (no MoLM comes near it); is this the config of another model, or damaged?`,
    );
  }
  return v;
}

/**
 * Parameters the config implies (every tensor of src/tensor-names.ts), so that a config
 * whose sizes are each plausible but together absurd is refused before anything is listed.
 */
export function parameterCount(c: ModelConfig): number {
  const C = c.nEmbd;
  const router = (experts: number) => c.gatingSize * C + c.gatingSize + experts * c.gatingSize;
  const kv = hasKvProjections(c) ? 2 * (c.attHidden * C + c.attHidden) : 0;
  const layer =
    4 * C + // two LayerNorms
    router(c.nAttExperts) +
    2 * c.nAttExperts * C * c.attHidden +
    kv +
    router(c.nMlpExperts) +
    2 * c.nMlpExperts * C * c.ffdHidden;
  return 2 * c.vocabSize * C + c.nLayer * layer + 2 * C;
}

function tokenId(json: Json, key: string, vocab: number): number {
  const v = json[key] ?? 50256;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new ModelFormatError(`config.json: field "${key}" must be a non-negative integer token id, got ${describeValue(v)}.`);
  }
  // Tiny test models have vocabularies smaller than the tokenizer's special ids: clamp is wrong,
  // so keep the value and let the engine decide whether it can be generated.
  void vocab;
  return v;
}

function expectString(json: Json, key: string, allowed: string[], fallback: string): void {
  const v = json[key] ?? fallback;
  if (typeof v !== 'string' || !allowed.includes(v)) {
    throw new ModelFormatError(`config.json: field "${key}" is ${describeValue(v)}; molm-web supports ${allowed.map((a) => JSON.stringify(a)).join(' or ')}.`);
  }
}

/** Parses and validates a ModuleFormer config.json (an object or its text). */
export function parseConfig(input: string | Json): ModelConfig {
  const json: Json =
    typeof input === 'string'
      ? parseJsonObject(input, { what: 'config.json', maxBytes: LIMITS.configBytes, fix: 'use the config.json of a MoLM checkpoint' })
      : input;
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    throw new ModelFormatError('config.json must hold a JSON object.');
  }
  if (json.model_type !== undefined && json.model_type !== 'moduleformer') {
    throw new ModelFormatError(`config.json: field "model_type" is ${describeValue(json.model_type)}; molm-web runs "moduleformer" (MoLM) models only.`);
  }
  expectString(json, 'att_func', ['stickbreaking'], 'stickbreaking');
  expectString(json, 'gate_type', ['mlp'], 'mlp');
  expectString(json, 'moe_type', ['moe'], 'moe');
  expectString(json, 'activation_function', ['gelu_new'], 'gelu_new');
  if (json.pre_norm !== undefined && json.pre_norm !== true) {
    throw new ModelFormatError('config.json: field "pre_norm" must be true; post-norm ModuleFormers are not supported.');
  }

  const vocabSize = positiveInt(json, 'vocab_size');
  const c: ModelConfig = {
    vocabSize,
    nEmbd: positiveInt(json, 'n_embd'),
    nLayer: positiveInt(json, 'n_layer'),
    nHead: positiveInt(json, 'n_head'),
    attHidden: positiveInt(json, 'att_hidden'),
    ffdHidden: positiveInt(json, 'ffd_hidden'),
    gatingSize: positiveInt(json, 'gating_size'),
    nAttExperts: positiveInt(json, 'n_att_experts'),
    kAtt: positiveInt(json, 'k_att'),
    nMlpExperts: positiveInt(json, 'n_mlp_experts'),
    kMlp: positiveInt(json, 'k_mlp'),
    layerNormEpsilon: 1e-5,
    bosTokenId: tokenId(json, 'bos_token_id', vocabSize),
    eosTokenId: tokenId(json, 'eos_token_id', vocabSize),
  };
  if (json.n_ctx !== undefined && json.n_ctx !== null) c.nCtx = positiveInt(json, 'n_ctx');
  const eps = json.layer_norm_epsilon ?? 1e-5;
  if (typeof eps !== 'number' || !(eps > 0) || !Number.isFinite(eps)) {
    throw new ModelFormatError(`config.json: field "layer_norm_epsilon" must be a positive number, got ${describeValue(eps)}.`);
  }
  c.layerNormEpsilon = eps;
  if (c.attHidden % c.nHead !== 0) {
    throw new ModelFormatError(`config.json: field "att_hidden" (${c.attHidden}) must be divisible by "n_head" (${c.nHead}).`);
  }
  if (c.kAtt > c.nAttExperts) {
    throw new ModelFormatError(`config.json: field "k_att" (${c.kAtt}) exceeds "n_att_experts" (${c.nAttExperts}).`);
  }
  if (c.kMlp > c.nMlpExperts) {
    throw new ModelFormatError(`config.json: field "k_mlp" (${c.kMlp}) exceeds "n_mlp_experts" (${c.nMlpExperts}).`);
  }
  const parameters = parameterCount(c);
  if (parameters > MAX_PARAMETERS) {
    throw new ModelFormatError(
      `config.json implies ${parameters.toExponential(2)} parameters, past the ${MAX_PARAMETERS.toExponential(2)} molm-web accepts; is this the config of another model, or damaged?`,
    );
  }
  return c;
}
