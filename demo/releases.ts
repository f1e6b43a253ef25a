import { hasKvProjections, kvWidth, type ModelConfig, parameterCount, parseConfig } from '../src/config.ts';
import { EXPERT_TENSORS, slotCounts, type SlotCounts } from '../src/experts/slots.ts';
import { type ConvertDtype, planShards, tensorsToPlace } from '../src/shards/plan.ts';
import { planStoredWeights, type WeightPlan } from '../src/weight-plan.ts';
import molm350m4b from './releases/molm-350m-4b.json';
import molm700m4b from './releases/molm-700m-4b.json';
import molm700m8b from './releases/molm-700m-8b.json';

// IBM's three released MoLMs (Hugging Face repos ibm-research/MoLM-*): their sizes, computed
// from their config.json alone (a copy of each is bundled here: no request before the user
// picks one), and what this device can do with them, said before any download: the storage
// the browser offers against the converted copy, and the engine that will run it (WebGPU's
// limits, or the WebAssembly engine's 4 GiB memory, with its experts streamed when they do
// not fit). Device-free arithmetic here; main.ts gathers the device's facts and draws the rows.

export interface Release {
  /** The hub repo, ORG/NAME. */
  repo: string;
  name: string;
  config: ModelConfig;
  /** config.json's torch_dtype: the type of the checkpoint's weights. */
  torchDtype: string;
}

export const RELEASES: Release[] = [molm350m4b, molm700m4b, molm700m8b].map((raw) => {
  const name = String(raw._name_or_path).replace(/^.*\//, '');
  return { repo: `ibm-research/${name}`, name, config: parseConfig(raw), torchDtype: raw.torch_dtype };
});

/** Bytes per weight of a checkpoint by config.json's torch_dtype (the released ones say bfloat16). */
const TORCH_BYTES: Record<string, number> = { float32: 4, float16: 2, bfloat16: 2 };

/** The storage type the demo converts a release to (createEngine's default for a hub model). */
export const RELEASE_DTYPE: ConvertDtype = 'q4';

export interface ReleaseSizes {
  parameters: number;
  /**
   * Weights a token's forward pass uses: all but the experts its routers do not pick (k of E
   * per layer) and the embedding table, of which a token reads one row.
   */
  activeParameters: number;
  /** The checkpoint on the hub: parameters × the bytes of its torch_dtype (the tokenizer and config add ~2 MB). */
  downloadBytes: number;
  /** The converted copy in the shard cache (the planner's shards), q4 and q8. */
  q4Bytes: number;
  q8Bytes: number;
  /** The q4 copy's weight plan, as a backend loads it. */
  plan: WeightPlan;
}

export function releaseSizes(r: Release): ReleaseSizes {
  const c = r.config;
  const parameters = parameterCount(c);
  const attExpert = 2 * c.nEmbd * c.attHidden;
  const mlpExpert = 2 * c.nEmbd * c.ffdHidden;
  const unused = c.nLayer * ((c.nAttExperts - c.kAtt) * attExpert + (c.nMlpExperts - c.kMlp) * mlpExpert);
  const q4 = planShards(tensorsToPlace(c, 'q4'));
  return {
    parameters,
    activeParameters: parameters - unused - c.vocabSize * c.nEmbd,
    downloadBytes: parameters * (TORCH_BYTES[r.torchDtype] ?? 4),
    q4Bytes: q4.totalBytes,
    q8Bytes: planShards(tensorsToPlace(c, 'q8')).totalBytes,
    plan: planStoredWeights(c, q4.tensors, RELEASE_DTYPE),
  };
}

/** Decimal units, as disks and downloads are sold: 2.3 GB, 41 GB, 812 MB. */
export function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(n >= 1e10 ? 0 : 1)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(0)} MB`;
  return `${Math.max(0, Math.round(n / 1e3))} kB`;
}

export function formatCount(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} B` : `${(n / 1e6).toFixed(0)} M`;
}

/** wasm32 addresses stop at 4 GiB: the WebAssembly engine's memory (src/wasm/runtime.ts, WASM_MEMORY_LIMIT). */
const WASM32_BYTES = 2 ** 32;
/** The context the demo's engines get: createEngine's default, the config's n_ctx up to 2048 tokens. */
const contextOf = (c: ModelConfig) => Math.min(c.nCtx ?? 2048, 2048);
/** Prompt rows per prefill step (createEngine's default). */
const PREFILL_ROWS = 128;

