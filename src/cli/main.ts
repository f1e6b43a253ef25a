import { readFile, stat, writeFile } from 'node:fs/promises';
import { MolmError, UsageError } from '../errors.ts';
import { GREEDY, type SamplingOptions } from '../token-model.ts';
import { CONVERT_DTYPES, type ConvertDtype } from '../shards/plan.ts';
import { DEFAULT_HUB_URL, parseHubUrl } from '../checkpoint/hub.ts';
import { ModelArg } from './model-arg.ts';
import { openEngine, openModel, openTokenizer, type OpenOptions } from './backend.ts';
import { runBench } from '../bench/run-bench.ts';
import { evaluatePerplexity } from './eval.ts';
import { runConvert } from './convert.ts';
import { runProfile, runPrune } from './experts.ts';
import { synthesize } from './synth.ts';
import { runMerge } from '../packs/merge-command.ts';
import { type Args, MAX_TOKENS, OptionError, decimal, findCommand, flag, oneOf, parseCommandLine, path, text, wholeNumber, type Spec } from './args.ts';

/** Token ids: the vocabulary may have at most 2^20 entries (src/limits.ts). */
const MAX_TOKEN_ID = (1 << 20) - 1;

const tokenIds: Spec = {
  type: 'string',
  arg: '5,17,3',
  allowed: `comma-separated token ids, whole numbers from 0 to ${MAX_TOKEN_ID}`,
  parse: (x) => {
    const parts = x.split(',').map((s) => s.trim());
    if (parts.length > MAX_TOKENS || !parts.every((s) => /^\d{1,7}$/.test(s) && Number(s) <= MAX_TOKEN_ID)) return undefined;
    return parts.map(Number);
  },
};

const configValue: Spec = {
  type: 'string',
  arg: 'key=value',
  multiple: true,
  allowed: 'key=number, a config.json key and its new value',
  parse: (x) => {
    const m = /^([A-Za-z_]\w*)=(.+)$/.exec(x);
    return m && Number.isFinite(Number(m[2])) && m[2].trim() !== '' ? [m[1], Number(m[2])] : undefined;
  },
};

const budget: Spec = {
  type: 'string',
  arg: 'BYTES|P%',
  allowed: 'a number of bytes above 0, or a share of the expert weights from above 0% to 100%',
  parse: (x) => {
    if (/^\d{1,16}$/.test(x) && Number(x) > 0) return Number(x);
    const m = /^(\d+(\.\d+)?)%$/.exec(x);
    return m && Number(m[1]) > 0 && Number(m[1]) <= 100 ? x : undefined;
  },
};

const hubUrl: Spec = {
  type: 'string',
  arg: 'URL',
  allowed: `the Hugging Face hub that ORG/NAME is read from (default ${DEFAULT_HUB_URL})`,
  parse: (x) => {
    try {
      return parseHubUrl(x);
    } catch {
      return undefined;
    }
  },
};

