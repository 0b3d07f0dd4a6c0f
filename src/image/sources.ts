import type { Readable } from 'node:stream';

import type { Descriptor, ImageSource, PullOptions, ResolvedImage } from './source.ts';
import { parseImageReference } from './reference.ts';
import { OciLayoutSource, type OciLayoutSourceOptions } from './oci-layout/source.ts';
import { RegistryClient, type HostStats, type RegistryClientOptions } from './registry/client.ts';

export interface ImageSourceOptions extends RegistryClientOptions {
  /** Where relative `oci:` directories are found; default the working directory. */
  readonly layoutBaseDir?: OciLayoutSourceOptions['baseDir'];
}

/** One ImageSource for every reference kind, with the registry client's counters and a way to close it. */
export interface RoutingImageSource extends ImageSource {
  readonly registry: RegistryClient;
  readonly layout: OciLayoutSource;
  stats(): Record<string, HostStats>;
  close(): Promise<void>;
}

/**
 * Routes `oci:<dir>[:<tag>]` to the OCI layout reader and every other reference to the registry client. A
 * reference that does not parse is INVALID_REFERENCE before anything is contacted.
 */
export function createImageSource(options: ImageSourceOptions = {}): RoutingImageSource {
  const registry = new RegistryClient(options);
  const layout = new OciLayoutSource({
    ...(options.layoutBaseDir === undefined ? {} : { baseDir: options.layoutBaseDir }),
    ...(options.maxManifestBytes === undefined ? {} : { maxManifestBytes: options.maxManifestBytes }),
  });
  const route = (reference: string): ImageSource => {
    const parsed = parseImageReference(reference);
    if (!parsed.ok) throw parsed.error;
    return parsed.data.kind === 'oci-layout' ? layout : registry;
  };
  return {
    registry,
    layout,
    resolve: async (reference: string, pull: PullOptions): Promise<ResolvedImage> =>
      route(reference).resolve(reference, pull),
    openBlob: async (
      image: ResolvedImage,
      descriptor: Descriptor,
      pull?: Omit<PullOptions, 'platform'>,
    ): Promise<Readable> => route(image.reference).openBlob(image, descriptor, pull),
    stats: () => registry.stats(),
    close: () => registry.close(),
  };
}
