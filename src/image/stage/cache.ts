import { LayerCache } from '../layers/layer-cache.ts';
import { LruCache } from '../registry/lru.ts';
import type { KmodError } from '../kmod/errors.ts';
import type { ModuleInspection } from '../kmod/inspect.ts';
import type { ImageError, ResolvedImage } from '../source.ts';
import type { ImageVerdict } from './types.ts';

/** What inspecting one module file taught us: its facts, or why it is not a module the kernel would load. */
export type ModuleFacts =
  | { readonly ok: true; readonly inspection: ModuleInspection }
  | { readonly ok: false; readonly error: KmodError | ImageError };

export interface ImageStageCacheOptions {
  /** Budget for what layers taught us (entries and kept files); default 128 MiB. */
  readonly layerBytes?: number;
  /** Module facts kept per (layer digest, path); default 20000 (a few hundred bytes each). */
  readonly moduleFacts?: number;
  /** Verdicts kept per (manifest digest, request); default 2000. */
  readonly verdicts?: number;
  /**
   * How long a tag's resolution is reused; default 10 s: long enough that the checks of one validation pass share
   * one manifest request, short enough that the next pass sees a tag that moved.
   */
  readonly resolveTtlMs?: number;
  readonly now?: () => number;
}

/**
 * What the Image stage remembers between checks, owned by the caller (one per runner process, one per CLI run):
 * resolutions of references (short-lived), verdicts per manifest digest and request (a digest never changes), per
 * layer digest what reading it taught us (its entries, and the facts of the modules in it, without their bytes).
 * Concurrent identical work shares one promise.
 */
export class ImageStageCache {
  readonly layers: LayerCache;
  /** Keyed by `moduleFactsKey(layer digest, path)`. */
  readonly moduleFacts: LruCache<string, ModuleFacts>;
  readonly #verdicts: LruCache<string, ImageVerdict>;
  readonly #verdictsInFlight = new Map<string, Promise<ImageVerdict>>();
  readonly #resolutions = new Map<string, { image: Promise<ResolvedImage>; at: number }>();
  readonly #resolveTtlMs: number;
  readonly #now: () => number;
  readonly #credentialIds = new WeakMap<object, number>();
  readonly #primitiveCredentialIds = new Map<unknown, number>();
  #nextCredentialId = 1;

  constructor(options: ImageStageCacheOptions = {}) {
    this.layers = new LayerCache(options.layerBytes ?? 128 * 1024 * 1024);
    this.#verdicts = new LruCache(options.verdicts ?? 2000);
    this.moduleFacts = new LruCache(options.moduleFacts ?? 20_000);
    this.#resolveTtlMs = options.resolveTtlMs ?? 10_000;
    this.#now = options.now ?? Date.now;
  }

  /** Shares one resolution of a reference between checks within the TTL; failures are never reused. */
  resolve(key: string, resolve: () => Promise<ResolvedImage>): Promise<ResolvedImage> {
    const now = this.#now();
    const hit = this.#resolutions.get(key);
    if (hit && now - hit.at < this.#resolveTtlMs) return hit.image;
    for (const [k, v] of this.#resolutions) if (now - v.at >= this.#resolveTtlMs) this.#resolutions.delete(k);
    const image = resolve();
    const entry = { image, at: now };
    this.#resolutions.set(key, entry);
    image.catch(() => {
      if (this.#resolutions.get(key) === entry) this.#resolutions.delete(key);
    });
    return image;
  }

  /** The cached verdict for `key`, or the one being computed, or computes it; only definite verdicts are kept. */
  async verdict(key: string, compute: () => Promise<ImageVerdict>): Promise<ImageVerdict> {
    const cached = this.#verdicts.get(key);
    if (cached) return cached;
    const running = this.#verdictsInFlight.get(key);
    if (running) return running;
    const promise = compute();
    this.#verdictsInFlight.set(key, promise);
    try {
      const verdict = await promise;
      if (verdict.definite) this.#verdicts.set(key, verdict);
      return verdict;
    } finally {
      this.#verdictsInFlight.delete(key);
    }
  }

  /** A stable key part for opaque credentials: the same object gets the same id, without looking inside it. */
  credentialKey(credentials: unknown): string {
    if (credentials === undefined || credentials === null) return 'anonymous';
    const isObject = typeof credentials === 'object' || typeof credentials === 'function';
    let id = isObject ? this.#credentialIds.get(credentials) : this.#primitiveCredentialIds.get(credentials);
    if (id === undefined) {
      id = this.#nextCredentialId++;
      if (isObject) this.#credentialIds.set(credentials, id);
      else this.#primitiveCredentialIds.set(credentials, id);
    }
    return `credentials#${id}`;
  }
}

export function moduleFactsKey(layerDigest: string, path: string): string {
  return `${layerDigest}\n${path}`;
}
