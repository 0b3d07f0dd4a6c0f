import { findFiles } from '../image/layers/walk.ts';
import type { LayerLimits } from '../image/layers/limits.ts';
import { withMirrors, type MirrorRule } from '../image/mirrors.ts';
import { platformKey } from '../image/platform.ts';
import { parseImageReference, referenceDigest } from '../image/reference.ts';
import {
  ImageError,
  type ImageSource,
  type Platform,
  type PullOptions,
  type RegistryTLS,
  type ResolvedImage,
} from '../image/source.ts';
import { ReleaseCache, type CachedOutcome, type ReleaseFacts } from './cache.ts';
import { DRIVER_TOOLKIT_RELEASE_PATH, parseDriverToolkitRelease, targetKernel } from './driver-toolkit.ts';
import { ReleaseError, releaseErrorFromImageError } from './errors.ts';
import {
  IMAGE_REFERENCES_PATH,
  RELEASE_METADATA_PATH,
  driverToolkitImage,
  parseImageReferences,
  parseReleaseMetadata,
} from './payload.ts';

export interface ReleaseResolverDeps {
  /** Where images come from (a registry client, an OCI layout source, or both behind one source). */
  readonly source: ImageSource;
  /** Share one across calls so a release digest is resolved once; none = nothing is remembered. */
  readonly cache?: ReleaseCache;
  readonly layerLimits?: Partial<LayerLimits>;
}

export interface ReleaseRequest {
  readonly releaseImage: string;
  /** Validate against the real-time kernel (PreflightValidationOCP `spec.useRTKernel`). */
  readonly useRTKernel?: boolean;
  /** The target nodes' platform; default linux/amd64. Chosen at the release and the driver-toolkit level. */
  readonly platform?: Platform;
  /** Opaque, from the registry package (pull secret, auth file). */
  readonly credentials?: unknown;
  readonly tls?: RegistryTLS;
  /** Tried in order for every image read, then the image's own location. */
  readonly mirrors?: readonly MirrorRule[];
  readonly signal?: AbortSignal;
}

export interface ResolvedRelease {
  /** The release reference, normalised. */
  readonly releaseImage: string;
  /** The digest the reference names (the `-multi` index digest for a multi-arch release). */
  readonly digest: string;
  /** From release-metadata, else image-references' name; null if the payload states neither. */
  readonly version: string | null;
  readonly kernelVersion: string;
  readonly rtKernelVersion: string | null;
  readonly rhelVersion: string;
  /** The driver-toolkit pull spec as the payload names it (not rewritten by mirrors). */
  readonly dtkImage: string;
  readonly architecture: string;
  /** The kernel the upgraded nodes run: rtKernelVersion when useRTKernel, else kernelVersion. */
  readonly targetKernel: string;
  readonly useRTKernel: boolean;
}

const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' };

/** Failures the content behind a digest causes; remembered per digest like a success. */
const CONTENT_FAILURES: ReadonlySet<string> = new Set([
  'NOT_A_RELEASE',
  'INVALID_RELEASE_MANIFESTS',
  'NO_DTK_TAG',
  'DTK_FILE_MISSING',
  'DTK_FIELDS_INVALID',
]);

/**
 * Resolves an OpenShift release image to the kernel its nodes will run, as `oc adm release info` and KMM did:
 * `release-manifests/image-references` from the release's last layer → the `driver-toolkit` image →
 * `etc/driver-toolkit-release.json`, scanning that image from the top layer down. Reads only the layers it needs and
 * stops at the file. With a cache, a release given by digest that was resolved before costs no request at all, and
 * one given by tag costs one manifest request. Fails with ReleaseError only.
 */
export async function resolveRelease(
  deps: ReleaseResolverDeps,
  request: ReleaseRequest,
): Promise<ResolvedRelease> {
  const parsed = parseImageReference(request.releaseImage);
  if (!parsed.ok) {
    throw new ReleaseError('INVALID_RELEASE_REFERENCE', `releaseImage: ${parsed.error.message}`, {
      cause: parsed.error,
    });
  }
  const releaseImage = parsed.data.normalized;
  const platform = request.platform ?? DEFAULT_PLATFORM;
  const architecture = platformKey(platform);
  const useRTKernel = request.useRTKernel === true;
  const finish = (outcome: CachedOutcome): ResolvedRelease => {
    if ('error' in outcome) throw outcome.error;
    return toResolved(releaseImage, outcome.facts, useRTKernel);
  };

  const pinned = referenceDigest(parsed.data);
  const early = pinned === undefined ? undefined : deps.cache?.get(ReleaseCache.key(pinned, architecture));
  if (early !== undefined) return finish(early);

  const source = withMirrors(deps.source, request.mirrors ?? []);
  const pull: PullOptions = {
    platform,
    ...(request.tls === undefined ? {} : { tls: request.tls }),
    ...(request.credentials === undefined ? {} : { credentials: request.credentials }),
    ...(request.signal === undefined ? {} : { signal: request.signal }),
  };
  let release: ResolvedImage;
  try {
    release = await source.resolve(releaseImage, pull);
  } catch (err) {
    throw releaseErrorFromImageError(
      err,
      'RELEASE_IMAGE_UNAVAILABLE',
      `release image ${releaseImage}`,
      releaseImage,
    );
  }
  const digest = release.indexDigest ?? release.digest;
  const compute = (): Promise<CachedOutcome> =>
    readReleaseFacts(deps, source, pull, releaseImage, release, digest).then(
      (facts) => ({ facts }),
      (err: unknown) => {
        if (err instanceof ReleaseError && CONTENT_FAILURES.has(err.code)) return { error: err };
        throw err;
      },
    );
  const outcome = deps.cache
    ? await deps.cache.obtain(ReleaseCache.key(digest, architecture), compute)
    : await compute();
  return finish(outcome);
}

