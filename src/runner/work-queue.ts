import { KeyedBackoff, type BackoffPolicy } from '../platform/kube/backoff.ts';

/**
 * A keyed, de-duplicating work queue in the manner of client-go's workqueue: a key is handed to one worker at a
 * time; adding a key that is already waiting does nothing; adding one that is being processed makes it come back
 * once, after `done`. Delayed adds keep the earliest time, so many events for one object cause one reconcile, and
 * a burst of validation results is folded into one status write.
 */

export interface Timers {
  now(): number;
  setTimeout(callback: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemTimers: Timers = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => {
    const handle = setTimeout(callback, ms);
    handle.unref();
    return handle;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export class WorkQueue {
  readonly #timers: Timers;
  readonly #backoff: KeyedBackoff;
  readonly #ready: string[] = [];
  /** Keys waiting to be processed (in #ready, or to be re-added after `done`). */
  readonly #dirty = new Set<string>();
  readonly #processing = new Set<string>();
  readonly #delayed = new Map<string, number>();
  readonly #waiters: ((key: string | undefined) => void)[] = [];
  #timer: unknown;
  #timerDue = Infinity;
  #shuttingDown = false;

  constructor(backoff: BackoffPolicy, timers: Timers = systemTimers, random?: () => number) {
    this.#timers = timers;
    this.#backoff = new KeyedBackoff(backoff, random);
  }

  /** Keys ready or delayed, not counting those being processed. */
  get length(): number {
    const delayedOnly = [...this.#delayed.keys()].filter((key) => !this.#dirty.has(key)).length;
    return this.#ready.length + delayedOnly;
  }

  add(key: string): void {
    if (this.#shuttingDown) return;
    this.#delayed.delete(key);
    if (this.#dirty.has(key)) return;
    this.#dirty.add(key);
    if (this.#processing.has(key)) return;
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      this.#dirty.delete(key);
      this.#processing.add(key);
      waiter(key);
    } else {
      this.#ready.push(key);
    }
  }

  /** Adds `key` after `delayMs`; an earlier pending time for the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.#shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const due = this.#timers.now() + delayMs;
    const pending = this.#delayed.get(key);
    if (pending !== undefined && pending <= due) return;
    this.#delayed.set(key, due);
    this.#arm();
  }

  /** Re-adds a key whose processing failed, after a per-key exponential backoff. */
  addRateLimited(key: string): void {
    this.addAfter(key, this.#backoff.next(key));
  }

  /** Clears a key's failure count after it was processed successfully. */
  forget(key: string): void {
    this.#backoff.forget(key);
  }

  failures(key: string): number {
    return this.#backoff.attempts(key);
  }

  /** The next key to process; undefined once the queue is shut down. Call `done(key)` when finished. */
  get(): Promise<string | undefined> {
    if (this.#shuttingDown) return Promise.resolve(undefined);
    const key = this.#ready.shift();
    if (key !== undefined) {
      this.#dirty.delete(key);
      this.#processing.add(key);
      return Promise.resolve(key);
    }
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  done(key: string): void {
    this.#processing.delete(key);
    if (this.#dirty.has(key)) {
      this.#dirty.delete(key);
      this.add(key);
    }
  }

  /** Stops handing out keys: waiting workers get undefined; keys being processed may still call `done`. */
  shutDown(): void {
    this.#shuttingDown = true;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    for (const waiter of this.#waiters.splice(0)) waiter(undefined);
  }

  #arm(): void {
    let earliest = Infinity;
    for (const due of this.#delayed.values()) earliest = Math.min(earliest, due);
    if (earliest === this.#timerDue) return;
    if (this.#timer !== undefined) this.#timers.clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerDue = earliest;
    if (earliest === Infinity) return;
    this.#timer = this.#timers.setTimeout(
      () => {
        this.#timer = undefined;
        this.#timerDue = Infinity;
        const now = this.#timers.now();
        for (const [key, due] of [...this.#delayed]) {
          if (due <= now) this.add(key);
        }
        this.#arm();
      },
      Math.max(0, earliest - this.#timers.now()),
    );
  }
}
