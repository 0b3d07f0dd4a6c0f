import type { InTreeModules } from '../image/kmod/dependencies.ts';
import { KmodError } from '../image/kmod/errors.ts';
import { parseModuleSymvers } from '../image/kmod/module-symvers.ts';
import type { LayerLimits } from '../image/layers/limits.ts';
import { findFiles } from '../image/layers/walk.ts';
import { platformKey } from '../image/platform.ts';
import { parseImageReference, referenceDigest } from '../image/reference.ts';
import {
  ImageError,
  imageErrorAnswer,
  type ImageSource,
  type Platform,
  type PullOptions,
  type RegistryTLS,
  type ResolvedImage,
} from '../image/source.ts';
import type { InTreeModuleSource } from '../image/stage/types.ts';
import { OutcomeCache } from './cache.ts';

/**
 * The target kernel's in-tree modules, from the release's driver-toolkit image: its kernel-devel package ships the
 * kernel build's `Module.symvers`, which names every in-tree module that exports symbols, and only such a module
 * can be named by another module's `depends=`. Read on demand (only when a module image lacks a dependency),
 * streaming the driver-toolkit's layers from the top down until the file is decided, once per driver-toolkit digest
 * and kernel; the release resolution itself never reads it.
 */

/** Where kernel-devel puts a kernel's build files (`/usr/src/kernels/<kernel>/`). */
export function moduleSymversPath(kernel: string): string {
  return `usr/src/kernels/${kernel}/Module.symvers`;
}

export interface InTreeModuleListsDeps {
  /** Where the driver-toolkit is read from: the release's source, mirrors applied. */
  readonly source: ImageSource;
  /** The release's credentials (the cluster pull secret, an auth file); asked at each read. */
  readonly credentials?: () => Promise<unknown>;
  readonly tls?: RegistryTLS;
  readonly layerLimits?: Partial<LayerLimits>;
  /** Lists kept, by driver-toolkit digest and kernel; default 16 (a list is a few thousand names). */
  readonly maxEntries?: number;
}

export interface InTreeModulesRequest {
  /** The driver-toolkit pull spec, as the release names it. */
  readonly driverToolkitImage: string;
  readonly kernel: string;
  readonly platform: Platform;
  readonly signal?: AbortSignal;
}

/** One per process: remembers each driver-toolkit's list, and shares a read in flight. */
export class InTreeModuleLists {
  readonly #deps: InTreeModuleListsDeps;
  readonly #cache: OutcomeCache<InTreeModules>;

  constructor(deps: InTreeModuleListsDeps) {
    this.#deps = deps;
    this.#cache = new OutcomeCache(deps.maxEntries ?? 16);
  }

  /** The Image stage's view of one kernel's list in one driver-toolkit: read when the stage first asks. */
  source(request: InTreeModulesRequest): InTreeModuleSource {
    return {
      description: `driver-toolkit image ${request.driverToolkitImage}`,
      load: () => this.load(request),
    };
  }

  /** Never rejects for registry answers: an unreadable list is `known: false`, `transient` when worth asking again. */
  async load(request: InTreeModulesRequest): Promise<InTreeModules> {
    const reference = request.driverToolkitImage;
    const parsed = parseImageReference(reference);
    if (!parsed.ok) {
      return unknown(
        `driver-toolkit image ${reference} is not a valid reference: ${parsed.error.message}`,
        false,
      );
    }
    const platform = platformKey(request.platform);
    const pinned = referenceDigest(parsed.data);
    const early = pinned === undefined ? undefined : this.#cache.get(key(pinned, platform, request.kernel));
    if (early !== undefined) return early;

    const credentials = await this.#deps.credentials?.();
    const pull: PullOptions = {
      platform: request.platform,
      ...(this.#deps.tls === undefined ? {} : { tls: this.#deps.tls }),
      ...(credentials === undefined ? {} : { credentials }),
      ...(request.signal === undefined ? {} : { signal: request.signal }),
    };
    let dtk: ResolvedImage;
    try {
      dtk = await this.#deps.source.resolve(reference, pull);
    } catch (err) {
      return unreadable(err, reference);
    }
    try {
      return await this.#cache.obtain(key(dtk.indexDigest ?? dtk.digest, platform, request.kernel), () =>
        this.#read(dtk, reference, request.kernel, pull),
      );
    } catch (err) {
      return unreadable(err, reference);
    }
  }

  /** The list, or a definite reason it is unknown (cached like a list); transient registry faults throw. */
  async #read(
    dtk: ResolvedImage,
    reference: string,
    kernel: string,
    pull: PullOptions,
  ): Promise<InTreeModules> {
    const path = moduleSymversPath(kernel);
    // Shared by every check that asks while it runs: one caller's abort must not fail the others.
    const { platform: _platform, signal: _signal, ...blobPull } = pull;
    let files: Map<string, Buffer>;
    try {
      files = await findFiles(this.#deps.source, dtk, [path], {
        ...(this.#deps.layerLimits === undefined ? {} : { limits: this.#deps.layerLimits }),
        pull: blobPull,
      });
    } catch (err) {
      if (err instanceof ImageError && err.definite) return unreadable(err, reference);
      throw err;
    }
    const text = files.get(path);
    if (text === undefined) {
      return unknown(
        `driver-toolkit image ${reference} has no /${path} (kernel-devel for ${kernel}) to list its in-tree modules`,
        false,
      );
    }
    try {
      return { known: true, names: parseModuleSymvers(text.toString('utf8')) };
    } catch (err) {
      if (!(err instanceof KmodError)) throw err;
      return unknown(`/${path} in driver-toolkit image ${reference} is not usable: ${err.message}`, false);
    }
  }
}

function key(digest: string, platform: string, kernel: string): string {
  return `${digest}|${platform}|${kernel}`;
}

function unknown(why: string, transient: boolean): InTreeModules {
  return { known: false, why, transient };
}

function unreadable(err: unknown, reference: string): InTreeModules {
  if (!(err instanceof ImageError)) throw err;
  return unknown(
    `cannot read driver-toolkit image ${reference}: ${imageErrorAnswer(err, reference)}`,
    !err.definite,
  );
}