async function readReleaseFacts(
  deps: ReleaseResolverDeps,
  source: ImageSource,
  pull: PullOptions,
  releaseImage: string,
  release: ResolvedImage,
  digest: string,
): Promise<ReleaseFacts> {
  // Blob reads need the same TLS and credentials as the manifests: an `insecure` registry serves both over HTTP.
  const { platform: _platform, ...blobPull } = pull;
  const walkOptions = {
    ...(deps.layerLimits === undefined ? {} : { limits: deps.layerLimits }),
    ...(pull.signal === undefined ? {} : { signal: pull.signal }),
    pull: blobPull,
  };
  // oc reads release-manifests/ from the last layer only; so do we (a lower layer's copy is the base image's).
  let manifests: Map<string, Buffer>;
  try {
    manifests = await findFiles(source, release, [IMAGE_REFERENCES_PATH, RELEASE_METADATA_PATH], {
      ...walkOptions,
      lastLayerOnly: true,
    });
  } catch (err) {
    throw releaseErrorFromImageError(
      err,
      'RELEASE_IMAGE_UNAVAILABLE',
      `reading the last layer of ${releaseImage}`,
      releaseImage,
    );
  }
  const imageReferences = manifests.get(IMAGE_REFERENCES_PATH);
  if (imageReferences === undefined) {
    throw new ReleaseError(
      'NOT_A_RELEASE',
      `${releaseImage} is not an OpenShift release image: its last layer has no ${IMAGE_REFERENCES_PATH} ` +
        `(where 'oc adm release new' writes it); give a release image such as ` +
        `quay.io/openshift-release-dev/ocp-release:4.19.0-x86_64`,
    );
  }
  const refs = parseImageReferences(imageReferences.toString('utf8'));
  const metadata = manifests.get(RELEASE_METADATA_PATH);
  const version =
    metadata === undefined ? (refs.name ?? null) : parseReleaseMetadata(metadata.toString('utf8')).version;
  const dtkImage = driverToolkitImage(refs, releaseImage);

  let dtk: ResolvedImage;
  try {
    dtk = await source.resolve(dtkImage, pull);
  } catch (err) {
    throw releaseErrorFromImageError(
      err,
      'DTK_IMAGE_MISSING',
      `the driver-toolkit image ${dtkImage} named by release ${releaseImage} cannot be read`,
      dtkImage,
      pullHint(err),
    );
  }
  const where = `driver-toolkit image ${dtkImage}`;
  let files: Map<string, Buffer>;
  try {
    files = await findFiles(source, dtk, [DRIVER_TOOLKIT_RELEASE_PATH], walkOptions);
  } catch (err) {
    throw releaseErrorFromImageError(err, 'DTK_IMAGE_MISSING', `reading ${where}`, dtkImage);
  }
  const file = files.get(DRIVER_TOOLKIT_RELEASE_PATH);
  if (file === undefined) {
    throw new ReleaseError(
      'DTK_FILE_MISSING',
      `${where} (release ${releaseImage}) has no /${DRIVER_TOOLKIT_RELEASE_PATH} in any of its ` +
        `${dtk.manifest.layers.length} layers, so its kernel is unknown; the payload's driver-toolkit tag does not ` +
        `name a Driver Toolkit image`,
    );
  }
  return {
    digest,
    version,
    dtkImage,
    architecture: dtk.platform.architecture,
    driverToolkit: parseDriverToolkitRelease(file.toString('utf8'), where),
  };
}

function toResolved(releaseImage: string, facts: ReleaseFacts, useRTKernel: boolean): ResolvedRelease {
  const dtk = facts.driverToolkit;
  return {
    releaseImage,
    digest: facts.digest,
    version: facts.version,
    kernelVersion: dtk.kernelVersion,
    rtKernelVersion: dtk.rtKernelVersion,
    rhelVersion: dtk.rhelVersion,
    dtkImage: facts.dtkImage,
    architecture: facts.architecture,
    targetKernel: targetKernel(
      dtk,
      useRTKernel,
      facts.architecture,
      `driver-toolkit image ${facts.dtkImage}`,
    ),
    useRTKernel,
  };
}

/** What a person can do about a pull that failed for where the image lives rather than what it is. */
function pullHint(err: unknown): string {
  if (!(err instanceof ImageError)) return '';
  if (err.code === 'NOT_FOUND')
    return ' (on a disconnected cluster, mirror it and give a mirror rule for its repository)';
  if (err.code === 'UNAUTHORIZED' || err.code === 'DENIED')
    return ' (the pull secret must grant access to it)';
  return '';
}