/** Every option any command takes; a command picks its own (and may take one with its own values). */
const OPTIONS = {
  model: path('DIR', 'a model folder, or ORG/NAME[@REV] on the Hugging Face hub'),
  pack: { ...path('DIR', 'a converted expert pack merged into the model (docs/extending.md); repeatable'), multiple: true },
  'hub-url': hubUrl,
  'cache-dir': path('DIR', 'where models from the hub are kept, converted (default $XDG_CACHE_HOME/molm-web or ~/.cache/molm-web)'),
  ids: tokenIds,
  prompt: text('TEXT', 'the text to continue'),
  text: path('FILE', 'a UTF-8 text file'),
  window: wholeNumber(1, MAX_TOKENS, 'W'),
  'max-tokens': wholeNumber(1, 1e9),
  'max-new-tokens': wholeNumber(0, MAX_TOKENS),
  greedy: flag('always the most likely token'),
  temperature: decimal(0, Number.MAX_VALUE, { arg: 'T', allowed: 'a number from 0 up (0 is greedy)' }),
  'top-k': wholeNumber(0, 1 << 20, 'K', ' (0 is off)'),
  'top-p': decimal(0, 1, { above: true, arg: 'P', allowed: 'a number above 0 and at most 1 (1 is off)' }),
  'repetition-penalty': decimal(0, Number.MAX_VALUE, { above: true, arg: 'R', allowed: 'a number above 0 (1 is off)' }),
  seed: wholeNumber(0, 2 ** 32 - 1, 'S'),
  stop: text('STR', 'a string that ends the text (not empty); repeatable', { multiple: true, nonEmpty: true }),
  out: path('PATH', 'the file or folder to write'),
  json: flag('one JSON object on stdout'),
  context: wholeNumber(1, MAX_TOKENS, 'C'),
  'prompt-tokens': wholeNumber(1, MAX_TOKENS, 'P'),
  'new-tokens': wholeNumber(1, MAX_TOKENS),
  kernels: flag("each kernel's time, dispatched alone"),
  config: path('FILE', 'a config.json'),
  layers: wholeNumber(1, 1024, 'L'),
  dtype: oneOf(CONVERT_DTYPES),
  set: configValue,
  'shard-mib': decimal(0, 4096, { above: true, arg: 'MIB', allowed: 'a number of MiB above 0 and at most 4096' }),
  usage: path('FILE', 'a usage.json written by molm profile'),
  keep: wholeNumber(1, 256),
  mass: decimal(0, 1, { above: true, allowed: 'a number above 0 and at most 1' }),
  device: oneOf(['gpu', 'wasm', 'cpu'] as const),
  threads: wholeNumber(1, 256),
  'max-context': wholeNumber(1, MAX_TOKENS),
  'prefill-chunk': wholeNumber(1, MAX_TOKENS),
  'gpu-memory-budget': budget,
  'expert-eviction': oneOf(['lfu', 'lru'] as const),
  verbose: flag('driver messages on stderr, and the stack of an unexpected error'),
  help: flag('this help'),
} satisfies Record<string, Spec>;

type OptionName = keyof typeof OPTIONS;

const DEVICE_OPTIONS: OptionName[] = ['pack', 'device', 'threads', 'max-context', 'prefill-chunk', 'gpu-memory-budget', 'expert-eviction'];

const DEVICE_USAGE = `  --pack DIR (repeatable) merges a converted expert pack into the model at load time.
  --device gpu|wasm|cpu: WebGPU through Dawn (the default), the WebAssembly CPU engine (--threads N,
  default the machine's cores up to 16) or the float64 TypeScript reference. --max-context N: the
  context the model is built for; --prefill-chunk N: prompt rows per step. --gpu-memory-budget
  BYTES|25% keeps that much of the expert weights on the GPU and streams the rest in when picked
  [--expert-eviction lfu|lru].`;

const DIR_USAGE = `  DIR is a Hugging Face checkpoint folder: config.json with model.safetensors, pytorch_model.bin,
  or their sharded forms with an *.index.json; or a folder written by molm convert. A DIR that does
  not exist but reads ORG/NAME or ORG/NAME@REV (a branch, tag or commit; default main) is that repo
  on the Hugging Face hub (--hub-url URL for another hub): converted once to --dtype (default q4)
  into --cache-dir, then read from there without the network.`;

/** What a command that runs a model takes besides --model to import one from the hub. */
const HUB_OPTIONS: OptionName[] = ['hub-url', 'cache-dir', 'dtype'];

/** --dtype where it only says how a model from the hub is stored. */
const importDtype: Spec = { ...oneOf(CONVERT_DTYPES), allowed: `one of ${CONVERT_DTYPES.join(', ')}: how a model from the hub is stored (default q4)` };

/**
 * --model with the hub options given. `importDtypeOnly`: whether --dtype is this command's import
 * type only (prune's --dtype is its output's, which an imported model shares).
 */
function modelArg(a: Args, importDtypeOnly = true): ModelArg {
  const given = HUB_OPTIONS.filter((n) => a.has(n) && (importDtypeOnly || n !== 'dtype'));
  return new ModelArg(a.required<string>('model'), {
    hubUrl: a.get('hub-url'),
    cacheDir: a.get('cache-dir'),
    dtype: a.get<ConvertDtype>('dtype'),
    hubOnly: given,
  });
}

const COMMON_USAGE = `  --verbose: driver messages (Dawn, Vulkan, Mesa) on stderr, which are dropped otherwise, and the
  stack of an unexpected error. Exit codes: 0 done; 1 the model, an input file or the device failed;
  2 the command line is wrong (the message names the option and what it takes).`;

