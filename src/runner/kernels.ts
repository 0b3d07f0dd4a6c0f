import type { Logger } from 'pino';
import { ConditionSchema } from '../api/meta.ts';
import type { PreflightValidationOCPSpec } from '../api/preflight.ts';
import { parseImageReference, referenceDigest } from '../image/reference.ts';
import { backoffDelay, type BackoffPolicy } from '../platform/kube/backoff.ts';
import type { KernelState } from '../preflight/status.ts';

/**
 * Release resolution for the runner: each (release image, real-time flag) is resolved once and shared by every
 * resource naming it; a failure is kept (for the KernelResolved condition) and retried with backoff. A release
 * named by tag is resolved again every `recheckIntervalMs`, because the tag can move to another release digest:
 * the resolver costs one manifest request then (its ReleaseCache holds the kernel of every digest it read), and a
 * new digest gives the resources naming that tag their new kernel. A reference pinned by digest is never asked
 * again. Resolution runs outside reconciles; `onSettled` tells the runner to reconcile the resources that wait.
 */

export type ResolvedKernel = Extract<KernelState, { state: 'resolved' }>;

/** Resolves a release to its kernel; rejects with an error carrying `reason` (CamelCase) and `retryable`. */
export type ReleaseResolver = (
  spec: PreflightValidationOCPSpec,
  signal: AbortSignal,
) => Promise<ResolvedKernel>;

export interface KernelCacheOptions {
  readonly resolve: ReleaseResolver;
  /** Failed resolutions, and failed re-checks of a tag, are retried with this backoff. */
  readonly backoff: BackoffPolicy;
  /** How often a release named by tag is resolved again to see whether the tag moved. */
  readonly recheckIntervalMs: number;
  readonly now?: () => number;
  /** Where a failed re-check and a moved tag are reported; they change no condition. */
  readonly logger?: Logger;
}

type Entry =
  | { readonly state: 'pending' }
  | {
      readonly state: 'resolved';
      readonly kernel: ResolvedKernel;
      /** When the reference is resolved again (Infinity when pinned by digest). */
      readonly checkAtMs: number;
      /** A re-check is under way. */
      readonly checking: boolean;
      /** Consecutive failed re-checks. */
      readonly failures: number;
    }
  | {
      readonly state: 'failed';
      readonly reason: string;
      readonly message: string;
      readonly retryable: boolean;
      readonly retryAtMs: number;
      readonly failures: number;
    };

export interface KernelLookup {
  readonly kernel: KernelState;
  /** Reconcile again after this long: a failed resolution is retried, or a tag is due to be checked again. */
  readonly nextCheckInMs?: number;
}

export class KernelCache {
  readonly #resolve: ReleaseResolver;
  readonly #backoff: BackoffPolicy;
  readonly #recheckIntervalMs: number;
  readonly #now: () => number;
  readonly #logger: Logger | undefined;
  readonly #entries = new Map<string, Entry>();
  readonly #waiters = new Map<string, Set<string>>();
  readonly #abort = new AbortController();
  #onSettled: (resourceName: string) => void = () => undefined;

  constructor(options: KernelCacheOptions) {
    this.#resolve = options.resolve;
    this.#backoff = options.backoff;
    this.#recheckIntervalMs = options.recheckIntervalMs;
    this.#now = options.now ?? Date.now;
    this.#logger = options.logger;
  }

  onSettled(callback: (resourceName: string) => void): void {
    this.#onSettled = callback;
  }

  /**
   * Seeds a kernel already recorded in a resource's status, so a restarted runner does not resolve it again. A
   * tag is checked once more at the next lookup (it may have moved while no runner watched).
   */
  remember(spec: PreflightValidationOCPSpec, kernel: ResolvedKernel): void {
    const key = releaseKey(spec);
    if (this.#entries.get(key)?.state === 'resolved') return;
    const checkAtMs = isPinnedByDigest(spec.releaseImage) ? Infinity : this.#now();
    this.#entries.set(key, { state: 'resolved', kernel, checkAtMs, checking: false, failures: 0 });
  }

  /**
   * The kernel state for `spec` as known now, starting (or retrying, or re-checking a tag, when due) a resolution
   * in the background.
   */
  stateFor(spec: PreflightValidationOCPSpec, resourceName: string): KernelLookup {
    const key = releaseKey(spec);
    const entry = this.#entries.get(key);
    const now = this.#now();
    if (entry?.state === 'resolved') {
      if (entry.checking) {
        this.#wait(key, resourceName);
        return { kernel: entry.kernel };
      }
      if (entry.checkAtMs > now) {
        return Number.isFinite(entry.checkAtMs)
          ? { kernel: entry.kernel, nextCheckInMs: entry.checkAtMs - now }
          : { kernel: entry.kernel };
      }
      // The known kernel stays in force while the tag is checked again; the check settles through onSettled.
      this.#wait(key, resourceName);
      this.#recheck(key, spec, entry);
      return { kernel: entry.kernel };
    }
    this.#wait(key, resourceName);
    if (entry === undefined) {
      this.#start(key, spec, 0);
      return { kernel: { state: 'pending' } };
    }
    if (entry.state === 'pending') return { kernel: entry };
    const kernel = failedState(entry);
    if (entry.retryAtMs <= now) {
      this.#start(key, spec, entry.failures);
      return { kernel };
    }
    // A retry under way settles through onSettled; only a scheduled one needs a wake-up.
    return Number.isFinite(entry.retryAtMs) ? { kernel, nextCheckInMs: entry.retryAtMs - now } : { kernel };
  }

  /** The kernel state for `spec` as known now, starting nothing (the final status write at shutdown). */
  known(spec: PreflightValidationOCPSpec): KernelState {
    const entry = this.#entries.get(releaseKey(spec));
    if (entry === undefined || entry.state === 'pending') return { state: 'pending' };
    if (entry.state === 'resolved') return entry.kernel;
    return failedState(entry);
  }

  stop(): void {
    this.#abort.abort();
  }

  #wait(key: string, resourceName: string): void {
    this.#waiters.set(key, (this.#waiters.get(key) ?? new Set()).add(resourceName));
  }

