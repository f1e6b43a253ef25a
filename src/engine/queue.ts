import { AbortError } from '../errors.ts';

/**
 * One generation at a time: callers wait their turn in arrival order. A caller whose signal
 * aborts while it waits leaves the line without ever running.
 */
export class TurnQueue {
  private tail: Promise<void> = Promise.resolve();
  private waiting = 0;

  /** Callers waiting or running. */
  get length(): number {
    return this.waiting;
  }

  /** Resolves with a release function once every earlier caller has released. */
  async acquire(signal?: AbortSignal): Promise<() => void> {
    this.waiting++;
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const before = this.tail;
    this.tail = before.then(() => mine);
    let released = false;
    const done = () => {
      if (released) return;
      released = true;
      this.waiting--;
      release();
    };
    try {
      await abortable(before, signal);
    } catch (e) {
      done();
      throw e;
    }
    return done;
  }
}

function abortable(p: Promise<void>, signal?: AbortSignal): Promise<void> {
  if (!signal) return p;
  if (signal.aborted) return Promise.reject(new AbortError('The generation was aborted before it started.'));
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(new AbortError('The generation was aborted before it started.'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}
