import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readFile, writeFile } from 'node:fs/promises';
import { MolmError, UsageError } from '../errors.ts';
import { GREEDY, type SamplingOptions } from '../model/model.ts';
import { openEngine, openModel, openTokenizer, type OpenOptions } from './backend.ts';
import { runBench } from '../bench/run-bench.ts';
import { evaluatePerplexity } from './eval.ts';
import { runConvert } from './convert.ts';
import { runProfile, runPrune } from './experts.ts';
import { synthesize } from './synth.ts';

const USAGE = `molm: MoLM (ModuleFormer) inference on WebGPU (Dawn) or the CPU reference.

  molm logits   --model DIR --ids 5,17,3 --out FILE
      float32 little-endian logits [T, vocab] of every position, from one prefill.
  molm generate --model DIR --prompt "text" [--max-new-tokens N] [--temperature T --top-k K --top-p P
                [--repetition-penalty R] --seed S | --greedy] [--stop STR ...] [--json]
      the continuation of the prompt, streamed as it is generated (the createEngine API; defaults
      as GenerateOptions: temperature 0.7, top-k 40, top-p 0.95, repetition penalty 1.1).
  molm generate --model DIR --ids 5,17,3 --max-new-tokens N [--greedy | --temperature T ...] [--json]
      token ids in, token ids out (greedy unless --temperature is given).
  molm eval     --model DIR --text FILE [--window W] [--max-tokens N] [--json]
      perplexity of the model on a text file, and tokens scored per second.
  molm profile  --model DIR --text FILE --out usage.json [--window W] [--max-tokens N]
      per layer, how often the text's tokens chose each attention and MLP expert, and their gate mass.
  molm prune    --model DIR --usage usage.json (--keep N | --mass 0.95) --out DIR2 [--dtype q8]
      a model with, per layer, only the experts the profiled text uses most (docs/experts.md).
  molm bench    --model DIR [--context C | --prompt-tokens P] --new-tokens N [--kernels] [--json]
      prefill and decode throughput on this adapter (decode after C tokens of context), time to first
      token, GPU memory, dispatches per token, a copy kernel's bandwidth and the decode roofline ratio;
      --kernels adds each kernel's time (dispatched alone).
  molm synth    --config FILE --layers L --out DIR [--dtype bf16|f16|f32] [--seed S] [--set key=value ...]
      a random-weight checkpoint of a config's shapes (for benchmarks).
  molm convert  --model HF_DIR --out DIR --dtype f32|f16|bf16|q8|q4 [--shard-mib 32]
      molm-web's shard format (manifest.json + shard-NNNNN.bin, docs/format.md); matrices in the
      dtype (q8/q4: f16 where a matrix cannot be quantised), vectors f32.

  Common: --device gpu|wasm|cpu (wasm: the WebAssembly CPU engine, --threads N; cpu: the float64 TypeScript reference), --max-context N, --prefill-chunk N,
  --gpu-memory-budget BYTES|25% (expert weights kept on the GPU; the rest streamed in when picked)
  [--expert-eviction lfu|lru].
  DIR is a Hugging Face checkpoint folder: config.json with model.safetensors, pytorch_model.bin,
  or their sharded forms with an *.index.json; or a folder written by molm convert.`;

const options = {
  model: { type: 'string' },
  ids: { type: 'string' },
  prompt: { type: 'string' },
  text: { type: 'string' },
  window: { type: 'string' },
  'max-tokens': { type: 'string' },
  'repetition-penalty': { type: 'string' },
  stop: { type: 'string', multiple: true },
  out: { type: 'string' },
  'max-new-tokens': { type: 'string' },
  greedy: { type: 'boolean' },
  temperature: { type: 'string' },
  'top-k': { type: 'string' },
  'top-p': { type: 'string' },
  seed: { type: 'string' },
  json: { type: 'boolean' },
  'prompt-tokens': { type: 'string' },
  kernels: { type: 'boolean' },
  'new-tokens': { type: 'string' },
  config: { type: 'string' },
  layers: { type: 'string' },
  dtype: { type: 'string' },
  set: { type: 'string', multiple: true },
  'shard-mib': { type: 'string' },
  device: { type: 'string' },
  threads: { type: 'string' },
  usage: { type: 'string' },
  context: { type: 'string' },
  'gpu-memory-budget': { type: 'string' },
  'expert-eviction': { type: 'string' },
  keep: { type: 'string' },
  mass: { type: 'string' },
  'max-context': { type: 'string' },
  'prefill-chunk': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} satisfies ParseArgsConfig['options'];