  #start(key: string, spec: PreflightValidationOCPSpec, failures: number): void {
    const previous = this.#entries.get(key);
    // Keep showing the last failure while the retry runs, so the condition does not flap to Unknown.
    if (previous?.state !== 'failed') this.#entries.set(key, { state: 'pending' });
    else this.#entries.set(key, { ...previous, retryAtMs: Infinity });
    this.#resolve(spec, this.#abort.signal).then(
      (kernel) => this.#settle(key, this.#resolvedEntry(spec, kernel)),
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

  /** Resolves a tag again; a failure keeps the kernel it named last and tries again with backoff. */
  #recheck(
    key: string,
    spec: PreflightValidationOCPSpec,
    entry: Extract<Entry, { state: 'resolved' }>,
  ): void {
    this.#entries.set(key, { ...entry, checking: true });
    this.#resolve(spec, this.#abort.signal).then(
      (kernel) => {
        const before = entry.kernel;
        if (before.releaseDigest !== kernel.releaseDigest || before.targetKernel !== kernel.targetKernel) {
          this.#logger?.info(
            {
              releaseImage: spec.releaseImage,
              digest: kernel.releaseDigest,
              previousDigest: before.releaseDigest,
              kernel: kernel.targetKernel,
              previousKernel: before.targetKernel,
            },
            'release tag moved to another digest',
          );
        }
        this.#settle(key, this.#resolvedEntry(spec, kernel));
      },
      (err: unknown) => {
        const delay = backoffDelay(this.#backoff, entry.failures);
        this.#logger?.warn(
          { releaseImage: spec.releaseImage, err: describeFailure(err).message, retryInMs: delay },
          'could not check the release tag again; keeping the kernel it named last',
        );
        this.#settle(key, {
          ...entry,
          checkAtMs: this.#now() + delay,
          checking: false,
          failures: entry.failures + 1,
        });
      },
    );
  }

  #resolvedEntry(spec: PreflightValidationOCPSpec, kernel: ResolvedKernel): Entry {
    const checkAtMs = isPinnedByDigest(spec.releaseImage) ? Infinity : this.#now() + this.#recheckIntervalMs;
    return { state: 'resolved', kernel, checkAtMs, checking: false, failures: 0 };
  }

  #settle(key: string, entry: Entry): void {
    if (this.#abort.signal.aborted) return;
    this.#entries.set(key, entry);
    const waiters = this.#waiters.get(key);
    this.#waiters.delete(key);
    for (const name of waiters ?? []) this.#onSettled(name);
  }
}

function failedState(entry: Extract<Entry, { state: 'failed' }>): KernelState {
  return { state: 'failed', reason: entry.reason, message: entry.message, retrying: true };
}

export function releaseKey(spec: PreflightValidationOCPSpec): string {
  return `${spec.releaseImage}\u0000${spec.useRTKernel === true ? 'rt' : 'std'}`;
}

/** A digest names one release for ever; a tag (or an OCI layout directory) may name another one tomorrow. */
function isPinnedByDigest(releaseImage: string): boolean {
  const parsed = parseImageReference(releaseImage);
  return parsed.ok && referenceDigest(parsed.data) !== undefined;
}

const FALLBACK_REASON = 'ResolutionFailed';
const REASON_PATTERN = new RegExp(ConditionSchema.properties.reason.pattern ?? '^$');
const REASON_MAX_LENGTH = ConditionSchema.properties.reason.maxLength ?? 1024;

/**
 * A condition reason the CRD accepts, made from whatever the error carries: characters outside the pattern are
 * dropped, and it must start with a letter and end with a letter, digit or underscore.
 */
export function conditionReason(candidate: unknown): string {
  if (typeof candidate !== 'string') return FALLBACK_REASON;
  const reason = candidate
    .replace(/[^A-Za-z0-9_,:]/g, '')
    .replace(/^[^A-Za-z]+/, '')
    .slice(0, REASON_MAX_LENGTH)
    .replace(/[,:]+$/, '');
  return REASON_PATTERN.test(reason) ? reason : FALLBACK_REASON;
}

function describeFailure(err: unknown): { reason: string; message: string; retryable: boolean } {
  const candidate = err as { reason?: unknown; retryable?: unknown; message?: unknown } | null;
  const message = typeof candidate?.message === 'string' ? candidate.message : String(err);
  const retryable = typeof candidate?.retryable === 'boolean' ? candidate.retryable : true;
  return { reason: conditionReason(candidate?.reason), message, retryable };
}
