import { open, readFile, stat } from 'node:fs/promises';
import { isAbsolute, join, resolve as resolvePath } from 'node:path';
import type { Readable } from 'node:stream';

import type { Descriptor, ImageSource, PullOptions, ResolvedImage } from '../source.ts';
import { ImageError } from '../source.ts';
import { formatReference, parseImageReference } from '../reference.ts';
import { DigestVerifier, isDigest, parseDigest, verifyDigest } from '../registry/digest.ts';
import { resolveManifestChain, type FetchedManifest } from '../registry/manifest.ts';
import { REF_NAME_ANNOTATION } from '../registry/media-types.ts';

export interface LayoutReference {
  /** Absolute path of the layout directory. */
  readonly dir: string;
  readonly tag?: string;
  /** A manifest named by digest (`oci:<dir>@<digest>`, what a mirror rule makes of a digest reference). */
  readonly digest?: string;
}

/**
 * Parses `oci:<dir>[:<tag>]` with the project's reference grammar (skopeo's: the directory ends at the first `:`)
 * and makes the directory absolute against `baseDir`.
 */
export function parseLayoutReference(reference: string, baseDir: string): LayoutReference {
  const parsed = parseImageReference(reference);
  if (!parsed.ok) throw parsed.error;
  if (parsed.data.kind !== 'oci-layout') {
    throw new ImageError(
      'INVALID_REFERENCE',
      `"${reference}" is not an OCI layout reference (oci:<dir>[:<tag>])`,
    );
  }
  const { directory, tag, digest } = parsed.data;
  const dir = isAbsolute(directory) ? directory : resolvePath(baseDir, directory);
  if (digest !== undefined) return { dir, digest };
  return tag === undefined ? { dir } : { dir, tag };
}

function formatLayoutReference(ref: LayoutReference): string {
  return formatReference({
    kind: 'oci-layout',
    directory: ref.dir,
    ...(ref.tag === undefined ? {} : { tag: ref.tag }),
    ...(ref.digest === undefined ? {} : { digest: ref.digest }),
  });
}

export interface OciLayoutSourceOptions {
  /** Where relative layout directories are found; default the process's working directory. */
  readonly baseDir?: string;
  /** Largest manifest or config accepted; default 4 MiB. */
  readonly maxManifestBytes?: number;
}

/** An ImageSource over OCI image layout directories, for offline checks and checks before a push. */
export class OciLayoutSource implements ImageSource {
  readonly #baseDir: string;
  readonly #maxManifestBytes: number;

  constructor(options: OciLayoutSourceOptions = {}) {
    this.#baseDir = options.baseDir ?? process.cwd();
    this.#maxManifestBytes = options.maxManifestBytes ?? 4 << 20;
  }

  async resolve(reference: string, options: PullOptions): Promise<ResolvedImage> {
    const layout = parseLayoutReference(reference, this.#baseDir);
    const normalized = formatLayoutReference(layout);
    const chain = await resolveManifestChain(
      {
        fetchManifest: async (ref) =>
          ref === ROOT
            ? this.#fetchRoot(layout, normalized)
            : this.#fetchByDigest(layout.dir, ref, normalized),
        fetchSmallBlob: async (descriptor) =>
          this.#readSmallBlob(layout.dir, descriptor.digest, descriptor.size, normalized),
      },
      ROOT,
      options.platform,
      normalized,
    );
    return { reference: normalized, ...chain };
  }

  async openBlob(image: ResolvedImage, descriptor: Descriptor): Promise<Readable> {
    const { dir } = parseLayoutReference(image.reference, this.#baseDir);
    const what = `${image.reference} blob ${descriptor.digest}`;
    const handle = await openBlobFile(dir, descriptor.digest, what);
    return handle.createReadStream().pipe(new DigestVerifier(descriptor.digest, descriptor.size, what));
  }

  async #fetchRoot(layout: LayoutReference, what: string): Promise<FetchedManifest> {
    // Blobs are content-addressed: a manifest named by digest needs no index.json entry.
    if (layout.digest !== undefined) return this.#fetchByDigest(layout.dir, layout.digest, what);
    const entry = await findIndexEntry(layout, this.#maxManifestBytes, what);
    return this.#fetchByDigest(layout.dir, entry.digest, what, entry.mediaType);
  }

  async #fetchByDigest(
    dir: string,
    digest: string,
    what: string,
    mediaType?: string,
  ): Promise<FetchedManifest> {
    if (!isDigest(digest)) throw new ImageError('INVALID_MANIFEST', `${what}: "${digest}" is not a digest`);
    const bytes = await this.#readSmallBlob(dir, digest, undefined, what);
    return { bytes, contentType: mediaType, digest };
  }

  /** Reads a whole manifest or config blob, bounded, and verifies it against its digest. */
  async #readSmallBlob(
    dir: string,
    digest: string,
    declaredSize: number | undefined,
    what: string,
  ): Promise<Buffer> {
    const blobWhat = `${what} blob ${digest}`;
    if (declaredSize !== undefined && declaredSize > this.#maxManifestBytes) {
      throw new ImageError(
        'LIMIT_EXCEEDED',
        `${blobWhat}: ${declaredSize} bytes, the limit is ${this.#maxManifestBytes}`,
      );
    }
    const handle = await openBlobFile(dir, digest, blobWhat);
    try {
      const { size } = await handle.stat();
      if (size > this.#maxManifestBytes) {
        throw new ImageError(
          'LIMIT_EXCEEDED',
          `${blobWhat}: ${size} bytes, the limit is ${this.#maxManifestBytes}`,
        );
      }
      const bytes = await handle.readFile();
      verifyDigest(bytes, digest, blobWhat);
      return bytes;
    } finally {
      await handle.close();
    }
  }
}