interface Command {
  synopsis: string;
  options: OptionName[];
  /** Options that take other values here than in OPTIONS. */
  specs?: Partial<Record<OptionName, Spec>>;
  /** Checks what the options say together and returns the run; opens nothing. */
  prepare(a: Args): Inputs;
}

/** The files a command reads, checked after the options and before the run. */
interface Inputs {
  /** --model: checked first (a folder, or a hub repo id). */
  model?: ModelArg;
  files?: Partial<Record<OptionName, string>>;
  run(): Promise<void>;
}

/** The device options, checked against each other; `maxContext` sizes the context when --max-context is not given. */
function openOptions(a: Args, fallback: { maxContext?: number } = {}): OpenOptions {
  const device = a.get<OpenOptions['device']>('device', 'gpu');
  if (a.has('threads') && device !== 'wasm') throw new OptionError('--threads applies to --device wasm only.');
  if (a.has('gpu-memory-budget') && device !== 'gpu') throw new OptionError('--gpu-memory-budget applies to --device gpu only.');
  if (a.has('expert-eviction') && !a.has('gpu-memory-budget')) throw new OptionError('--expert-eviction applies with --gpu-memory-budget only.');
  const bytes = a.get<number | string>('gpu-memory-budget');
  return {
    device,
    threads: a.get('threads'),
    maxContext: a.get('max-context', fallback.maxContext),
    prefillChunk: a.get('prefill-chunk'),
    expertBudget: bytes === undefined ? undefined : { bytes, policy: a.get('expert-eviction') },
    packs: a.get<string[]>('pack'),
  };
}

const SAMPLING_OPTIONS = ['temperature', 'top-k', 'top-p', 'repetition-penalty'] as const;

function noGreedyConflict(a: Args): void {
  const with_ = SAMPLING_OPTIONS.filter((n) => a.has(n));
  if (a.flag('greedy') && with_.length) throw new OptionError(`--greedy picks the most likely token; it takes no --${with_[0]}.`);
}

const logits: Command = {
  synopsis: `molm logits   --model DIR --ids 5,17,3 --out FILE
      float32 little-endian logits [T, vocab] of every position, from one prefill.`,
  options: ['model', 'ids', 'out', ...DEVICE_OPTIONS, ...HUB_OPTIONS],
  specs: { dtype: importDtype },
  prepare(a) {
    const given = modelArg(a);
    const ids = a.required<number[]>('ids');
    const out = a.required<string>('out');
    const open = openOptions(a, { maxContext: ids.length });
    return {
      model: given,
      async run() {
        const model = await openModel(await given.dir(), open);
        try {
          const logits = await model.prefillLogits(ids);
          await writeFile(out, new Uint8Array(logits.buffer, logits.byteOffset, logits.byteLength));
        } finally {
          model.close();
        }
      },
    };
  },
};

