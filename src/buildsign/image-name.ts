import { createHash } from 'node:crypto';
import { parseImageReference, type RegistryReference } from '../image/reference.ts';
import { BuildSignError } from './errors.ts';

/**
 * The image-reference arithmetic the Jobs need, on top of src/image's reference parser: check a reference a Job
 * will pull or push, set a tag, and derive the temporary name of an unsigned build. The parser's grammar admits no
 * whitespace, quotes or `$`, so a checked reference is also safe to write into a Dockerfile.
 */

const MAX_TAG_LENGTH = 128;
const UNSIGNED_SUFFIX = 'kmm_unsigned';

/** `reference` parsed as a registry image (Jobs cannot read an OCI layout on the runner's disk). */
export function registryImage(reference: string, field: string): RegistryReference {
  const parsed = parseImageReference(reference);
  if (!parsed.ok) throw new BuildSignError('INVALID_IMAGE', `${field}: ${parsed.error.message}`);
  if (parsed.data.kind !== 'registry') {
    throw new BuildSignError(
      'INVALID_IMAGE',
      `${field}: "${reference}" is an OCI layout; a Job needs a registry image`,
    );
  }
  return parsed.data;
}

/** `reference` with its tag replaced by `tag` and any digest dropped (KMM's `kanikoParams.tag`). */
export function withTag(reference: string, tag: string, field: string): string {
  const image = registryImage(reference, 'kanikoImage');
  const retagged = `${image.registry}/${image.repository}:${tag}`;
  registryImage(retagged, field);
  return retagged;
}

/** `reference`, checked to be something a registry accepts a push to: a tag, not a digest. */
export function pushableImage(reference: string, field: string): string {
  if (registryImage(reference, field).digest !== undefined) {
    throw new BuildSignError(
      'INVALID_IMAGE',
      `${field}: "${reference}" names a digest; a built image can only be pushed to a tag (use repository:tag)`,
    );
  }
  return reference;
}

export interface UnsignedImageScope {
  readonly namespace: string;
  readonly moduleName: string;
  /** The PreflightValidationOCP: two resources (two kernels) never share an intermediate image. */
  readonly resourceName: string;
}

/**
 * Where Build puts the image Sign reads, derived from the final image like KMM's `<tag>_<ns>_<module>_kmm_unsigned`
 * (`:<ns>_...` when no tag was written), with the resource name added so validations for several releases do not
 * overwrite each other's intermediate image. A tag longer than the registry's 128 characters keeps a prefix of the
 * original tag and replaces the rest with a digest of all parts, so it stays unique and valid.
 */
export function unsignedImageName(containerImage: string, scope: UnsignedImageScope): string {
  const image = registryImage(pushableImage(containerImage, 'containerImage'), 'containerImage');
  const repository = `${image.registry}/${image.repository}`;
  const scopeTag = `${scope.namespace}_${scope.moduleName}_${scope.resourceName}_${UNSIGNED_SUFFIX}`;
  const tag = image.tag === undefined ? scopeTag : `${image.tag}_${scopeTag}`;
  if (tag.length <= MAX_TAG_LENGTH) return `${repository}:${tag}`;
  const digest = createHash('sha256')
    .update(JSON.stringify([image.tag ?? '', scope.namespace, scope.moduleName, scope.resourceName]))
    .digest('hex')
    .slice(0, 20);
  const tail = `${digest}_${UNSIGNED_SUFFIX}`;
  const head = (image.tag ?? '').slice(0, MAX_TAG_LENGTH - tail.length - 1);
  return `${repository}:${head === '' ? tail : `${head}_${tail}`}`;
}
