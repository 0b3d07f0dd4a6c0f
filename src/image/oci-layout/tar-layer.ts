import { createHash } from 'node:crypto';
import { constants as zlibConstants, gzipSync, zstdCompressSync } from 'node:zlib';
import { pack as createPack } from 'tar-stream';

import { MediaType } from '../registry/media-types.ts';

/**
 * One tar member of a generated layer. Names are written exactly as given, so tests can produce `./x`, `/x`,
 * whiteouts (`dir/.wh.name`) and opaque markers (`dir/.wh..wh..opq`) as real images carry them.
 */
export type TarEntrySpec =
  | {
      readonly type: 'file';
      readonly name: string;
      readonly content?: Uint8Array | string;
      readonly mode?: number;
    }
  | { readonly type: 'directory'; readonly name: string; readonly mode?: number }
  | { readonly type: 'symlink'; readonly name: string; readonly target: string }
  | { readonly type: 'link'; readonly name: string; readonly target: string };

export type LayerCompression = 'gzip' | 'zstd' | 'none';

export interface LayerBuildOptions {
  /** Default gzip. */
  readonly compression?: LayerCompression;
  /** Media type family; Docker has no zstd layer type. Default oci. */
  readonly format?: 'oci' | 'docker';
}

/** A layer blob ready for `writeImage`: stored bytes, their media type, and the digest of the uncompressed tar. */
export interface LayerBlob {
  readonly mediaType: string;
  readonly data: Buffer;
  readonly diffId?: string;
}

/** The whiteout entry that deletes `path` from lower layers. */
export function whiteout(path: string): TarEntrySpec {
  const slash = path.replace(/\/+$/, '').lastIndexOf('/');
  const dir = slash < 0 ? '' : path.slice(0, slash + 1);
  return { type: 'file', name: `${dir}.wh.${path.slice(slash + 1).replace(/\/+$/, '')}` };
}

/** The opaque marker that hides everything lower layers put in `dir`. */
export function opaqueWhiteout(dir: string): TarEntrySpec {
  return { type: 'file', name: `${dir.replace(/\/+$/, '')}/.wh..wh..opq` };
}

/** Builds an uncompressed tar from `entries` with tar-stream (mtime 0, so output is reproducible). */
export async function buildTar(entries: readonly TarEntrySpec[]): Promise<Buffer> {
  const pack = createPack();
  const chunks: Buffer[] = [];
  const collected = new Promise<Buffer>((resolve, reject) => {
    pack.on('data', (chunk: unknown) => chunks.push(chunk as Buffer));
    pack.on('end', () => resolve(Buffer.concat(chunks)));
    pack.on('error', reject);
  });
  const mtime = new Date(0);
  for (const entry of entries) {
    await new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null): void => (err ? reject(err) : resolve());
      switch (entry.type) {
        case 'file': {
          const content =
            typeof entry.content === 'string'
              ? Buffer.from(entry.content)
              : (entry.content ?? Buffer.alloc(0));
          pack.entry(
            { name: entry.name, type: 'file', mode: entry.mode ?? 0o644, mtime },
            Buffer.from(content),
            done,
          );
          break;
        }
        case 'directory':
          pack.entry({ name: entry.name, type: 'directory', mode: entry.mode ?? 0o755, mtime }, done);
          break;
        case 'symlink':
          pack.entry({ name: entry.name, type: 'symlink', linkname: entry.target, mode: 0o777, mtime }, done);
          break;
        case 'link':
          pack.entry({ name: entry.name, type: 'link', linkname: entry.target, mode: 0o644, mtime }, done);
          break;
      }
    });
  }
  pack.finalize();
  return collected;
}

/** Builds a layer blob from `entries`: a tar, compressed as asked, with the matching media type. */
export async function buildLayer(
  entries: readonly TarEntrySpec[],
  options: LayerBuildOptions = {},
): Promise<LayerBlob> {
  const tar = await buildTar(entries);
  return compressLayer(tar, options);
}

/** Compresses an existing tar into a layer blob (for tests that hand-craft tar bytes). */
export function compressLayer(tar: Buffer, options: LayerBuildOptions = {}): LayerBlob {
  const compression = options.compression ?? 'gzip';
  const format = options.format ?? 'oci';
  const diffId = `sha256:${createHash('sha256').update(tar).digest('hex')}`;
  if (format === 'docker') {
    if (compression === 'zstd')
      throw new Error('Docker image layers have no zstd media type; use format "oci"');
    return compression === 'gzip'
      ? { mediaType: MediaType.dockerLayerGzip, data: gzipSync(tar), diffId }
      : { mediaType: MediaType.dockerLayer, data: tar, diffId };
  }
  switch (compression) {
    case 'gzip':
      return { mediaType: MediaType.ociLayerGzip, data: gzipSync(tar), diffId };
    case 'zstd':
      return {
        mediaType: MediaType.ociLayerZstd,
        data: zstdCompressSync(tar, { params: { [zlibConstants.ZSTD_c_compressionLevel]: 3 } }),
        diffId,
      };
    case 'none':
      return { mediaType: MediaType.ociLayer, data: tar, diffId };
  }
}
