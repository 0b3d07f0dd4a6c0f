/**
 * Runs submitted tasks with at most `limit` at a time, first in first out. A slow task holds one slot and nothing
 * else: the others keep flowing through the remaining slots. Tasks must handle their own errors.
 */
export class TaskPool {
  readonly #limit: number;
  readonly #waiting: (() => Promise<void>)[] = [];
  #active = 0;
  #idle: (() => void)[] = [];

  constructor(limit: number) {
    if (!Number.isInteger(limit) || limit < 1)
      throw new RangeError(`pool limit must be a positive integer, got ${limit}`);
    this.#limit = limit;
  }

  get active(): number {
    return this.#active;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  submit(task: () => Promise<void>): void {
    this.#waiting.push(task);
    this.#pump();
  }

  /** Resolves when nothing is running or waiting. */
  idle(): Promise<void> {
    if (this.#active === 0 && this.#waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #pump(): void {
    while (this.#active < this.#limit) {
      const task = this.#waiting.shift();
      if (task === undefined) break;
      this.#active += 1;
      void task()
        .catch(() => undefined)
        .finally(() => {
          this.#active -= 1;
          this.#pump();
          if (this.#active === 0 && this.#waiting.length === 0) {
            for (const resolve of this.#idle.splice(0)) resolve();
          }
        });
    }
  }
}