/** Marks "the manifest index.json names", which is not a digest or a tag of the registry kind. */
const ROOT = '<index.json>';

async function findIndexEntry(layout: LayoutReference, maxBytes: number, what: string): Promise<Descriptor> {
  const path = join(layout.dir, 'index.json');
  let text: string;
  try {
    const { size } = await stat(path);
    if (size > maxBytes) {
      throw new ImageError('LIMIT_EXCEEDED', `${what}: ${path} has ${size} bytes, the limit is ${maxBytes}`);
    }
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (err instanceof ImageError) throw err;
    throw new ImageError(
      'NOT_FOUND',
      `${what}: ${layout.dir} is not an OCI image layout (no readable index.json: ${(err as NodeJS.ErrnoException).code ?? String(err)})`,
    );
  }
  let manifests: Descriptor[];
  try {
    const index = JSON.parse(text) as { manifests?: unknown };
    if (!Array.isArray(index.manifests)) throw new Error('it has no manifests array');
    manifests = index.manifests as Descriptor[];
  } catch (err) {
    throw new ImageError(
      'INVALID_MANIFEST',
      `${what}: ${layout.dir}/index.json is invalid (${(err as Error).message})`,
    );
  }
  const tags = manifests.map((m) => m.annotations?.[REF_NAME_ANNOTATION]).filter((t) => t !== undefined);
  if (layout.tag === undefined) {
    if (manifests.length === 1 && manifests[0] !== undefined) return manifests[0];
    throw new ImageError(
      manifests.length === 0 ? 'NOT_FOUND' : 'INVALID_REFERENCE',
      manifests.length === 0
        ? `${what}: the layout holds no images`
        : `${what}: the layout holds ${manifests.length} images; name one with oci:<dir>:<tag> (tags: ${tags.join(', ') || 'none'})`,
    );
  }
  const entry = manifests.find((m) => m.annotations?.[REF_NAME_ANNOTATION] === layout.tag);
  if (entry === undefined) {
    throw new ImageError(
      'NOT_FOUND',
      `${what}: no tag "${layout.tag}" in the layout (tags: ${tags.join(', ') || 'none'})`,
    );
  }
  if (typeof entry.digest !== 'string') {
    throw new ImageError('INVALID_MANIFEST', `${what}: index.json entry for "${layout.tag}" has no digest`);
  }
  return entry;
}

async function openBlobFile(dir: string, digest: string, what: string) {
  const { algorithm, hex } = parseDigest(digest, what);
  try {
    return await open(join(dir, 'blobs', algorithm, hex), 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ImageError(
      code === 'ENOENT' ? 'NOT_FOUND' : 'UNREACHABLE',
      `${what}: ${code === 'ENOENT' ? 'blob missing from the layout' : `cannot read the blob (${code ?? String(err)})`}`,
      code === 'ENOENT' ? { definite: true } : { cause: err },
    );
  }
}
