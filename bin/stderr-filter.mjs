// What the native code under WebGPU (Dawn, the Vulkan loader and its layers, Mesa, SwiftShader)
// writes to stderr. It goes straight to file descriptor 2, past any JavaScript hook, so
// bin/molm.mjs runs the CLI in a child process and passes its stderr through StderrFilter.
// Each pattern is anchored at the start of a line and names its source, so the CLI's own messages
// ("molm: …", progress) and Node's (an uncaught error and its JavaScript stack) always get through.

/** Lines dropped unless --verbose. */
export const NOISE = [
  // libwayland-client, through Mesa's device-select Vulkan layer, without a desktop session.
  /^error: XDG_RUNTIME_DIR /,
  // Dawn's log (dawn/common/Log.cpp). A warning may go on over context lines (NOISE_CONTINUED).
  /^Warning: /,
  // Vulkan loader messages that Dawn relays.
  /^Error: Loader Message: /,
  // The Vulkan loader's own log (its errors; anything with VK_LOADER_DEBUG).
  /^(ERROR|WARNING|INFO|DEBUG|PERF|LAYER|DRIVER|VALIDATION): +(\[Loader Message\]|\[?vk\w*|loader_|lavapipe )/,
  // Mesa's drivers and loaders ("MESA: error: …", "MESA-LOADER: …", "MESA-INTEL: warning: …",
  // "radv/amdgpu: …"), and EGL/GLX if Dawn's OpenGL ES backend is tried.
  /^MESA[-A-Z]*: /,
  /^radv(\/\w+)?: /,
  /^lib(EGL|GL) (warning|error|info): /,
  // SwiftShader's log: "path/File.cpp:123 WARNING: …".
  /^\S+\.(cpp|hpp|cc|h):\d+ (WARNING|ERROR|INFO|UNSUPPORTED|UNIMPLEMENTED|WARN): /,
];

/** The lines that go on a dropped Dawn warning: its causes, the native frames, and the empty line that ends it. */
export const NOISE_CONTINUED = [/^ - /, /^\s+at \S+ \(.*\.(cpp|cc|h|hpp|mm):\d+\)\r?$/, /^\r?$/];

/** True when the command line asks to see driver messages. @param {readonly string[]} args */
export function isVerbose(args) {
  return args.includes('--verbose');
}

/**
 * Text in, the same text less the noise lines out. A partial line is held until its end comes,
 * or for `holdMs` at most: the CLI's progress ("\r12/40 tokens") has no end until the last update,
 * and waits no longer than that before it shows; the rest of that line then passes unread.
 */
export class StderrFilter {
  /** @param {(text: string) => void} out @param {{ holdMs?: number }} [o] */
  constructor(out, o = {}) {
    this.out = out;
    this.holdMs = o.holdMs ?? 50;
    this.pending = '';
    this.passing = false;
    this.continued = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
  }

  /** @param {string} text */
  write(text) {
    if (this.passing) {
      const nl = text.indexOf('\n');
      if (nl < 0) return this.out(text);
      this.out(text.slice(0, nl + 1));
      this.passing = false;
      text = text.slice(nl + 1);
    }
    this.pending += text;
    let nl;
    let kept = '';
    while ((nl = this.pending.indexOf('\n')) >= 0) {
      const line = this.pending.slice(0, nl);
      this.pending = this.pending.slice(nl + 1);
      if (!this.isNoise(line)) kept += line + '\n';
    }
    if (kept) this.out(kept);
    clearTimeout(this.timer);
    this.timer = this.pending ? setTimeout(() => this.release(), this.holdMs) : undefined;
  }

  /** What is held goes out, unless it is noise. */
  end() {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending && !this.isNoise(this.pending)) this.out(this.pending);
    this.pending = '';
  }

  release() {
    this.timer = undefined;
    if (!this.pending) return;
    this.out(this.pending);
    this.pending = '';
    this.passing = true;
    this.continued = false;
  }

  /** @param {string} line */
  isNoise(line) {
    if (this.continued) {
      if (NOISE_CONTINUED.some((re) => re.test(line))) {
        if (/^\r?$/.test(line)) this.continued = false;
        return true;
      }
      this.continued = false;
    }
    if (!NOISE.some((re) => re.test(line))) return false;
    this.continued = /^Warning: /.test(line);
    return true;
  }
}
