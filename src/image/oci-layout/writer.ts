import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync, zstdDecompressSync } from 'node:zlib';

import type { Descriptor, Platform } from '../source.ts';
import { computeDigest, parseDigest } from '../registry/digest.ts';
import { MediaType, REF_NAME_ANNOTATION } from '../registry/media-types.ts';
import type { LayerBlob } from './tar-layer.ts';

/**
 * Writes OCI image layout directories (image-spec image-layout.md): what tests, benchmarks and the demo use to make
 * images, which skopeo can then push to a registry. Manifests are written in Docker or OCI media types, optionally
 * without `mediaType` in the body, as real tools produce them.
 */

export type ManifestFormat = 'oci' | 'docker';

export interface ImageSpec {
  /** Bottom first. The bytes are stored as given (already compressed by the caller). */
  readonly layers: readonly LayerBlob[];
  /** The config blob's JSON; default: a minimal image config for `platform` with the layers' diff_ids. */
  readonly config?: Record<string, unknown>;
  /** Default linux/amd64; recorded in the default config and on the returned descriptor. */
  readonly platform?: Platform;
  /** Default oci. */
  readonly format?: ManifestFormat;
  /** OCI only: leave `mediaType` out of the manifest body (it is optional there; skopeo and umoci omit it). */
  readonly omitMediaType?: boolean;
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface IndexSpec {
  /** Entries, usually descriptors returned by `writeImageManifest` (they carry their platform). */
  readonly manifests: readonly Descriptor[];
  /** oci → OCI index, docker → Docker manifest list. Default oci. */
  readonly format?: ManifestFormat;
  readonly omitMediaType?: boolean;
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface Tagged {
  /** Recorded as `org.opencontainers.image.ref.name` in index.json; an existing entry with that tag is replaced. */
  readonly tag?: string;
}

const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

/** Writes `bytes` as a blob (content-addressed, so writing twice is harmless) and returns its descriptor. */
export async function writeBlob(dir: string, bytes: Uint8Array, mediaType: string): Promise<Descriptor> {
  await ensureLayout(dir);
  const digest = computeDigest(bytes);
  const { hex } = parseDigest(digest, 'blob');
  await writeFile(join(dir, 'blobs', 'sha256', hex), bytes);
  return { mediaType, digest, size: bytes.length };
}

/** Writes an image's layers, config and manifest as blobs without naming it in index.json (for index children). */
export async function writeImageManifest(dir: string, spec: ImageSpec): Promise<Descriptor> {
  const format = spec.format ?? 'oci';
  const platform = spec.platform ?? DEFAULT_PLATFORM;
  const layers: Descriptor[] = [];
  for (const layer of spec.layers) layers.push(await writeBlob(dir, layer.data, layer.mediaType));
  const configJson = spec.config ?? {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant ? { variant: platform.variant } : {}),
    config: {},
    rootfs: { type: 'layers', diff_ids: spec.layers.map(diffIdOf) },
  };
  const config = await writeBlob(
    dir,
    Buffer.from(JSON.stringify(configJson)),
    format === 'docker' ? MediaType.dockerConfig : MediaType.ociConfig,
  );
  const mediaType = format === 'docker' ? MediaType.dockerManifest : MediaType.ociManifest;
  const body = {
    schemaVersion: 2,
    ...(format === 'oci' && spec.omitMediaType ? {} : { mediaType }),
    config,
    layers,
    ...(spec.annotations ? { annotations: spec.annotations } : {}),
  };
  const written = await writeBlob(dir, Buffer.from(JSON.stringify(body)), mediaType);
  return { ...written, platform };
}

/** Writes an image and names it in index.json (by `tag`, or untagged). */
export async function writeImage(dir: string, spec: ImageSpec & Tagged): Promise<Descriptor> {
  const descriptor = await writeImageManifest(dir, spec);
  await addToLayoutIndex(dir, descriptor, spec.tag);
  return descriptor;
}

/** Writes an OCI index or Docker manifest list blob without naming it in index.json. */
export async function writeIndexManifest(dir: string, spec: IndexSpec): Promise<Descriptor> {
  const mediaType = (spec.format ?? 'oci') === 'docker' ? MediaType.dockerManifestList : MediaType.ociIndex;
  const body = {
    schemaVersion: 2,
    ...(spec.format !== 'docker' && spec.omitMediaType ? {} : { mediaType }),
    manifests: spec.manifests,
    ...(spec.annotations ? { annotations: spec.annotations } : {}),
  };
  return writeBlob(dir, Buffer.from(JSON.stringify(body)), mediaType);
}

/** Writes a multi-platform index over already written images and names it in index.json. */
export async function writeIndex(dir: string, spec: IndexSpec & Tagged): Promise<Descriptor> {
  const descriptor = await writeIndexManifest(dir, spec);
  await addToLayoutIndex(dir, descriptor, spec.tag);
  return descriptor;
}

/** Adds `descriptor` to the layout's index.json, replacing an entry with the same tag. */
export async function addToLayoutIndex(dir: string, descriptor: Descriptor, tag?: string): Promise<void> {
  await ensureLayout(dir);
  const indexPath = join(dir, 'index.json');
  const index = JSON.parse(await readFile(indexPath, 'utf8')) as { manifests?: Descriptor[] };
  const others = (index.manifests ?? []).filter(
    (m) => tag === undefined || m.annotations?.[REF_NAME_ANNOTATION] !== tag,
  );
  const entry: Descriptor = {
    mediaType: descriptor.mediaType,
    digest: descriptor.digest,
    size: descriptor.size,
    ...(descriptor.platform ? { platform: descriptor.platform } : {}),
    ...(tag === undefined ? {} : { annotations: { [REF_NAME_ANNOTATION]: tag } }),
  };
  const updated = { ...index, manifests: [...others, entry] };
  // Written whole then renamed, so a reader never sees half an index.json.
  await writeFile(`${indexPath}.tmp`, JSON.stringify(updated));
  await rename(`${indexPath}.tmp`, indexPath);
}

async function ensureLayout(dir: string): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  try {
    await writeFile(
      join(dir, 'index.json'),
      JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] }),
      { flag: 'wx' },
    );
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

/** The digest of a layer's uncompressed tar, which image configs list as rootfs.diff_ids. */
function diffIdOf(layer: LayerBlob): string {
  if (layer.diffId !== undefined) return layer.diffId;
  if (layer.mediaType.endsWith('gzip')) return computeDigest(gunzipSync(layer.data));
  if (layer.mediaType.endsWith('zstd')) return computeDigest(zstdDecompressSync(layer.data));
  return computeDigest(layer.data);
}
