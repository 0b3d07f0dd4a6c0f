import type { Descriptor, ImageManifest, Platform } from '../source.ts';
import { ImageError } from '../source.ts';
import { normalizeArchitecture } from '../platform.ts';
import { parseDigest } from './digest.ts';
import { baseMediaType, IMAGE_MANIFEST_MEDIA_TYPES, INDEX_MEDIA_TYPES, MediaType } from './media-types.ts';

/** What one manifest document turned out to be. */
export type ParsedManifest =
  | { readonly kind: 'index'; readonly mediaType: string; readonly manifests: readonly Descriptor[] }
  | { readonly kind: 'image'; readonly manifest: ImageManifest };

/**
 * Parses manifest bytes. The type comes from the body's `mediaType` when it has one (the bytes are verified, a
 * header is not), else from `contentType` (OCI manifests may omit `mediaType`), else from the shape.
 */
export function parseManifest(
  bytes: Uint8Array,
  contentType: string | undefined,
  what: string,
): ParsedManifest {
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw new ImageError('INVALID_MANIFEST', `${what}: manifest is not JSON (${(err as Error).message})`);
  }
  if (!isObject(body)) throw new ImageError('INVALID_MANIFEST', `${what}: manifest is not a JSON object`);
  if (body['schemaVersion'] === 1) {
    throw new ImageError(
      'UNSUPPORTED_MEDIA_TYPE',
      `${what}: Docker schema 1 manifests are not supported; push the image again with a current tool`,
    );
  }
  const mediaType = declaredMediaType(body, contentType, what);
  if (INDEX_MEDIA_TYPES.includes(mediaType)) {
    const manifests = body['manifests'];
    if (!Array.isArray(manifests))
      throw new ImageError('INVALID_MANIFEST', `${what}: index has no manifests array`);
    return {
      kind: 'index',
      mediaType,
      manifests: manifests.map((entry, i) => parseDescriptor(entry, `${what}: manifests[${i}]`)),
    };
  }
  if (IMAGE_MANIFEST_MEDIA_TYPES.includes(mediaType)) {
    const layers = body['layers'];
    if (!Array.isArray(layers))
      throw new ImageError('INVALID_MANIFEST', `${what}: manifest has no layers array`);
    return {
      kind: 'image',
      manifest: {
        mediaType,
        config: parseDescriptor(body['config'], `${what}: config`),
        layers: layers.map((layer, i) => parseDescriptor(layer, `${what}: layers[${i}]`)),
      },
    };
  }
  throw new ImageError(
    'UNSUPPORTED_MEDIA_TYPE',
    `${what}: media type ${mediaType} is not an image manifest or index (expected one of ${[...INDEX_MEDIA_TYPES, ...IMAGE_MANIFEST_MEDIA_TYPES].join(', ')})`,
  );
}

function declaredMediaType(
  body: Record<string, unknown>,
  contentType: string | undefined,
  what: string,
): string {
  const inBody = body['mediaType'];
  if (inBody !== undefined) {
    if (typeof inBody !== 'string')
      throw new ImageError('INVALID_MANIFEST', `${what}: mediaType is not a string`);
    return inBody;
  }
  const fromHeader = baseMediaType(contentType);
  // Registries that do not know the type answer with a generic one; only a manifest type is evidence.
  if (
    fromHeader !== undefined &&
    [...INDEX_MEDIA_TYPES, ...IMAGE_MANIFEST_MEDIA_TYPES].includes(fromHeader)
  ) {
    return fromHeader;
  }
  if (Array.isArray(body['manifests'])) return MediaType.ociIndex;
  if (Array.isArray(body['layers'])) return MediaType.ociManifest;
  throw new ImageError(
    'INVALID_MANIFEST',
    `${what}: neither mediaType nor Content-Type says what this manifest is`,
  );
}

function parseDescriptor(value: unknown, what: string): Descriptor {
  if (!isObject(value)) throw new ImageError('INVALID_MANIFEST', `${what}: not a descriptor object`);
  const { mediaType, digest, size, urls, platform, annotations } = value;
  if (typeof mediaType !== 'string') throw new ImageError('INVALID_MANIFEST', `${what}.mediaType is missing`);
  if (typeof digest !== 'string') throw new ImageError('INVALID_MANIFEST', `${what}.digest is missing`);
  parseDigest(digest, `${what}.digest`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new ImageError('INVALID_MANIFEST', `${what}.size is not a non-negative integer`);
  }
  return {
    mediaType,
    digest,
    size,
    ...(Array.isArray(urls) ? { urls: urls.filter((u): u is string => typeof u === 'string') } : {}),
    ...(isObject(platform) ? { platform: parsePlatform(platform, `${what}.platform`) } : {}),
    ...(isObject(annotations) ? { annotations: stringRecord(annotations) } : {}),
  };
}

function parsePlatform(value: Record<string, unknown>, what: string): Platform {
  const { os, architecture, variant } = value;
  if (typeof os !== 'string' || typeof architecture !== 'string') {
    throw new ImageError('INVALID_MANIFEST', `${what} needs string os and architecture`);
  }
  return { os, architecture, ...(typeof variant === 'string' ? { variant } : {}) };
}

function stringRecord(value: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(value).filter((e): e is [string, string] => typeof e[1] === 'string'),
  );
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/');
}

/** BuildKit provenance/SBOM entries: `unknown/unknown` platform, annotated as an attestation. */
function isAttestation(descriptor: Descriptor): boolean {
  return (
    descriptor.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' ||
    (descriptor.platform?.os === 'unknown' && descriptor.platform.architecture === 'unknown')
  );
}

