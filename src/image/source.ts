import type { Readable } from 'node:stream';
import { CodedError } from '../platform/errors.ts';

/**
 * The contract between whoever reads images (the Image stage, release resolution, the offline check) and where the
 * bytes come from (a registry over HTTP, an OCI layout directory). Everything above this file speaks only these
 * types, so a stage runs the same against a registry, a layout on disk, or a test double.
 */

export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

export interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
  readonly urls?: readonly string[];
  readonly platform?: Platform;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** A single-platform image manifest (Docker schema2 or OCI), after index/list selection. */
export interface ImageManifest {
  readonly mediaType: string;
  readonly config: Descriptor;
  /** Bottom (first) to top (last), as in the manifest. */
  readonly layers: readonly Descriptor[];
}

export interface ResolvedImage {
  /** The reference as the user gave it, normalised (e.g. `docker.io/library/x:latest`, `oci:/dir:tag`). */
  readonly reference: string;
  /** Digest of the platform manifest chosen. */
  readonly digest: string;
  /** Digest of the index or manifest list the reference named, when it named one. */
  readonly indexDigest?: string;
  readonly manifest: ImageManifest;
  readonly platform: Platform;
}

/** KMM's `registryTLS`. */
export interface RegistryTLS {
  readonly insecure?: boolean;
  readonly insecureSkipTLSVerify?: boolean;
}

export interface PullOptions {
  /** Target nodes' platform; os defaults to linux. */
  readonly platform: Platform;
  readonly tls?: RegistryTLS;
  /** Opaque to callers; built from Docker config JSON by the registry package. */
  readonly credentials?: unknown;
  readonly signal?: AbortSignal;
}

export interface ImageSource {
  /** Fetches the manifest (and index, if any) and picks the entry for `options.platform`. */
  resolve(reference: string, options: PullOptions): Promise<ResolvedImage>;
  /**
   * Streams a blob's stored (possibly compressed) bytes. The stream fails with ImageError DIGEST_MISMATCH if the
   * bytes do not hash to `descriptor.digest`; a consumer that stops early simply destroys it.
   */
  openBlob(
    image: ResolvedImage,
    descriptor: Descriptor,
    options?: Omit<PullOptions, 'platform'>,
  ): Promise<Readable>;
}

export type ImageErrorCode =
  | 'INVALID_REFERENCE'
  | 'NOT_FOUND'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'NO_PLATFORM'
  | 'UNREACHABLE'
  | 'INVALID_MANIFEST'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'DIGEST_MISMATCH'
  | 'LIMIT_EXCEEDED'
  | 'TIMEOUT';

/**
 * A failure reading an image. `definite` says whether asking again could change the answer: a 404 or 403 is a
 * definite answer, an unreachable registry is not (the runner retries the latter and reports the former).
 */
export class ImageError extends CodedError<ImageErrorCode> {
  readonly definite: boolean;
  constructor(code: ImageErrorCode, message: string, options?: { definite?: boolean; cause?: unknown }) {
    super(code, message, options);
    this.definite = options?.definite ?? !['UNREACHABLE', 'TIMEOUT'].includes(code);
  }
}

/**
 * The registry's answer in `err` without the image name it starts with (`<registry>/<repo>@<tag>: not found`), for
 * reasons that already name `reference`: the image is said once.
 */
export function imageErrorAnswer(err: ImageError, reference: string): string {
  const separator = err.message.indexOf(': ');
  if (separator < 0) return err.message;
  const head = err.message.slice(0, separator);
  return head === reference || repositoryOf(head) === repositoryOf(reference)
    ? err.message.slice(separator + 2)
    : err.message;
}

/** `host/repo:tag`, `host/repo@sha256:…`, `host/repo@tag` → `host/repo`. */
function repositoryOf(reference: string): string {
  const name = reference.split('@')[0] ?? reference;
  const colon = name.lastIndexOf(':');
  return colon > name.lastIndexOf('/') ? name.slice(0, colon) : name;
}