const generate: Command = {
  synopsis: `molm generate --model DIR --prompt "text" [--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P]
              [--repetition-penalty R] [--seed S] [--stop STR ...] [--greedy] [--json]
      the continuation of the prompt, streamed as it is generated (the createEngine API): 64 new tokens
      unless --max-new-tokens; temperature 0.7, top-k 40, top-p 0.95, repetition penalty 1.1 unless given.
  molm generate --model DIR --ids 5,17,3 [--max-new-tokens N] [--greedy | --temperature T [--top-k K]
              [--top-p P] [--repetition-penalty R] [--seed S]] [--json]
      token ids in, token ids out, one a line: 32 new tokens unless --max-new-tokens; greedy unless
      --temperature is given.`,
  options: [
    'model',
    'prompt',
    'ids',
    'max-new-tokens',
    'greedy',
    'temperature',
    'top-k',
    'top-p',
    'repetition-penalty',
    'seed',
    'stop',
    'json',
    ...DEVICE_OPTIONS,
    ...HUB_OPTIONS,
  ],
  specs: { dtype: importDtype },
  prepare(a) {
    a.exclusive(['prompt', 'ids'], true);
    noGreedyConflict(a);
    const given = modelArg(a);
    const json = a.flag('json');
    if (a.has('prompt')) {
      const prompt = a.required<string>('prompt');
      const open = openOptions(a);
      const greedy = a.flag('greedy');
      const options = {
        maxNewTokens: a.get('max-new-tokens', 64),
        temperature: greedy ? 0 : a.get<number>('temperature'),
        topK: a.get<number>('top-k'),
        topP: a.get<number>('top-p'),
        repetitionPenalty: a.get<number>('repetition-penalty'),
        seed: a.get<number>('seed'),
        stop: a.get<string[]>('stop'),
      };
      return {
        model: given,
        async run() {
          const { engine } = await openEngine(await given.dir(), open);
          try {
            const stream = engine.generate(prompt, options);
            for await (const piece of stream) if (!json) process.stdout.write(piece);
            const r = await stream.result;
            process.stdout.write(
              json
                ? JSON.stringify({
                    prompt,
                    text: r.text,
                    finish_reason: r.finishReason,
                    usage: r.usage,
                    ...(r.usage.expertCache && { expert_cache_hit_rate: r.usage.expertCache.hitRate }),
                  }) + '\n'
                : '\n',
            );
          } finally {
            await engine.dispose();
          }
        },
      };
    }
    if (a.has('stop')) throw new OptionError('--stop applies to --prompt only (--ids generation stops at --max-new-tokens).');
    if (!a.has('temperature')) {
      const other = SAMPLING_OPTIONS.find((n) => a.has(n));
      if (other) throw new OptionError(`--${other} samples only with --temperature T (--ids generation is greedy without it).`);
    }
    const ids = a.required<number[]>('ids');
    const n = a.get('max-new-tokens', 32);
    const sampling: SamplingOptions = a.has('temperature')
      ? {
          temperature: a.required('temperature'),
          topK: a.get('top-k', 0),
          topP: a.get('top-p', 1),
          seed: a.get('seed', 0),
          repetitionPenalty: a.get('repetition-penalty', 1),
        }
      : GREEDY;
    const open = openOptions(a, { maxContext: Math.max(ids.length + n, 1) });
    return {
      model: given,
      async run() {
        const model = await openModel(await given.dir(), open);
        try {
          const tokens: number[] = [];
          for await (const id of model.generate(ids, n, sampling)) {
            tokens.push(id);
            if (!json) process.stdout.write(`${id}\n`);
          }
          if (json) process.stdout.write(JSON.stringify({ new_tokens: tokens, ...(model.gpu?.expertCache && { expert_cache: model.gpu.expertCache }) }) + '\n');
        } finally {
          model.close();
        }
      },
    };
  },
};

/** --window fits a context given on the command line (else the model's, checked once it is open). */
function windowFits(a: Args): void {
  const window = a.get<number>('window');
  const context = a.get<number>('max-context');
  if (window !== undefined && context !== undefined && window > context) {
    throw new OptionError(`--window must be at most --max-context (${context}), got ${window}.`);
  }
}

const evalCommand: Command = {
  synopsis: `molm eval     --model DIR --text FILE [--window W] [--max-tokens N] [--json]
      perplexity of the model on a text file, and tokens scored per second.`,
  options: ['model', 'text', 'window', 'max-tokens', 'json', ...DEVICE_OPTIONS, ...HUB_OPTIONS],
  specs: { dtype: importDtype },
  prepare(a) {
    const given = modelArg(a);
    const file = a.required<string>('text');
    const maxTokens = a.get<number>('max-tokens');
    windowFits(a);
    const open = openOptions(a);
    const json = a.flag('json');
    return {
      model: given,
      files: { text: file },
      async run() {
        const dir = await given.dir();
        const tokenizer = await openTokenizer(dir);
        let ids = tokenizer.encode(await readFile(file, 'utf8'));
        if (maxTokens !== undefined) ids = ids.slice(0, maxTokens);
        const model = await openModel(dir, open);
        try {
          const r = await evaluatePerplexity(model, ids, {
            window: a.get('window', model.maxContext),
            eos: model.config.eosTokenId,
            onWindow: json ? undefined : (done, total) => process.stderr.write(`\r${done}/${total} tokens`),
          });
          if (!json) process.stderr.write('\n');
          const out = { model: given.value, device: model.description, ...r };
          process.stdout.write(
            json
              ? JSON.stringify(out) + '\n'
              : `perplexity ${r.perplexity.toFixed(2)} (${r.nll.toFixed(4)} nats/token) over ${r.tokens} tokens in windows of ${r.window}; ${r.tokens_per_s.toFixed(1)} tokens/s on ${model.description}\n`,
          );
        } finally {
          model.close();
        }
      },
    };
  },
};