type Values = ReturnType<typeof parseArgs<{ options: typeof options; allowPositionals: true }>>['values'];

function required(v: Values, key: keyof Values): string {
  const x = v[key];
  if (typeof x !== 'string' || x === '') throw new UsageError(`--${key} is required.`);
  return x;
}

function int(v: Values, key: keyof Values, fallback?: number): number {
  const x = v[key];
  if (x === undefined) {
    if (fallback === undefined) throw new UsageError(`--${key} is required.`);
    return fallback;
  }
  const n = Number(x);
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--${key} must be a non-negative integer, got "${x}".`);
  return n;
}

function num(v: Values, key: keyof Values, fallback: number): number {
  const x = v[key];
  if (x === undefined) return fallback;
  const n = Number(x);
  if (!Number.isFinite(n)) throw new UsageError(`--${key} must be a number, got "${x}".`);
  return n;
}

function parseIds(text: string): number[] {
  const ids = text.split(',').map((s) => Number(s.trim()));
  if (ids.length === 0 || ids.some((n) => !Number.isInteger(n) || n < 0)) {
    throw new UsageError(`--ids must be comma-separated non-negative integers, got "${text}".`);
  }
  return ids;
}

/** The device options; `maxContext` sizes the context when --max-context is not given. */
function openOptions(v: Values, fallback: { maxContext?: number } = {}): OpenOptions {
  const device = v.device ?? 'gpu';
  if (device !== 'gpu' && device !== 'cpu' && device !== 'wasm') throw new UsageError(`--device must be gpu, wasm or cpu, got "${device}".`);
  const budget = v['gpu-memory-budget'];
  const policy = v['expert-eviction'];
  if (policy !== undefined && policy !== 'lru' && policy !== 'lfu') throw new UsageError(`--expert-eviction must be lru or lfu, got "${policy}".`);
  return {
    device,
    threads: v.threads !== undefined ? int(v, 'threads') : undefined,
    maxContext: v['max-context'] !== undefined ? int(v, 'max-context') : fallback.maxContext,
    prefillChunk: v['prefill-chunk'] !== undefined ? int(v, 'prefill-chunk') : undefined,
    expertBudget: budget === undefined ? undefined : { bytes: /%$/.test(budget) ? budget : Number(budget), policy },
  };
}

function sampling(v: Values): SamplingOptions {
  if (v.greedy || v.temperature === undefined) return GREEDY;
  return {
    temperature: num(v, 'temperature', 1),
    topK: int(v, 'top-k', 0),
    topP: num(v, 'top-p', 1),
    seed: int(v, 'seed', 0),
    repetitionPenalty: num(v, 'repetition-penalty', 1),
  };
}

async function logitsCommand(v: Values): Promise<void> {
  const ids = parseIds(required(v, 'ids'));
  const out = required(v, 'out');
  const model = await openModel(required(v, 'model'), openOptions(v, { maxContext: ids.length }));
  try {
    const logits = await model.prefillLogits(ids);
    await writeFile(out, new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
  } finally {
    model.close();
  }
}

async function generateTextCommand(v: Values): Promise<void> {
  const prompt = v.prompt!;
  const { engine } = await openEngine(required(v, 'model'), openOptions(v));
  try {
    const greedy = v.greedy === true;
    const stream = engine.generate(prompt, {
      maxNewTokens: v['max-new-tokens'] !== undefined ? int(v, 'max-new-tokens') : 64,
      temperature: greedy ? 0 : v.temperature !== undefined ? num(v, 'temperature', 0.7) : undefined,
      topK: v['top-k'] !== undefined ? int(v, 'top-k') : undefined,
      topP: v['top-p'] !== undefined ? num(v, 'top-p', 1) : undefined,
      repetitionPenalty: v['repetition-penalty'] !== undefined ? num(v, 'repetition-penalty', 1) : undefined,
      seed: v.seed !== undefined ? int(v, 'seed') : undefined,
      stop: v.stop,
    });
    for await (const text of stream) if (!v.json) process.stdout.write(text);
    const r = await stream.result;
    process.stdout.write(v.json ? JSON.stringify({ prompt, text: r.text, finish_reason: r.finishReason, usage: r.usage, ...(r.usage.expertCache && { expert_cache_hit_rate: r.usage.expertCache.hitRate }) }) + '\n' : '\n');
  } finally {
    await engine.dispose();
  }
}

async function evalCommand(v: Values): Promise<void> {
  const dir = required(v, 'model');
  const text = await readFile(required(v, 'text'), 'utf8');
  const tokenizer = await openTokenizer(dir);
  let ids = tokenizer.encode(text);
  if (v['max-tokens'] !== undefined) ids = ids.slice(0, int(v, 'max-tokens'));
  const model = await openModel(dir, openOptions(v));
  try {
    const window = v.window !== undefined ? int(v, 'window') : model.maxContext;
    const r = await evaluatePerplexity(model, ids, {
      window,
      eos: model.config.eosTokenId,
      onWindow: v.json ? undefined : (done, total) => process.stderr.write(`\r${done}/${total} tokens`),
    });
    if (!v.json) process.stderr.write('\n');
    const out = { model: dir, device: model.description, ...r };
    process.stdout.write(
      v.json
        ? JSON.stringify(out) + '\n'
        : `perplexity ${r.perplexity.toFixed(2)} (${r.nll.toFixed(4)} nats/token) over ${r.tokens} tokens in windows of ${r.window}; ${r.tokens_per_s.toFixed(1)} tokens/s on ${model.description}\n`,
    );
  } finally {
    model.close();
  }
}

async function generateCommand(v: Values): Promise<void> {
  if (v.prompt !== undefined) {
    if (v.ids !== undefined) throw new UsageError('Give --prompt or --ids, not both.');
    return generateTextCommand(v);
  }
  const ids = parseIds(required(v, 'ids'));
  const n = int(v, 'max-new-tokens', 32);
  const model = await openModel(required(v, 'model'), openOptions(v, { maxContext: Math.max(ids.length + n, 1) }));
  try {
    const tokens: number[] = [];
    for await (const id of model.generate(ids, n, sampling(v))) {
      tokens.push(id);
      if (!v.json) process.stdout.write(`${id}\n`);
    }
    if (v.json) process.stdout.write(JSON.stringify({ new_tokens: tokens, ...(model.gpu?.expertCache && { expert_cache: model.gpu.expertCache }) }) + '\n');
  } finally {
    model.close();
  }
}

async function benchCommand(v: Values): Promise<void> {
  // --context C: decode after a prompt of C tokens (the same as --prompt-tokens C).
  const promptTokens = v.context !== undefined ? int(v, 'context') : int(v, 'prompt-tokens', 128);
  const newTokens = int(v, 'new-tokens', 32);
  const model = await openModel(required(v, 'model'), openOptions(v, { maxContext: promptTokens + newTokens }));
  try {
    const r = await runBench(model, { promptTokens, newTokens, kernels: v.kernels === true });
    process.stdout.write(v.json ? JSON.stringify(r) + '\n' : Object.entries(r).map(([k, x]) => `${k}: ${x}`).join('\n') + '\n');
  } finally {
    model.close();
  }
}

async function synthCommand(v: Values): Promise<void> {
  const overrides: Record<string, number> = {};
  for (const kv of v.set ?? []) {
    const [k, x] = kv.split('=');
    if (!k || x === undefined || !Number.isFinite(Number(x))) throw new UsageError(`--set takes key=number, got "${kv}".`);
    overrides[k] = Number(x);
  }
  await synthesize({
    configPath: required(v, 'config'),
    layers: v.layers !== undefined ? int(v, 'layers') : undefined,
    outDir: required(v, 'out'),
    dtype: (v.dtype ?? 'bf16').toUpperCase() as 'F32' | 'BF16' | 'F16',
    seed: int(v, 'seed', 1),
    overrides,
  });
}

async function convertCommand(v: Values): Promise<void> {
  const summary = await runConvert({
    modelDir: required(v, 'model'),
    outDir: required(v, 'out'),
    dtype: required(v, 'dtype'),
    shardMiB: v['shard-mib'] !== undefined ? num(v, 'shard-mib', 32) : undefined,
  });
  process.stdout.write(summary + '\n');
}

async function profileCommand(v: Values): Promise<void> {
  const usage = await runProfile({
    modelDir: required(v, 'model'),
    textFile: required(v, 'text'),
    out: required(v, 'out'),
    window: v.window !== undefined ? int(v, 'window') : undefined,
    maxTokens: v['max-tokens'] !== undefined ? int(v, 'max-tokens') : undefined,
    open: openOptions(v),
    quiet: v.json,
  });
  const summary = { out: v.out, tokens: usage.tokens, layers: usage.layers.length };
  process.stdout.write(v.json ? JSON.stringify(summary) + '\n' : `${usage.tokens} tokens profiled over ${usage.layers.length} layers → ${v.out}\n`);
}

async function pruneCommand(v: Values): Promise<void> {
  if ((v.keep === undefined) === (v.mass === undefined)) throw new UsageError('Give one of --keep N or --mass P.');
  const r = await runPrune({
    modelDir: required(v, 'model'),
    usageFile: required(v, 'usage'),
    outDir: required(v, 'out'),
    rule: v.keep !== undefined ? { keep: int(v, 'keep') } : { mass: num(v, 'mass', 1) },
    dtype: v.dtype,
  });
  const mb = (n: number) => (n / 1e6).toFixed(1);
  process.stdout.write(
    v.json
      ? JSON.stringify(r) + '\n'
      : `kept ${r.kept.attention[0].length} attention and ${r.kept.mlp[0].length} MLP experts per layer → ${r.out} (${r.dtype}, ${mb(r.bytes)} MB${r.sourceBytes ? ` of ${mb(r.sourceBytes)} MB` : ''})\n`,
  );
}

const COMMANDS: Record<string, (v: Values) => Promise<void>> = {
  logits: logitsCommand,
  generate: generateCommand,
  eval: evalCommand,
  bench: benchCommand,
  synth: synthCommand,
  convert: convertCommand,
  profile: profileCommand,
  prune: pruneCommand,
};

/** Runs the CLI; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  try {
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true });
    const command = positionals[0];
    if (values.help || !command) {
      process.stdout.write(USAGE + '\n');
      return command || values.help ? 0 : 2;
    }
    const run = COMMANDS[command];
    if (!run) throw new UsageError(`Unknown command "${command}". Commands: ${Object.keys(COMMANDS).join(', ')}.`);
    await run(values);
    return 0;
  } catch (e) {
    if (e instanceof MolmError || (e as Error).name === 'TypeError' && /parseArgs|Unknown option/.test(String(e))) {
      process.stderr.write(`molm: ${(e as Error).message}\n`);
      return e instanceof UsageError ? 2 : 1;
    }
    if ((e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`molm: ${(e as Error).message}\n${USAGE}\n`);
      return 2;
    }
    process.stderr.write(`molm: ${(e as Error).stack ?? e}\n`);
    return 1;
  }
}