/**
 * About what an engine holds besides the weights: the KV cache (MoLM's keys are its values: one
 * region per layer) and the widest activations of a step of `rows` tokens, with 64 MiB for the
 * rest (thread stacks, scratch). An estimate: the engines lay out their memory only at load.
 */
function workingBytes(c: ModelConfig, rows: number): number {
  const kv = c.nLayer * contextOf(c) * kvWidth(c) * 4 * (hasKvProjections(c) ? 2 : 1);
  const acts = rows * 4 * (c.vocabSize + 4 * c.nEmbd + 2 * c.kAtt * c.attHidden + c.kMlp * c.ffdHidden) + c.vocabSize * 16;
  return kv + acts + 64 * 2 ** 20;
}

/** Bytes of every expert's weights in the plan. */
function expertBytes(c: ModelConfig, plan: WeightPlan): number {
  const bytes = new Map(plan.entries.map((e) => [e.name, e.bytes]));
  let sum = 0;
  for (let l = 0; l < c.nLayer; l++) for (const n of [...EXPERT_TENSORS.att(l), ...EXPERT_TENSORS.mlp(l)]) sum += bytes.get(n) ?? 0;
  return sum;
}

/** The WebAssembly engine and a release: whole in its memory, with experts streamed, or not at all. */
export type WasmFit = { whole: true; bytes: number } | { whole: false; slots: SlotCounts; hostBytes: number } | { whole: false; slots: null };

export function wasmFit(r: Release, plan: WeightPlan): WasmFit {
  const c = r.config;
  const whole = plan.totalBytes + workingBytes(c, PREFILL_ROWS);
  if (whole <= WASM32_BYTES) return { whole: true, bytes: whole };
  // Too big: src/wasm/model.ts keeps as many expert slots as fit, one-token steps, and every
  // expert in host memory.
  const experts = expertBytes(c, plan);
  const room = WASM32_BYTES - (plan.totalBytes - experts) - workingBytes(c, 1);
  try {
    const slots = room > 0 ? slotCounts(c, plan, room) : null;
    return slots ? { whole: false, slots, hostBytes: experts } : { whole: false, slots: null };
  } catch {
    return { whole: false, slots: null }; // not even k experts per layer fit
  }
}

/** What WebGPU's adapter allows (GPUSupportedLimits), of what GpuModel.requirements asks. */
export interface GpuLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

/** What the demo knows of this device, gathered before any download. */
export interface DeviceFacts {
  /** navigator.storage.estimate(); null when the browser gives none. */
  storage: { quota: number; usage: number } | null;
  /**
   * The engine that will run a model, as Engine is set: 'webgpu' with the adapter's limits (a
   * real GPU, or asked for), 'wasm' (asked for, or Auto without a usable GPU), or 'none' (WebGPU
   * asked for where there is none).
   */
  engine: { kind: 'webgpu'; auto: boolean; limits: GpuLimits } | { kind: 'wasm'; why: string } | { kind: 'none'; why: string };
}

/** What this browser's cache holds of a release's converted copy. */
export interface Stored {
  cachedBytes: number;
  complete: boolean;
}

export type VerdictKind = 'fits' | 'streams' | 'cpu-only' | 'no-storage' | 'no-engine';

export interface Verdict {
  kind: VerdictKind;
  /** One plain sentence or two. */
  text: string;
  /** The engine to load it with (null: none will). */
  backend: 'webgpu' | 'wasm' | null;
}

/**
 * What of a release does not fit this GPU's limits, in words, or null: GpuModel.requirements
 * (the buffers the model will create) against the adapter's limits, as GpuContext.create
 * compares them. The GPU code loads only when WebGPU is the engine.
 */
export async function gpuShortfall(r: Release, plan: WeightPlan, limits: GpuLimits): Promise<string | null> {
  const { GpuModel } = await import('../src/model/model.ts');
  const req = GpuModel.requirements(r.config, plan, {});
  if (req.maxBindingBytes > limits.maxStorageBufferBindingSize) {
    return `this GPU binds at most ${formatBytes(limits.maxStorageBufferBindingSize)} at once, the model needs ${formatBytes(req.maxBindingBytes)}`;
  }
  if (req.maxBufferBytes > limits.maxBufferSize) {
    return `this GPU's buffers hold at most ${formatBytes(limits.maxBufferSize)}, the model needs ${formatBytes(req.maxBufferBytes)} in one`;
  }
  return null;
}