const profile: Command = {
  synopsis: `molm profile  --model DIR --text FILE --out usage.json [--window W] [--max-tokens N] [--json]
      per layer, how often the text's tokens chose each attention and MLP expert, and their gate mass.`,
  options: ['model', 'text', 'out', 'window', 'max-tokens', 'json', ...DEVICE_OPTIONS, ...HUB_OPTIONS],
  specs: { dtype: importDtype },
  prepare(a) {
    const model = modelArg(a);
    const textFile = a.required<string>('text');
    const out = a.required<string>('out');
    windowFits(a);
    const open = openOptions(a);
    const json = a.flag('json');
    return {
      model,
      files: { text: textFile },
      async run() {
        const usage = await runProfile({
          modelDir: await model.dir(),
          textFile,
          out,
          window: a.get('window'),
          maxTokens: a.get('max-tokens'),
          open,
          quiet: json,
        });
        const summary = { out, tokens: usage.tokens, layers: usage.layers.length };
        process.stdout.write(json ? JSON.stringify(summary) + '\n' : `${usage.tokens} tokens profiled over ${usage.layers.length} layers → ${out}\n`);
      },
    };
  },
};

const prune: Command = {
  synopsis: `molm prune    --model DIR --usage usage.json (--keep N | --mass P) --out DIR2 [--dtype q8] [--json]
      a model with, per layer, only the experts the profiled text uses most (docs/experts.md);
      --dtype as molm convert (default: the model's own).`,
  options: ['model', 'pack', 'usage', 'keep', 'mass', 'out', 'dtype', 'json', 'hub-url', 'cache-dir'],
  prepare(a) {
    a.exclusive(['keep', 'mass'], true);
    const model = modelArg(a, false);
    const usageFile = a.required<string>('usage');
    const outDir = a.required<string>('out');
    const json = a.flag('json');
    return {
      model,
      files: { usage: usageFile },
      async run() {
        const r = await runPrune({
          modelDir: await model.dir(),
          usageFile,
          outDir,
          rule: a.has('keep') ? { keep: a.required('keep') } : { mass: a.required('mass') },
          dtype: a.get('dtype'),
          packs: a.get('pack'),
        });
        const mb = (n: number) => (n / 1e6).toFixed(1);
        process.stdout.write(
          json
            ? JSON.stringify(r) + '\n'
            : `kept ${r.kept.attention[0].length} attention and ${r.kept.mlp[0].length} MLP experts per layer → ${r.out} (${r.dtype}, ${mb(r.bytes)} MB${r.sourceBytes ? ` of ${mb(r.sourceBytes)} MB` : ''})\n`,
        );
      },
    };
  },
};

const bench: Command = {
  synopsis: `molm bench    --model DIR [--context C | --prompt-tokens P] [--new-tokens N] [--kernels] [--json]
      prefill and decode throughput on this adapter (decode after C tokens of context, default 128;
      32 new tokens unless --new-tokens), time to first token, GPU memory, dispatches per token, a copy
      kernel's bandwidth and the decode roofline ratio; --kernels adds each kernel's time (dispatched alone).`,
  options: ['model', 'context', 'prompt-tokens', 'new-tokens', 'kernels', 'json', ...DEVICE_OPTIONS, ...HUB_OPTIONS],
  specs: { dtype: importDtype },
  prepare(a) {
    a.exclusive(['context', 'prompt-tokens']);
    const given = modelArg(a);
    const promptTokens = a.get<number>('context') ?? a.get('prompt-tokens', 128);
    const newTokens = a.get('new-tokens', 32);
    const open = openOptions(a, { maxContext: promptTokens + newTokens });
    const json = a.flag('json');
    return {
      model: given,
      async run() {
        const model = await openModel(await given.dir(), open);
        try {
          const r = await runBench(model, { promptTokens, newTokens, kernels: a.flag('kernels') });
          process.stdout.write(
            json
              ? JSON.stringify(r) + '\n'
              : Object.entries(r)
                  .map(([k, x]) => `${k}: ${x}`)
                  .join('\n') + '\n',
          );
        } finally {
          model.close();
        }
      },
    };
  },
};

