import type { Descriptor, ImageSource, PullOptions, ResolvedImage } from '../source.ts';
import { ImageView, type FileRef } from './image-view.ts';
import type { LayerCache } from './layer-cache.ts';
import { readLayer, type LayerEntry, type LayerRecord } from './layer-reader.ts';
import { DEFAULT_LAYER_LIMITS, type LayerLimits } from './limits.ts';
import { isAtOrUnder, joinPath, normalizeImagePath, symlinkTarget } from './paths.ts';

export interface WalkOptions {
  /** Files whose content to keep, by the path a process in the container would open, in the layer being read. */
  readonly want: (path: string, layer: Descriptor) => boolean;
  /**
   * Files handed to `take` as they stream by, instead of being kept: the caller keeps what it learns from them
   * (a module's facts), so a cached layer holds no bytes for them. Asked before `want`.
   */
  readonly peek?: LayerPeek;
  /** Asked after each layer is merged; true ends the walk there (the answer is known, lower layers are not read). */
  readonly satisfied?: (view: ImageView) => boolean | Promise<boolean>;
  /** Read only the top (last) layer, e.g. `release-manifests/` of a release payload. */
  readonly lastLayerOnly?: boolean;
  readonly limits?: Partial<LayerLimits>;
  /** Shared between walks so layers are read once; none = every walk reads what it needs. */
  readonly cache?: LayerCache;
  /** TLS, credentials and abort signal for reading blobs: the same as the image was resolved with. */
  readonly pull?: Omit<PullOptions, 'platform'>;
  /** Aborts the walk (also taken from `pull.signal`). */
  readonly signal?: AbortSignal;
}

export interface LayerPeek {
  wants(path: string, entry: LayerEntry, layer: Descriptor): boolean;
  take(path: string, bytes: Buffer, layer: Descriptor): Promise<void>;
}

/** What a walk cost: layers streamed from the source versus answered from the cache, and bytes read. */
export interface WalkStats {
  layersRead: number;
  layersFromCache: number;
  /** Bytes of the blobs as stored (compressed). */
  storedBytes: number;
  /** Bytes of tar after decompression. */
  tarBytes: number;
}

/** One top-down walk over an image's layers, and the means to fetch file contents the walk did not keep. */
export class LayerWalk {
  readonly view: ImageView;
  readonly stats: WalkStats = { layersRead: 0, layersFromCache: 0, storedBytes: 0, tarBytes: 0 };
  readonly #source: ImageSource;
  readonly #image: ResolvedImage;
  readonly #options: WalkOptions;
  readonly #limits: LayerLimits;
  /** Symlinks seen so far, so files stored under a link's target are kept under the name the link gives them. */
  readonly #aliases: { stored: string; visible: string }[] = [];

