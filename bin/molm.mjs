#!/usr/bin/env node
// The `molm` command: runs the bundled CLI (built by `npm run build:cli`, which `npm ci` runs).
// Dawn, the Vulkan loader and Mesa write warnings to file descriptor 2 from native code, where no
// JavaScript hook sees them. So the CLI runs in a child process (the same node) whose stderr comes
// back through a pipe, line by line, less those messages (bin/stderr-filter.mjs). stdin and stdout
// are the child's own: generated text streams as before. With --verbose the CLI runs here, in
// this process, and stderr is untouched.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { StderrFilter, isVerbose } from './stderr-filter.mjs';

const CHILD = 'MOLM_CLI_CHILD';
const cli = fileURLToPath(new URL('../dist/cli.mjs', import.meta.url));
const args = process.argv.slice(2);

if (!existsSync(cli)) {
  console.error('molm: dist/cli.mjs is missing. Run `npm run build:cli` (npm ci runs it for you).');
  process.exit(1);
}

if (process.env[CHILD] === '1' || isVerbose(args)) {
  delete process.env[CHILD];
  const { main } = await import(pathToFileURL(cli).href);
  process.exitCode = await main(args);
} else {
  // The child gets this node's flags, less a debugger's: two processes cannot share its port.
  const flags = process.execArgv.filter((f) => !/^--inspect/.test(f));
  /** @type {NodeJS.ProcessEnv} */
  const env = { ...process.env, [CHILD]: '1' };
  if (process.stderr.isTTY) env.MOLM_STDERR_COLUMNS = String(process.stderr.columns || 100);
  const child = spawn(process.execPath, [...flags, fileURLToPath(import.meta.url), ...args], { stdio: ['inherit', 'inherit', 'pipe'], env });
  const filter = new StderrFilter((text) => process.stderr.write(text));
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text) => filter.write(text));

  // A terminal's Ctrl-C reaches both processes; a `kill` reaches this one only.
  /** @type {NodeJS.Signals[]} */
  const signals = process.platform === 'win32' ? ['SIGINT', 'SIGTERM'] : ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const forward = (/** @type {NodeJS.Signals} */ signal) => child.kill(signal);
  for (const s of signals) process.on(s, forward);

  let failed = false;
  child.on('error', (e) => {
    failed = true;
    console.error(`molm: could not start ${process.execPath}: ${e.message}`);
    process.exitCode = 1;
  });
  child.on('close', (code, signal) => {
    filter.end();
    if (failed) return;
    for (const s of signals) process.off(s, forward);
    // Ended by a signal: end the same way, so the shell sees it (130 after Ctrl-C).
    if (signal) process.kill(process.pid, signal);
    else process.exitCode = code ?? 1;
  });
}
