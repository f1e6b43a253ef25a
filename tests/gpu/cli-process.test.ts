import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildCli, molmProcess } from '../molm-cli.ts';

// bin/molm.mjs as a user runs it: its own process, stdout and stderr, exit code and signals.

const BROWN = join(__dirname, '..', '..', 'public/models/molm-brown');

/** Driver noise by its sources' names, independent of the filter's own patterns. */
const NOISE = /XDG_RUNTIME_DIR|Vulkan|vulkan|BackendType|[Dd]awn|MESA|lavapipe|[Ss]wift[Ss]hader|Loader Message/;
const noiseLines = (stderr: string) => stderr.split('\n').filter((l) => NOISE.test(l));

beforeAll(() => buildCli(), 120_000);

describe('bin/molm.mjs', () => {
  it('exits 2 on a wrong command line, 1 on a missing model, 0 on --help', async () => {
    const bad = await molmProcess(['generate', '--model', BROWN, '--prompt', 'hi', '--max-new-tokens', 'abc']);
    expect(bad.code).toBe(2);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatch(/^molm: --max-new-tokens must be a whole number from 0 to 1048576, got "abc"\.\n\nusage:\n {2}molm generate /);
    const unknown = await molmProcess(['bench', '--model', BROWN, '--frames', '3']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^molm: Unknown option --frames\.\n\nusage:\n {2}molm bench /);
    const missing = await molmProcess(['generate', '--model', join(BROWN, 'nope'), '--prompt', 'hi']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^molm: --model .*nope does not exist/);
    const help = await molmProcess(['generate', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--verbose/);
  });

  it('generate --device gpu streams its tokens, with no driver noise on stderr unless --verbose', { timeout: 300_000 }, async () => {
    const args = ['generate', '--model', BROWN, '--prompt', 'The committee said that', '--max-new-tokens', '6', '--seed', '1', '--device', 'gpu'];
    const quiet = await molmProcess(args);
    expect(quiet.code, quiet.stderr).toBe(0);
    expect(quiet.stdout.trim()).not.toBe('');
    // Token by token, not all at the end.
    expect(quiet.chunks.length).toBeGreaterThan(1);
    expect(noiseLines(quiet.stderr)).toEqual([]);

    const verbose = await molmProcess([...args, '--verbose']);
    expect(verbose.code, verbose.stderr).toBe(0);
    expect(verbose.stdout).toBe(quiet.stdout);
    // What the drivers print (on SwiftShader under Mesa: several lines), --verbose shows all of;
    // without it nothing else is lost.
    const raw = await molmProcess(args, { bundle: true });
    expect(raw.code, raw.stderr).toBe(0);
    expect(noiseLines(verbose.stderr)).toEqual(noiseLines(raw.stderr));
    expect(verbose.stderr).toBe(raw.stderr);
    const notNoise = (stderr: string) => stderr.split('\n').filter((l) => l !== '' && !NOISE.test(l));
    expect(notNoise(quiet.stderr)).toEqual(notNoise(raw.stderr));
  });

  it.runIf(process.platform === 'linux')('Ctrl-C stops the CLI and ends the command by the same signal', async () => {
    const marker = `sigint-test-${process.pid}-${Date.now()}`;
    const run = await molmProcess(['generate', '--model', BROWN, '--device', 'wasm', '--threads', '1', '--max-new-tokens', '200', '--prompt', marker], {
      onStart: (p) => p.stdout!.once('data', () => p.kill('SIGINT')),
    });
    expect(run.signal).toBe('SIGINT');
    // The child running the CLI is gone too (pgrep exits 1 when nothing matches).
    await new Promise((r) => setTimeout(r, 200));
    expect(() => execFileSync('pgrep', ['-f', marker])).toThrow();
  });
});
