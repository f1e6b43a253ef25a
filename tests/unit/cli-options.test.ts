import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { molm } from '../molm-cli.ts';

// The CLI's command line, run in-process. A model folder that does not exist stands in for the
// model wherever an option is wrong: the option's error (exit 2) instead of the folder's (exit 1)
// shows that the option was checked before anything was opened.

const FIXTURES = join(__dirname, '..', 'fixtures');
const TINY = join(FIXTURES, 'golden/tiny-molm');
const BROWN = join(__dirname, '..', '..', 'public/models/molm-brown');
const tmp = mkdtempSync(join(tmpdir(), 'molm-cli-options-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const NOPE = join(tmp, 'no-such-model');
const NO_FILE = join(tmp, 'no-such-file');

/** The least each command needs, with inputs that do not exist. */
const BASE: Record<string, string[]> = {
  logits: ['--model', NOPE, '--ids', '1,2', '--out', join(tmp, 'x.f32')],
  generate: ['--model', NOPE, '--prompt', 'hi'],
  'generate --ids': ['--model', NOPE, '--ids', '1,2'],
  eval: ['--model', NOPE, '--text', NO_FILE],
  profile: ['--model', NOPE, '--text', NO_FILE, '--out', join(tmp, 'usage.json')],
  prune: ['--model', NOPE, '--usage', NO_FILE, '--keep', '2', '--out', join(tmp, 'pruned')],
  bench: ['--model', NOPE],
  synth: ['--config', NO_FILE, '--out', join(tmp, 'synth')],
  convert: ['--model', NOPE, '--out', join(tmp, 'converted'), '--dtype', 'q8'],
};

function line(command: string, ...extra: string[]): string[] {
  const name = command.split(' ')[0];
  return [name, ...BASE[command], ...extra];
}

// [command, option, bad value, what the message says the option takes]
const BAD_VALUES: [string, string, string, RegExp][] = [
  ...['abc', '-3', '1.5', '1e99', '', '0x10', ' 5', '1048577'].map((x): [string, string, string, RegExp] => [
    'generate',
    'max-new-tokens',
    x,
    /a whole number from 0 to 1048576/,
  ]),
  ['generate --ids', 'max-new-tokens', '-1', /a whole number from 0 to/],
  ['generate', 'temperature', '-0.5', /a number from 0 up/],
  ['generate', 'temperature', 'hot', /a number from 0 up/],
  ['generate', 'temperature', 'Infinity', /a number from 0 up/],
  ['generate', 'top-k', '1.5', /a whole number from 0 to/],
  ['generate', 'top-k', '-1', /a whole number from 0 to/],
  ['generate', 'top-p', '0', /above 0 and at most 1/],
  ['generate', 'top-p', '1.01', /above 0 and at most 1/],
  ['generate', 'repetition-penalty', '0', /a number above 0/],
  ['generate', 'seed', '-1', /a whole number from 0 to 4294967295/],
  ['generate', 'seed', '4294967296', /a whole number from 0 to 4294967295/],
  ['generate', 'stop', '', /not empty/],
  ['generate', 'device', 'tpu', /one of gpu, wasm, cpu/],
  ['generate', 'max-context', '0', /a whole number from 1 to/],
  ['generate', 'prefill-chunk', 'many', /a whole number from 1 to/],
  ['generate', 'gpu-memory-budget', '0', /bytes above 0, or a share/],
  ['generate', 'gpu-memory-budget', '150%', /bytes above 0, or a share/],
  ['generate', 'gpu-memory-budget', '1GB', /bytes above 0, or a share/],
  ['generate', 'expert-eviction', 'fifo', /one of lfu, lru/],
  ['generate --ids', 'ids', '1,x', /comma-separated token ids/],
  ['generate --ids', 'ids', '1,,2', /comma-separated token ids/],
  ['logits', 'ids', '-1', /comma-separated token ids/],
  ['bench', 'threads', '0', /a whole number from 1 to 256/],
  ['bench', 'context', '0', /a whole number from 1 to/],
  ['bench', 'prompt-tokens', 'x', /a whole number from 1 to/],
  ['bench', 'new-tokens', '0', /a whole number from 1 to/],
  ['eval', 'window', '0', /a whole number from 1 to/],
  ['eval', 'max-tokens', '2.5', /a whole number from 1 to/],
  ['profile', 'window', 'abc', /a whole number from 1 to/],
  ['prune', 'keep', '0', /a whole number from 1 to 256/],
  ['prune', 'dtype', 'f64', /one of f32, f16, bf16, q8, q4/],
  ['synth', 'layers', '0', /a whole number from 1 to 1024/],
  ['synth', 'dtype', 'q4', /one of bf16, f16, f32/],
  ['synth', 'seed', 'x', /a whole number from 0 to/],
  ['synth', 'set', 'n_embd', /key=number/],
  ['synth', 'set', 'n_embd=big', /key=number/],
  ['convert', 'dtype', 'f64', /one of f32, f16, bf16, q8, q4/],
  ['convert', 'shard-mib', '0', /above 0 and at most 4096/],
  ['convert', 'shard-mib', '5000', /above 0 and at most 4096/],
];

/** An option error: one line naming the problem, an empty line, then the command's usage; nothing on stdout. */
function expectUsageError(r: { code: number; stdout: string; stderr: string }, command: string, message: RegExp): void {
  expect(r.code, r.stderr).toBe(2);
  expect(r.stdout).toBe('');
  const [first, empty, usage, synopsis] = r.stderr.split('\n');
  expect(first).toMatch(/^molm: /);
  expect(first).toMatch(message);
  expect(empty).toBe('');
  expect(usage).toBe('usage:');
  expect(synopsis).toMatch(new RegExp(`^  molm ${command} `));
  expect(r.stderr).toMatch(/--verbose/);
}

describe('molm: every option is checked before anything is opened', () => {
  it.each(BAD_VALUES)('%s --%s %j', async (command, option, value, allowed) => {
    // The value the way a user types it, and joined with "=".
    for (const args of [[`--${option}`, value], [`--${option}=${value}`]]) {
      const base = line(command);
      const at = base.indexOf(`--${option}`);
      if (at >= 0) base.splice(at, 2);
      // What the option needs beside it, so that the value itself is what fails.
      const extra = option === 'threads' ? ['--device', 'wasm'] : option === 'expert-eviction' ? ['--gpu-memory-budget', '50%'] : [];
      const r = await molm(...base, ...extra, ...args);
      const name = command.split(' ')[0];
      expectUsageError(r, name, new RegExp(`--${option} must be `));
      expect(r.stderr.split('\n')[0]).toMatch(allowed);
      expect(r.stderr.split('\n')[0]).toContain(`got ${JSON.stringify(value)}`);
    }
  });

  it.each([
    ['generate', ['--threads', '2'], /--threads applies to --device wasm only/],
    ['generate', ['--device', 'wasm', '--gpu-memory-budget', '25%'], /--gpu-memory-budget applies to --device gpu only/],
    ['generate', ['--expert-eviction', 'lru'], /--expert-eviction applies with --gpu-memory-budget only/],
    ['generate', ['--greedy', '--temperature', '0.5'], /--greedy .* no --temperature/],
    ['generate', ['--ids', '1'], /Give --prompt or --ids, not both/],
    ['generate --ids', ['--stop', 'x'], /--stop applies to --prompt only/],
    ['generate --ids', ['--top-k', '5'], /--top-k samples only with --temperature/],
    ['bench', ['--context', '8', '--prompt-tokens', '8'], /Give --context or --prompt-tokens, not both/],
    ['prune', ['--mass', '0.9'], /Give --keep or --mass, not both/],
    ['eval', ['--window', '64', '--max-context', '32'], /--window must be at most --max-context \(32\), got 64/],
  ] as const)('%s %j: options that do not go together', async (command, extra, message) => {
    expectUsageError(await molm(...line(command), ...extra), command.split(' ')[0], message);
  });

  it('refuses an unknown option, an option of another command, a missing value and a stray word', async () => {
    expectUsageError(await molm(...line('generate', '--bogus')), 'generate', /Unknown option --bogus/);
    expectUsageError(await molm(...line('synth', '--prompt', 'hi')), 'synth', /Unknown option --prompt/);
    expectUsageError(await molm(...line('generate', '--max-new-tokens')), 'generate', /--max-new-tokens needs a value: N, a whole number from 0 to/);
    expectUsageError(await molm(...line('generate', '--json=yes')), 'generate', /--json takes no value/);
    expectUsageError(await molm(...line('generate', 'extra')), 'generate', /Unexpected argument "extra"/);
  });

  it('names a missing required option', async () => {
    expectUsageError(await molm('generate', '--prompt', 'hi'), 'generate', /--model is required: DIR, a model folder/);
    expectUsageError(await molm('generate', '--model', NOPE), 'generate', /Give --prompt or --ids/);
    expectUsageError(await molm('logits', '--model', NOPE, '--ids', '1'), 'logits', /--out is required/);
    expectUsageError(await molm('convert', '--model', NOPE, '--out', join(tmp, 'c')), 'convert', /--dtype is required: f32\|f16\|bf16\|q8\|q4/);
    expectUsageError(await molm('prune', '--model', NOPE, '--usage', NO_FILE, '--out', join(tmp, 'p')), 'prune', /Give --keep or --mass/);
  });

  it('refuses an unknown command, or none, with the general usage', async () => {
    for (const [args, message] of [
      [['frobnicate'], /Unknown command "frobnicate"\. Commands: logits, generate/],
      [[], /Give a command/],
      [['--verbose'], /Give a command/],
    ] as const) {
      const r = await molm(...args);
      expect(r.code).toBe(2);
      expect(r.stderr.split('\n')[0]).toMatch(message);
      expect(r.stderr).toMatch(/molm COMMAND --help/);
    }
  });
});

describe('molm: inputs, help and exit codes', () => {
  it('says a model folder does not exist, or is not a folder (exit 1)', async () => {
    const missing = await molm(...line('generate'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(
      `molm: --model ${NOPE} does not exist: give the folder that holds the model (config.json or manifest.json, with its weights).\n`,
    );
    const file = await molm('generate', '--model', join(BROWN, 'manifest.json'), '--prompt', 'hi');
    expect(file.code).toBe(1);
    expect(file.stderr).toMatch(/manifest\.json is not a folder/);
    const text = await molm('eval', '--model', BROWN, '--text', NO_FILE);
    expect(text.code).toBe(1);
    expect(text.stderr).toMatch(/^molm: --text .* does not exist/);
  });

  it.each(Object.keys(BASE))('%s takes --verbose', async (command) => {
    const r = await molm(...line(command, '--verbose'));
    expect(r.code, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/does not exist/);
  });

  it.each(['logits', 'generate', 'eval', 'profile', 'prune', 'bench', 'synth', 'convert'])(
    '%s --help lists its options and the exit codes',
    async (command) => {
      const r = await molm(command, '--help');
      expect(r.code).toBe(0);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(new RegExp(`^usage:\n  molm ${command} `));
      expect(r.stdout).toMatch(/\n {2}--verbose {2,}/);
      expect(r.stdout).toMatch(/Exit codes: 0 done; 1 .*\n.*2 the command line is wrong/);
      const all = await molm('--help');
      expect(all.code).toBe(0);
      expect(all.stdout).toContain(`  molm ${command} `);
    },
  );

  it('a model or input error exits 1, a usage error found after loading 2 without the usage text', async () => {
    const outOfVocab = await molm('logits', '--model', TINY, '--device', 'cpu', '--ids', '1,500', '--out', join(tmp, 'x.f32'));
    expect(outOfVocab.code).toBe(2);
    expect(outOfVocab.stderr).toMatch(/^molm: .*outside the vocabulary.*\n$/);

    const broken = join(tmp, 'broken');
    rmSync(broken, { recursive: true, force: true });
    await import('node:fs').then((fs) => fs.mkdirSync(broken));
    writeFileSync(join(broken, 'config.json'), '{"n_layer": ');
    const format = await molm('generate', '--model', broken, '--ids', '1', '--device', 'cpu');
    expect(format.code).toBe(1);
    expect(format.stderr).toMatch(/^molm: .*config\.json/);
    expect(format.stderr).not.toMatch(/\n\s+at /);

    const long = await molm(
      'generate',
      '--model',
      BROWN,
      '--device',
      'wasm',
      '--threads',
      '1',
      '--max-context',
      '4',
      '--prompt',
      'one two three four five six seven eight',
    );
    expect(long.code).toBe(1);
    expect(long.stderr).toMatch(/^molm: The prompt has \d+ tokens/);
  });

  it('an unexpected error prints its message, and its stack only with --verbose (exit 1)', async () => {
    const out = join(tmp, 'no-such-folder', 'x.f32');
    const quiet = await molm('logits', '--model', TINY, '--device', 'cpu', '--ids', '1,2', '--out', out);
    expect(quiet.code).toBe(1);
    expect(quiet.stderr).toMatch(/^molm: ENOENT: no such file or directory/);
    expect(quiet.stderr).not.toMatch(/\n\s+at /);
    expect(quiet.stderr).toMatch(/--verbose/);
    const verbose = await molm('logits', '--model', TINY, '--device', 'cpu', '--ids', '1,2', '--out', out, '--verbose');
    expect(verbose.code).toBe(1);
    expect(verbose.stderr).toMatch(/^molm: ENOENT/);
    expect(verbose.stderr).toMatch(/\n\s+at /);
  });
});
