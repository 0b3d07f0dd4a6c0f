/**
 * Exponential backoff with full jitter over a bounded range: attempt 0 waits about `baseMs`, each further attempt
 * doubles it up to `maxMs`. `random` is injected so tests get exact figures.
 */
export interface BackoffPolicy {
  readonly baseMs: number;
  readonly maxMs: number;
  /** Fraction of the delay that is randomised (0 = none, 1 = full jitter). */
  readonly jitter: number;
}

export function backoffDelay(
  policy: BackoffPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const exponential = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.min(attempt, 30));
  const spread = exponential * policy.jitter;
  return Math.round(exponential - spread + spread * random());
}

/** Attempts counted per key (a resource, a module), forgotten on success. */
export class KeyedBackoff {
  readonly #policy: BackoffPolicy;
  readonly #random: () => number;
  readonly #attempts = new Map<string, number>();

  constructor(policy: BackoffPolicy, random: () => number = Math.random) {
    this.#policy = policy;
    this.#random = random;
  }

  /** The delay before the next attempt for `key`, counting this failure. */
  next(key: string): number {
    const attempt = this.#attempts.get(key) ?? 0;
    this.#attempts.set(key, attempt + 1);
    return backoffDelay(this.#policy, attempt, this.#random);
  }

  attempts(key: string): number {
    return this.#attempts.get(key) ?? 0;
  }

  forget(key: string): void {
    this.#attempts.delete(key);
  }
}