/** The storage part of a verdict: what the copy needs and what the browser offers; null when it will not fit. */
function storageLine(sizes: ReleaseSizes, device: DeviceFacts, stored: Stored | undefined): { ok: boolean; text: string } {
  const total = sizes.q4Bytes;
  if (stored?.complete) return { ok: true, text: `already in this browser's storage (${formatBytes(total)}): loads offline` };
  const have = stored?.cachedBytes ?? 0;
  const needed = total - have;
  const partly = have > 0 ? ` (${formatBytes(have)} stored by a stopped download)` : '';
  if (!device.storage) return { ok: true, text: `${formatBytes(total)} in this browser's storage${partly}; it does not say how much it offers` };
  const offered = Math.max(0, device.storage.quota - device.storage.usage);
  if (needed > offered) {
    return {
      ok: false,
      text: `Needs ${formatBytes(needed)} of storage; this browser offers ${formatBytes(offered)}. Free space on the disk, or delete cached models below.`,
    };
  }
  return { ok: true, text: `${formatBytes(total)} in this browser's storage${partly}, of ${formatBytes(offered)} free` };
}

/** The CPU engine's part of a verdict; null when it cannot hold the model even with its experts streamed. */
function wasmLine(r: Release, fit: WasmFit): { kind: VerdictKind; text: string } | null {
  if (fit.whole) return { kind: 'fits', text: `about ${formatBytes(fit.bytes)} of the ${formatBytes(WASM32_BYTES)} WebAssembly allows` };
  if (!fit.slots) return null;
  const c = r.config;
  return {
    kind: 'streams',
    text:
      `the ${formatBytes(WASM32_BYTES)} WebAssembly allows hold about ${fit.slots.att} of ${c.nAttExperts} attention and ${fit.slots.mlp} of ${c.nMlpExperts} MLP experts ` +
      `per layer, the others are copied in from about ${formatBytes(fit.hostBytes)} of RAM when picked`,
  };
}

/**
 * The verdict for one release on this device. `gpuTooBig`: for WebGPU, what does not fit its
 * limits (gpuShortfall), or null.
 */
export function verdict(r: Release, sizes: ReleaseSizes, device: DeviceFacts, stored: Stored | undefined, gpuTooBig: string | null): Verdict {
  const engine = device.engine;
  if (engine.kind === 'none') {
    return { kind: 'no-engine', text: `Will not run: ${engine.why}. Choose Auto or CPU (WebAssembly) under Engine.`, backend: null };
  }
  let kind: VerdictKind;
  let head: string;
  let backend: 'webgpu' | 'wasm';
  if (engine.kind === 'webgpu' && !gpuTooBig) {
    kind = 'fits';
    backend = 'webgpu';
    head =
      `Fits: WebGPU, about ${formatBytes(sizes.plan.totalBytes + workingBytes(r.config, PREFILL_ROWS))} of GPU memory ` +
      '(WebGPU does not say how much this GPU has: with too little, a quarter of the experts stay on it and the rest stream in)';
  } else if (engine.kind === 'webgpu' && !engine.auto) {
    return { kind: 'no-engine', text: `Too large for this GPU's buffers: ${gpuTooBig}. Choose Auto or CPU (WebAssembly) under Engine.`, backend: null };
  } else {
    const onCpu = wasmLine(r, wasmFit(r, sizes.plan));
    if (!onCpu) {
      const gpu = gpuTooBig ? `this GPU's buffers (${gpuTooBig}) and ` : '';
      return {
        kind: 'no-engine',
        text: `Will not run here: too large for ${gpu}the ${formatBytes(WASM32_BYTES)} the CPU engine's WebAssembly allows, even with its experts streamed.`,
        backend: null,
      };
    }
    backend = 'wasm';
    if (gpuTooBig) {
      kind = 'cpu-only';
      head = `Fits on the CPU engine only (too large for this GPU's buffers: ${gpuTooBig}): ${onCpu.text}`;
    } else {
      kind = onCpu.kind;
      head = kind === 'streams' ? `Fits, slowly, on the CPU engine with its experts streamed: ${onCpu.text}` : `Fits: CPU engine, ${onCpu.text}`;
    }
  }
  const storage = storageLine(sizes, device, stored);
  if (!storage.ok) return { kind: 'no-storage', text: storage.text, backend: null };
  return { kind, text: `${head}; ${storage.text}.`, backend };
}
