import { LruCache } from '../registry/lru.ts';
import type { LayerRecord } from './layer-reader.ts';

/**
 * What each layer digest taught us, kept in least-recently-used order within a byte budget, so images that share
 * layers (or one image checked by many Modules) cost one download. Concurrent reads of one layer share one read.
 * A layer is content-addressed, so a record never goes stale.
 */
export class LayerCache {
  readonly #records: LruCache<string, LayerRecord>;
  readonly #inFlight = new Map<string, Promise<LayerRecord>>();

  constructor(maxBytes: number) {
    this.#records = new LruCache(Number.MAX_SAFE_INTEGER, maxBytes);
  }

  get(digest: string): LayerRecord | undefined {
    return this.#records.get(digest);
  }

  /** The read of `digest` in progress, if any. */
  pending(digest: string): Promise<LayerRecord> | undefined {
    return this.#inFlight.get(digest);
  }

  /** Runs `read` unless one for the same digest is running; caches what it returns. */
  async read(digest: string, read: () => Promise<LayerRecord>): Promise<LayerRecord> {
    const running = this.#inFlight.get(digest);
    if (running) return running;
    const promise = read().then((record) => {
      // Two reads of one layer list the same entries; keep the files either kept, so the record only grows.
      const previous = this.#records.get(digest);
      const merged = previous
        ? { ...record, contents: new Map([...previous.contents, ...record.contents]) }
        : record;
      this.#records.set(digest, merged, recordSize(merged));
      return merged;
    });
    this.#inFlight.set(digest, promise);
    try {
      return await promise;
    } finally {
      this.#inFlight.delete(digest);
    }
  }
}

/** Rough memory held by a record: captured bytes plus a per-entry allowance for paths and objects. */
function recordSize(record: LayerRecord): number {
  let bytes = 0;
  for (const content of record.contents.values()) bytes += content.length;
  for (const path of record.entries.keys()) bytes += 96 + path.length * 2;
  return bytes + (record.whiteouts.size + record.opaqueDirs.size) * 96;
}