const synth: Command = {
  synopsis: `molm synth    --config FILE --out DIR [--layers L] [--dtype bf16|f16|f32] [--seed S] [--set key=value ...]
      a random-weight checkpoint of a config's shapes (for benchmarks); bf16 unless --dtype.`,
  options: ['config', 'layers', 'out', 'dtype', 'seed', 'set'],
  specs: { dtype: oneOf(['bf16', 'f16', 'f32'] as const) },
  prepare(a) {
    const configPath = a.required<string>('config');
    const outDir = a.required<string>('out');
    const overrides = Object.fromEntries(a.get<[string, number][]>('set', []));
    return {
      files: { config: configPath },
      run: () =>
        synthesize({
          configPath,
          layers: a.get('layers'),
          outDir,
          dtype: a.get('dtype', 'bf16').toUpperCase() as 'F32' | 'BF16' | 'F16',
          seed: a.get('seed', 1),
          overrides,
        }),
    };
  },
};

const convert: Command = {
  synopsis: `molm convert  --model HF_DIR|ORG/NAME[@REV] --out DIR --dtype f32|f16|bf16|q8|q4 [--shard-mib 32] [--hub-url URL]
      molm-web's shard format (manifest.json + shard-NNNNN.bin, docs/format.md); matrices in the
      dtype (q8/q4: f16 where a matrix cannot be quantised), vectors f32. A hub repo is read in
      place (Range requests), without a copy in the cache. A folder with a pack.json (an expert
      pack's source, tools/train/pack.py) becomes a converted pack.`,
  options: ['model', 'out', 'dtype', 'shard-mib', 'hub-url'],
  prepare(a) {
    const model = new ModelArg(a.required<string>('model'), { hubUrl: a.get('hub-url'), hubOnly: a.has('hub-url') ? ['hub-url'] : [] });
    const outDir = a.required<string>('out');
    const dtype = a.required<string>('dtype');
    return {
      model,
      async run() {
        const line = await runConvert({ modelDir: model.value, source: model.isHub ? model.source() : undefined, outDir, dtype, shardMiB: a.get('shard-mib') });
        process.stdout.write(line + '\n');
      },
    };
  },
};

const merge: Command = {
  synopsis: `molm merge    --model DIR --pack DIR [--pack DIR ...] --out DIR2 [--json]
      the model with the expert packs merged in, as an ordinary F32 Hugging Face checkpoint
      (config.json, model.safetensors, tokenizer.json) that PyTorch loads (docs/extending.md).`,
  options: ['model', 'pack', 'out', 'json', 'hub-url', 'cache-dir', 'dtype'],
  specs: { dtype: importDtype },
  prepare(a) {
    const model = modelArg(a);
    const packDirs = a.get<string[]>('pack', []);
    if (packDirs.length === 0) throw new OptionError('molm merge needs at least one --pack DIR.');
    const outDir = a.required<string>('out');
    const json = a.flag('json');
    return {
      model,
      async run() {
        const r = await runMerge({ modelDir: await model.dir(), packDirs, outDir });
        process.stdout.write(
          json
            ? JSON.stringify(r) + '\n'
            : `${r.nAttExperts} attention and ${r.nMlpExperts} MLP experts per layer, router width ${r.gatingSize} → ${r.out} (F32, ${(r.bytes / 1e6).toFixed(1)} MB)\n`,
        );
      },
    };
  },
};

const COMMANDS: Record<string, Command> = { logits, generate, eval: evalCommand, profile, prune, bench, synth, convert, merge };

const USAGE = `molm: MoLM (ModuleFormer) inference on WebGPU (Dawn), WebAssembly or the CPU reference.

${Object.values(COMMANDS)
  .map((c) => '  ' + c.synopsis)
  .join('\n')}

  Commands that run a model (logits, generate, eval, profile, bench; --pack also prune):
${DEVICE_USAGE}
${DIR_USAGE}
${COMMON_USAGE}
  molm COMMAND --help lists a command's options and the values each takes.`;

