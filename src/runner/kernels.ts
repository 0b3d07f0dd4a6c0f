import type { PreflightValidationOCPSpec } from '../api/preflight.ts';
import { backoffDelay, type BackoffPolicy } from '../platform/kube/backoff.ts';
import type { KernelState } from '../preflight/status.ts';

/**
 * Release resolution for the runner: each (release image, real-time flag) is resolved once and shared by every
 * resource naming it; a failure is kept (for the KernelResolved condition) and retried with backoff. Resolution
 * runs outside reconciles; `onSettled` tells the runner to reconcile the resources that wait for it.
 */

export type ResolvedKernel = Extract<KernelState, { state: 'resolved' }>;

/** Resolves a release to its kernel; rejects with an error carrying `reason` (CamelCase) and `retryable`. */
export type ReleaseResolver = (
  spec: PreflightValidationOCPSpec,
  signal: AbortSignal,
) => Promise<ResolvedKernel>;

type Entry =
  | { readonly state: 'pending' }
  | { readonly state: 'resolved'; readonly kernel: ResolvedKernel }
  | {
      readonly state: 'failed';
      readonly reason: string;
      readonly message: string;
      readonly retryable: boolean;
      readonly retryAtMs: number;
      readonly failures: number;
    };

export class KernelCache {
  readonly #resolve: ReleaseResolver;
  readonly #backoff: BackoffPolicy;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();
  readonly #waiters = new Map<string, Set<string>>();
  readonly #abort = new AbortController();
  #onSettled: (resourceName: string) => void = () => undefined;

  constructor(resolve: ReleaseResolver, backoff: BackoffPolicy, now: () => number = Date.now) {
    this.#resolve = resolve;
    this.#backoff = backoff;
    this.#now = now;
  }

  onSettled(callback: (resourceName: string) => void): void {
    this.#onSettled = callback;
  }

  /** Seeds a kernel already recorded in a resource's status, so a restarted runner does not resolve it again. */
  remember(spec: PreflightValidationOCPSpec, kernel: ResolvedKernel): void {
    const key = releaseKey(spec);
    if (this.#entries.get(key)?.state !== 'resolved') this.#entries.set(key, { state: 'resolved', kernel });
  }

  /**
   * The kernel state for `spec` as known now, starting (or retrying, when due) a resolution in the background.
   * `retryInMs` says when a failed one is tried again.
   */
  stateFor(
    spec: PreflightValidationOCPSpec,
    resourceName: string,
  ): { kernel: KernelState; retryInMs?: number } {
    const key = releaseKey(spec);
    const entry = this.#entries.get(key);
    if (entry?.state === 'resolved') return { kernel: entry.kernel };
    this.#waiters.set(key, (this.#waiters.get(key) ?? new Set()).add(resourceName));
    if (entry === undefined) {
      this.#start(key, spec, 0);
      return { kernel: { state: 'pending' } };
    }
    if (entry.state === 'pending') return { kernel: entry };
    const now = this.#now();
    const kernel: KernelState = {
      state: 'failed',
      reason: entry.reason,
      message: entry.message,
      retrying: true,
    };
    if (entry.retryAtMs <= now) {
      this.#start(key, spec, entry.failures);
      return { kernel };
    }
    // A retry under way settles through onSettled; only a scheduled one needs a wake-up.
    return Number.isFinite(entry.retryAtMs) ? { kernel, retryInMs: entry.retryAtMs - now } : { kernel };
  }

  stop(): void {
    this.#abort.abort();
  }

  #start(key: string, spec: PreflightValidationOCPSpec, failures: number): void {
    const previous = this.#entries.get(key);
    // Keep showing the last failure while the retry runs, so the condition does not flap to Unknown.
    if (previous?.state !== 'failed') this.#entries.set(key, { state: 'pending' });
    else this.#entries.set(key, { ...previous, retryAtMs: Infinity });
    this.#resolve(spec, this.#abort.signal).then(
      (kernel) => this.#settle(key, { state: 'resolved', kernel }),
      (err: unknown) => {
        const { reason, message, retryable } = describeFailure(err);
        // Definite failures are retried too (a release may be pushed later), but no faster than transient ones.
        const delay = backoffDelay(this.#backoff, retryable ? failures : failures + 3);
        this.#settle(key, {
          state: 'failed',
          reason,
          message,
          retryable,
          retryAtMs: this.#now() + delay,
          failures: failures + 1,
        });
      },
    );
  }

  #settle(key: string, entry: Entry): void {
    if (this.#abort.signal.aborted) return;
    this.#entries.set(key, entry);
    const waiters = this.#waiters.get(key);
    this.#waiters.delete(key);
    for (const name of waiters ?? []) this.#onSettled(name);
  }
}

export function releaseKey(spec: PreflightValidationOCPSpec): string {
  return `${spec.releaseImage}\u0000${spec.useRTKernel === true ? 'rt' : 'std'}`;
}

function describeFailure(err: unknown): { reason: string; message: string; retryable: boolean } {
  const candidate = err as { reason?: unknown; retryable?: unknown; message?: unknown } | null;
  const reason =
    typeof candidate?.reason === 'string' && /^[A-Za-z][A-Za-z0-9_,:]*$/.test(candidate.reason)
      ? candidate.reason
      : 'ResolutionFailed';
  const message = typeof candidate?.message === 'string' ? candidate.message : String(err);
  const retryable = typeof candidate?.retryable === 'boolean' ? candidate.retryable : true;
  return { reason, message, retryable };
}
