import { LruCache } from '../image/registry/lru.ts';
import type { ReleaseError } from './errors.ts';
import type { DriverToolkitRelease } from './driver-toolkit.ts';

/** What a release digest teaches us for one architecture; it never changes, since the digest pins the content. */
export interface ReleaseFacts {
  /** The digest the release reference names: the index digest of a `-multi` release, else the manifest digest. */
  readonly digest: string;
  readonly version: string | null;
  /** The driver-toolkit pull spec from image-references. */
  readonly dtkImage: string;
  /** The architecture the driver-toolkit image was resolved for. */
  readonly architecture: string;
  readonly driverToolkit: DriverToolkitRelease;
}

/** A cached outcome: the facts, or a failure that the content itself causes (so asking again cannot change it). */
export type CachedOutcome = { readonly facts: ReleaseFacts } | { readonly error: ReleaseError };

/**
 * Outcomes keyed by what pins their content (a digest), bounded (least recently used goes first), with computations
 * in flight shared so concurrent requests for one key compute it once.
 */
export class OutcomeCache<T> {
  readonly #entries: LruCache<string, T>;
  readonly #inFlight = new Map<string, Promise<T>>();

  constructor(maxEntries = 64) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError(`${new.target.name} maxEntries must be a positive integer, not ${maxEntries}`);
    }
    this.#entries = new LruCache(maxEntries);
  }

  get size(): number {
    return this.#entries.size;
  }

  get(key: string): T | undefined {
    return this.#entries.get(key);
  }

  /**
   * The outcome for `key`: cached, joined from a computation in flight, or computed by `compute`. Only outcomes
   * that `compute` returns are kept; a thrown error (transient, or about where the image lives) is not.
   */
  async obtain(key: string, compute: () => Promise<T>): Promise<T> {
    const cached = this.get(key);
    if (cached !== undefined) return cached;
    const pending = this.#inFlight.get(key);
    if (pending !== undefined) return pending;
    const running = compute().then((outcome) => {
      this.#entries.set(key, outcome);
      return outcome;
    });
    this.#inFlight.set(key, running);
    try {
      return await running;
    } finally {
      this.#inFlight.delete(key);
    }
  }
}

/**
 * Release resolutions by release digest and architecture. Pass one instance to every resolveRelease call that should
 * share it.
 */
export class ReleaseCache extends OutcomeCache<CachedOutcome> {
  static key(digest: string, architecture: string): string {
    return `${digest}|${architecture}`;
  }
}