  constructor(source: ImageSource, image: ResolvedImage, options: WalkOptions) {
    this.#source = source;
    this.#image = image;
    this.#options = options;
    this.#limits = { ...DEFAULT_LAYER_LIMITS, ...options.limits };
    this.view = new ImageView(this.#limits.maxLinkDepth);
  }

  /** Merges layers from the top down until `satisfied` says stop or the bottom is reached. */
  async run(): Promise<this> {
    const layers = this.#image.manifest.layers;
    const bottom = this.#options.lastLayerOnly ? Math.max(layers.length - 1, 0) : 0;
    for (let index = layers.length - 1; index >= bottom; index--) {
      const layer = layers[index];
      if (!layer) continue;
      const capture = (path: string): boolean => !this.view.isShadowed(path) && this.#wanted(path, layer);
      const record = await this.#obtain(layer, capture);
      this.view.merge(record, index);
      for (const entry of record.entries.values()) {
        if (entry.kind === 'symlink' && this.view.entryAt(entry.path)?.layerIndex === index) {
          this.#aliases.push({
            stored: symlinkTarget(entry.path, entry.linkTarget ?? ''),
            visible: entry.path,
          });
        }
      }
      if (index > bottom && (await this.#options.satisfied?.(this.view))) return this;
    }
    this.view.markComplete();
    return this;
  }

  /**
   * Content of files found by the walk. A file the walk did not keep (a link resolved only after its target's
   * layer had passed) costs a second read of just the layers holding such files.
   */
  async contents(files: readonly FileRef[]): Promise<Map<string, Buffer>> {
    const out = new Map<string, Buffer>();
    const byLayer = new Map<number, Set<string>>();
    for (const file of files) {
      const content = this.view.contentOf(file);
      if (content) out.set(file.path, content);
      else byLayer.set(file.layerIndex, (byLayer.get(file.layerIndex) ?? new Set()).add(file.storedPath));
    }
    for (const [index, storedPaths] of byLayer) {
      const layer = this.#image.manifest.layers[index];
      if (!layer) continue;
      const record = await this.#obtain(layer, (path) => storedPaths.has(path));
      for (const storedPath of storedPaths) {
        const content = record.contents.get(storedPath);
        if (content) this.view.addContent(storedPath, content);
      }
    }
    for (const file of files) {
      const content = this.view.contentOf(file);
      if (content) out.set(file.path, content);
    }
    return out;
  }

  #wanted(storedPath: string, layer: Descriptor): boolean {
    if (this.#options.want(storedPath, layer)) return true;
    for (const { stored, visible } of this.#aliases) {
      if (
        isAtOrUnder(storedPath, stored) &&
        this.#options.want(joinPath(visible, storedPath.slice(stored.length + 1)), layer)
      ) {
        return true;
      }
    }
    return false;
  }

  async #obtain(
    layer: Descriptor,
    capture: (path: string, entry: LayerEntry) => boolean,
  ): Promise<LayerRecord> {
    const cache = this.#options.cache;
    const covers = (record: LayerRecord): boolean => {
      for (const entry of record.entries.values()) {
        if (entry.kind === 'file' && !record.contents.has(entry.path) && capture(entry.path, entry))
          return false;
      }
      return true;
    };
    let cached = cache?.get(layer.digest);
    // Another walk's read of this layer may keep other files than ours: wait for it, then look again.
    for (let pending = cache?.pending(layer.digest); pending; pending = cache?.pending(layer.digest)) {
      cached = (await pending.catch(() => undefined)) ?? cache?.get(layer.digest);
      if (cached && covers(cached)) break;
    }
    if (cached && covers(cached)) {
      this.stats.layersFromCache++;
      return cached;
    }
    const peek = this.#options.peek;
    const read = async (): Promise<LayerRecord> => {
      const record = await readLayer({
        source: this.#source,
        image: this.#image,
        layer,
        // Keep what an earlier read kept too, so the cached record only grows.
        capture: (path, entry) => capture(path, entry) || (cached?.contents.has(path) ?? false),
        ...(peek
          ? {
              peek: (path: string, entry: LayerEntry) =>
                !this.view.isShadowed(path) && peek.wants(path, entry, layer),
              onPeek: (path: string, bytes: Buffer) => peek.take(path, bytes, layer),
            }
          : {}),
        limits: this.#limits,
        pull: { ...this.#options.pull, ...(this.#options.signal ? { signal: this.#options.signal } : {}) },
      });
      this.stats.layersRead++;
      this.stats.storedBytes += record.storedBytes;
      this.stats.tarBytes += record.tarBytes;
      return record;
    };
    // Nothing is in flight now (checked synchronously above), so this read is ours and keeps what we want.
    return cache ? cache.read(layer.digest, read) : read();
  }
}

export type FindFilesOptions = Omit<WalkOptions, 'want' | 'satisfied' | 'peek'>;

/**
 * Reads files from an image the way a container would see them, scanning layers top-down and stopping once every
 * wanted path is decided. `wanted` is a list of paths (leading `/` or `./` optional), or a predicate over paths, in
 * which case all layers in range are read. The result maps each found path (normalised, no leading `/`) to its
 * content; paths that are absent, deleted by a whiteout, directories or dangling links are not in it.
 */
export async function findFiles(
  source: ImageSource,
  image: ResolvedImage,
  wanted: readonly string[] | ((path: string) => boolean),
  options: FindFilesOptions = {},
): Promise<Map<string, Buffer>> {
  if (typeof wanted === 'function') {
    const walk = await new LayerWalk(source, image, { ...options, want: (path) => wanted(path) }).run();
    return walk.contents(walk.view.filesUnder('').filter((file) => wanted(file.path)));
  }
  const paths = [...new Set(wanted.map(normalizeImagePath))];
  const set = new Set(paths);
  const walk = await new LayerWalk(source, image, {
    ...options,
    want: (path) => set.has(path),
    satisfied: (view) => paths.every((path) => view.lookupFile(path).state !== 'unknown'),
  }).run();
  const files: FileRef[] = [];
  for (const path of paths) {
    const found = walk.view.lookupFile(path);
    if (found.state === 'present') files.push(found.file);
  }
  return walk.contents(files);
}
