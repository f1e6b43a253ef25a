import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { vi } from 'vitest';
import { main } from '../src/cli/main.ts';

const ROOT = join(__dirname, '..');

/** Runs the `molm` CLI in-process and captures what it prints. */
export async function molm(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((s) => ((stdout += String(s)), true));
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((s) => ((stderr += String(s)), true));
  try {
    return { code: await main(args), stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

/**
 * Builds dist/cli.mjs from the sources as they are now (what `npm ci` does), so a test of the
 * installed command never runs a stale bundle. About a second.
 */
export function buildCli(): void {
  execFileSync('npm', ['run', '--silent', 'build:cli'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface MolmRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The stdout chunks as they arrived. */
  chunks: string[];
}

/**
 * Runs bin/molm.mjs as a user runs it: a separate node process, its own stdout and stderr.
 * `onStart` gets the process, e.g. to signal it. With `bundle`, runs dist/cli.mjs's main() in
 * the process instead, stderr unfiltered: what the drivers print.
 */
export function molmProcess(args: string[], o: { onStart?: (p: ChildProcess) => void; bundle?: boolean } = {}): Promise<MolmRun> {
  const entry = o.bundle
    ? [
        '--input-type=module',
        '-e',
        `const { main } = await import(${JSON.stringify(pathToFileURL(join(ROOT, 'dist/cli.mjs')).href)}); process.exitCode = await main(${JSON.stringify(args)});`,
      ]
    : [join(ROOT, 'bin/molm.mjs'), ...args];
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, entry, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    const run: MolmRun = { code: null, signal: null, stdout: '', stderr: '', chunks: [] };
    p.stdout!.setEncoding('utf8').on('data', (s: string) => {
      run.stdout += s;
      run.chunks.push(s);
    });
    p.stderr!.setEncoding('utf8').on('data', (s: string) => (run.stderr += s));
    p.on('error', reject);
    p.on('close', (code, signal) => resolve({ ...run, code, signal }));
    o.onStart?.(p);
  });
}
