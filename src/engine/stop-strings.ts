/**
 * Finds stop strings in streamed text. Text that could still turn out to be the start of a stop
 * string is held back, so a caller never sees part of a stop string, even when it arrives split
 * over several tokens; the stop string itself and anything after it are never emitted.
 */
export class StopStringMatcher {
  private held = '';
  private done = false;
  private readonly longest: number;

  constructor(private readonly stops: readonly string[]) {
    this.stops = stops.filter((s) => s.length > 0);
    this.longest = Math.max(0, ...this.stops.map((s) => s.length));
  }

  /** True once a stop string was found; later pushes return ''. */
  get stopped(): boolean {
    return this.done;
  }

  /** The text that is now safe to emit. */
  push(text: string): string {
    if (this.done) return '';
    const all = this.held + text;
    let cut = -1;
    for (const s of this.stops) {
      const at = all.indexOf(s);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.done = true;
      this.held = '';
      return all.slice(0, cut);
    }
    // Keep the longest tail that is a prefix of some stop string.
    let keep = 0;
    for (let n = Math.min(this.longest - 1, all.length); n > 0; n--) {
      const tail = all.slice(all.length - n);
      if (this.stops.some((s) => s.startsWith(tail))) {
        keep = n;
        break;
      }
    }
    this.held = all.slice(all.length - keep);
    return all.slice(0, all.length - keep);
  }

  /** At the end of the stream: the held-back text (it was not a stop string after all). */
  flush(): string {
    const out = this.done ? '' : this.held;
    this.held = '';
    return out;
  }
}