function specsOf(c: Command): Record<string, Spec> {
  const names: OptionName[] = [...c.options, 'verbose', 'help'];
  return Object.fromEntries(names.map((n) => [n, c.specs?.[n] ?? OPTIONS[n]]));
}

function commandUsage(name: string, c: Command): string {
  const specs = specsOf(c);
  const width = Math.max(...Object.entries(specs).map(([n, s]) => n.length + (s.type === 'string' ? s.arg.length + 1 : 0)));
  const lines = Object.entries(specs).map(([n, s]) => {
    const left = s.type === 'string' ? `${n} ${s.arg}` : n;
    return `  --${left.padEnd(width)}  ${s.allowed}${n === 'help' ? ` (molm ${name})` : ''}`;
  });
  const device = c.options.includes('device') ? `\n${DEVICE_USAGE}` : '';
  const dir = c.options.includes('model') ? `\n${DIR_USAGE}` : '';
  return `usage:\n  ${c.synopsis}\n\noptions:\n${lines.join('\n')}\n${device}${dir}\n${COMMON_USAGE}`;
}

const KNOWN_ERRORS = new Set([
  'MolmError',
  'ModelFormatError',
  'DeviceLimitError',
  'DeviceLostError',
  'ComputeThreadError',
  'ContextLengthError',
  'QuotaError',
  'AbortError',
  'UsageError',
]);

/** The files a command names, there before anything is opened; a missing one is an input error (exit 1). */
async function checkInputs(inputs: Inputs): Promise<void> {
  await inputs.model?.check();
  for (const [option, p] of Object.entries(inputs.files ?? {})) {
    if (p === undefined) continue;
    let s: Awaited<ReturnType<typeof stat>>;
    try {
      s = await stat(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && (e as NodeJS.ErrnoException).code !== 'ENOTDIR') throw e;
      throw new MolmError(`--${option} ${p} does not exist: give an existing file.`);
    }
    if (!s.isFile()) throw new MolmError(`--${option} ${p} is not a file.`);
  }
}

/**
 * Runs the CLI; resolves to the exit code: 0 done, 1 a model, input or device error (or an
 * unexpected one), 2 a wrong command line. Nothing is opened until every option is checked.
 */
export async function main(argv: string[]): Promise<number> {
  const verbose = argv.includes('--verbose');
  let usage = USAGE;
  try {
    const name = findCommand(argv, OPTIONS);
    const help = argv.includes('--help') || argv.includes('-h');
    if (name === undefined) {
      if (help) {
        process.stdout.write(USAGE + '\n');
        return 0;
      }
      throw new OptionError('Give a command.');
    }
    const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (!command) throw new OptionError(`Unknown command "${name}". Commands: ${Object.keys(COMMANDS).join(', ')}.`);
    usage = commandUsage(name, command);
    if (help) {
      process.stdout.write(usage + '\n');
      return 0;
    }
    const { args, positionals } = parseCommandLine(argv, specsOf(command));
    if (positionals.length > 1)
      throw new OptionError(`Unexpected argument "${positionals[1]}" (an option's value that starts with "-" is written --option=-…).`);
    const inputs = command.prepare(args);
    await checkInputs(inputs);
    await inputs.run();
    return 0;
  } catch (e) {
    return report(e, usage, verbose);
  }
}

function report(e: unknown, usage: string, verbose: boolean): number {
  const name = (e as Error | undefined)?.name;
  const message = e instanceof Error ? e.message : String(e);
  const stack = verbose && e instanceof Error && e.stack ? `\n${e.stack}` : '';
  if (e instanceof OptionError) {
    process.stderr.write(`molm: ${message}\n\n${usage}\n`);
    return 2;
  }
  if (e instanceof UsageError || name === 'UsageError') {
    process.stderr.write(`molm: ${message}${stack}\n`);
    return 2;
  }
  if (e instanceof MolmError || (name !== undefined && KNOWN_ERRORS.has(name))) {
    process.stderr.write(`molm: ${message}${stack}\n`);
    return 1;
  }
  process.stderr.write(`molm: ${message}${stack || '\n(run again with --verbose to see where it happened)'}\n`);
  return 1;
}
