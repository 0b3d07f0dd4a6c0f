import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';

import type { LayerBlob } from '../../../src/image/oci-layout/tar-layer.ts';
import {
  ImageError,
  type ImageSource,
  type PullOptions,
  type ResolvedImage,
} from '../../../src/image/source.ts';

/**
 * An ImageSource over images held in memory, for unit tests of everything above the source contract. It serves
 * blobs in small chunks (so streaming code meets chunk boundaries) and counts what was opened and read.
 */
export class MemoryImageSource implements ImageSource {
  readonly #images = new Map<string, ResolvedImage>();
  readonly #blobs = new Map<string, Buffer>();
  readonly opened: string[] = [];
  resolves = 0;
  bytesServed = 0;

  /** Registers an image under `reference`; layers bottom first. */
  add(reference: string, layers: readonly LayerBlob[]): ResolvedImage {
    const descriptors = layers.map((layer) => {
      const digest = `sha256:${createHash('sha256').update(layer.data).digest('hex')}`;
      this.#blobs.set(digest, layer.data);
      return { mediaType: layer.mediaType, digest, size: layer.data.length };
    });
    const manifest = {
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {
        mediaType: 'application/vnd.oci.image.config.v1+json',
        digest: `sha256:${'0'.repeat(64)}`,
        size: 2,
      },
      layers: descriptors,
    };
    const digest = `sha256:${createHash('sha256').update(JSON.stringify(manifest)).digest('hex')}`;
    const image: ResolvedImage = {
      reference,
      digest,
      manifest,
      platform: { os: 'linux', architecture: 'amd64' },
    };
    this.#images.set(reference, image);
    return image;
  }

  resolve(reference: string, _options?: PullOptions): Promise<ResolvedImage> {
    this.resolves++;
    const image = this.#images.get(reference);
    return image
      ? Promise.resolve(image)
      : Promise.reject(new ImageError('NOT_FOUND', `manifest unknown: ${reference}`));
  }

  openBlob(_image: ResolvedImage, descriptor: { digest: string }, _options?: unknown): Promise<Readable> {
    const data = this.#blobs.get(descriptor.digest);
    if (!data) return Promise.reject(new ImageError('NOT_FOUND', `blob unknown: ${descriptor.digest}`));
    this.opened.push(descriptor.digest);
    return Promise.resolve(Readable.from(this.#chunks(data), { objectMode: false }));
  }

  *#chunks(data: Buffer): Generator<Buffer> {
    const chunkSize = 1000;
    for (let at = 0; at < data.length; at += chunkSize) {
      const chunk = data.subarray(at, at + chunkSize);
      this.bytesServed += chunk.length;
      yield chunk;
    }
  }
}