/**
 * Picks the entry of an index or manifest list for `wanted` (os defaults to linux). Attestations and entries
 * without a platform are skipped. When several variants match, an exact variant wins, then `v8` for arm64 (what
 * the runtimes assume), then the first. No match is NO_PLATFORM, naming the platforms the index has.
 */
export function selectPlatform(manifests: readonly Descriptor[], wanted: Platform, what: string): Descriptor {
  const os = (wanted.os || 'linux').toLowerCase();
  const architecture = normalizeArchitecture(wanted.architecture);
  const candidates = manifests.filter(
    (m) =>
      m.platform !== undefined &&
      !isAttestation(m) &&
      m.platform.os.toLowerCase() === os &&
      normalizeArchitecture(m.platform.architecture) === architecture,
  );
  const preferredVariant = wanted.variant ?? (architecture === 'arm64' ? 'v8' : undefined);
  const chosen =
    candidates.find((m) => m.platform?.variant === preferredVariant) ??
    (wanted.variant === undefined ? candidates[0] : undefined);
  if (chosen === undefined) {
    const available = manifests
      .filter((m) => m.platform !== undefined && !isAttestation(m))
      .map((m) => formatPlatform(m.platform as Platform));
    throw new ImageError(
      'NO_PLATFORM',
      `${what}: no image for ${formatPlatform({ ...wanted, os, architecture })} (the index has ${
        available.length > 0 ? available.join(', ') : 'no platform entries'
      })`,
    );
  }
  return chosen;
}

/** One manifest document as fetched, with the digest its bytes were verified against. */
export interface FetchedManifest {
  readonly bytes: Uint8Array;
  readonly contentType: string | undefined;
  readonly digest: string;
}

export interface ManifestChainSource {
  /**
   * Fetches a manifest by tag or digest. The implementation hashes the bytes into `digest` and, when asked for a
   * digest, fails with DIGEST_MISMATCH unless they match it.
   */
  fetchManifest(reference: string): Promise<FetchedManifest>;
  /** Fetches a small blob (the image config) in full, verified. */
  fetchSmallBlob(descriptor: Descriptor): Promise<Uint8Array>;
}

export interface ResolvedChain {
  readonly digest: string;
  readonly indexDigest?: string;
  readonly manifest: ImageManifest;
  readonly platform: Platform;
}

/** OCI allows an index to point at another index; more than this is a loop or abuse. */
const MAX_INDEX_DEPTH = 4;

/**
 * Follows a reference through indexes to the manifest for `wanted`, shared by every ImageSource. A manifest that
 * is not in an index says nothing of its platform, so its config is read and a different os/architecture there is
 * NO_PLATFORM too (KMM would only find out when the pod crashes).
 */
export async function resolveManifestChain(
  source: ManifestChainSource,
  reference: string,
  wanted: Platform,
  what: string,
): Promise<ResolvedChain> {
  const wantedPlatform: Platform = { ...wanted, os: wanted.os || 'linux' };
  let fetched = await source.fetchManifest(reference);
  let indexDigest: string | undefined;
  let selected: Descriptor | undefined;
  for (let depth = 0; ; depth++) {
    const parsed = parseManifest(fetched.bytes, fetched.contentType, `${what}@${fetched.digest}`);
    if (parsed.kind === 'image') {
      const platform =
        selected?.platform ?? (await platformFromConfig(source, parsed.manifest, wantedPlatform, what));
      return {
        digest: fetched.digest,
        ...(indexDigest ? { indexDigest } : {}),
        manifest: parsed.manifest,
        platform,
      };
    }
    if (depth >= MAX_INDEX_DEPTH) {
      throw new ImageError('INVALID_MANIFEST', `${what}: indexes nested more than ${MAX_INDEX_DEPTH} deep`);
    }
    indexDigest ??= fetched.digest;
    selected = selectPlatform(parsed.manifests, wantedPlatform, what);
    fetched = await source.fetchManifest(selected.digest);
    if (fetched.digest !== selected.digest) {
      throw new ImageError('DIGEST_MISMATCH', `${what}: asked for ${selected.digest}, got ${fetched.digest}`);
    }
  }
}

async function platformFromConfig(
  source: ManifestChainSource,
  manifest: ImageManifest,
  wanted: Platform,
  what: string,
): Promise<Platform> {
  const bytes = await source.fetchSmallBlob(manifest.config);
  let config: unknown;
  try {
    config = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch {
    // Artifacts and scratch images carry configs that are not image configs; they say nothing of the platform.
    return wanted;
  }
  if (!isObject(config) || typeof config['architecture'] !== 'string' || config['architecture'] === '') {
    return wanted;
  }
  const platform: Platform = {
    os: typeof config['os'] === 'string' && config['os'] !== '' ? config['os'] : wanted.os,
    architecture: config['architecture'],
    ...(typeof config['variant'] === 'string' ? { variant: config['variant'] } : {}),
  };
  if (
    platform.os.toLowerCase() !== wanted.os.toLowerCase() ||
    normalizeArchitecture(platform.architecture) !== normalizeArchitecture(wanted.architecture)
  ) {
    throw new ImageError(
      'NO_PLATFORM',
      `${what}: no image for ${formatPlatform(wanted)} (it is a single-platform image for ${formatPlatform(platform)})`,
    );
  }
  return platform;
}
