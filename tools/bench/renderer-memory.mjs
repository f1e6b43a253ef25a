import { readdir, readFile } from 'node:fs/promises';

// The memory of a headless Chromium's renderer processes, read from /proc (Linux): what the
// heap benchmarks report beside the page's own JS heap.

/**
 * Resident and peak resident bytes of a process; null for one that is gone (or undefined: none found).
 * @param {number | undefined} pid
 */
export async function procStatus(pid) {
  try {
    const text = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = (/** @type {string} */ key) => Number(text.match(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm'))?.[1] ?? Number.NaN) * 1024;
    return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
  } catch {
    return null;
  }
}

/**
 * Renderer processes of the Chromium whose --user-data-dir is `profile`.
 * @param {string} profile
 */
export async function rendererPids(profile) {
  const procs = [];
  for (const d of await readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      // Zygote children rewrite their command line as one space-separated string.
      const cmd = (await readFile(`/proc/${d}/cmdline`, 'utf8')).replaceAll('\0', ' ');
      const stat = await readFile(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      procs.push({ pid: Number(d), ppid, cmd });
    } catch {
      // gone
    }
  }
  const root = procs.find((p) => p.cmd.includes(`--user-data-dir=${profile} `) && !p.cmd.includes('--type='));
  if (!root) return [];
  const mine = new Set([root.pid]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const p of procs) if (!mine.has(p.pid) && mine.has(p.ppid)) mine.add(p.pid), (grew = true);
  }
  return procs.filter((p) => mine.has(p.pid) && p.cmd.includes('--type=renderer') && !p.cmd.includes('--top-chrome-webui')).map((p) => p.pid);
}
