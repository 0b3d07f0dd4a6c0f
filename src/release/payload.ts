import { parse as parseYaml } from 'yaml';
import { ReleaseError } from './errors.ts';

/** Where `oc adm release new` writes the payload's manifests, inside the release image's last layer. */
export const IMAGE_REFERENCES_PATH = 'release-manifests/image-references';
export const RELEASE_METADATA_PATH = 'release-manifests/release-metadata';
/** The image-references tag naming the Driver Toolkit image built for the release's kernel. */
export const DRIVER_TOOLKIT_TAG = 'driver-toolkit';

export interface ImageStreamTag {
  readonly name: string;
  /** `from.name` when `from.kind` is DockerImage: the component's pull spec, by digest in a real payload. */
  readonly image: string | undefined;
  /** Position in `spec.tags`, so errors can name the exact field. */
  readonly index: number;
}

/** The parts of the payload's `image-references` ImageStream that release resolution reads. */
export interface ReleaseImageReferences {
  /** `metadata.name`: oc writes the release version here. */
  readonly name: string | undefined;
  readonly tags: ReadonlyMap<string, ImageStreamTag>;
}

export interface ReleaseMetadata {
  readonly version: string;
  readonly previous: readonly string[];
}

const DIGEST_REFERENCE = /@sha256:[a-f0-9]{64}$|@sha512:[a-f0-9]{128}$/;

/**
 * Parses `release-manifests/image-references`. oc writes it as JSON and reads it with a YAML decoder, and rejects
 * anything but an `ImageStream` of `image.openshift.io/v1`; so do we.
 */
export function parseImageReferences(text: string): ReleaseImageReferences {
  const doc = parseDocument(text, IMAGE_REFERENCES_PATH);
  const kind = doc['kind'];
  const apiVersion = doc['apiVersion'];
  if (kind !== 'ImageStream' || apiVersion !== 'image.openshift.io/v1') {
    throw new ReleaseError(
      'INVALID_RELEASE_MANIFESTS',
      `${IMAGE_REFERENCES_PATH} is kind ${describe(kind)} of apiVersion ${describe(apiVersion)}, expected ` +
        `an ImageStream of image.openshift.io/v1 as written by 'oc adm release new'`,
    );
  }
  const metadata = asRecord(doc['metadata']);
  const name = typeof metadata?.['name'] === 'string' ? metadata['name'] : undefined;
  const spec = asRecord(doc['spec']);
  const rawTags = spec?.['tags'] ?? [];
  if (!Array.isArray(rawTags)) {
    throw new ReleaseError(
      'INVALID_RELEASE_MANIFESTS',
      `${IMAGE_REFERENCES_PATH}: spec.tags is ${describe(rawTags)}, expected a list`,
    );
  }
  const tags = new Map<string, ImageStreamTag>();
  rawTags.forEach((raw: unknown, index) => {
    const tag = asRecord(raw);
    const tagName = tag?.['name'];
    if (typeof tagName !== 'string' || tagName === '' || tags.has(tagName)) return;
    const from = asRecord(tag?.['from']);
    const image =
      from?.['kind'] === 'DockerImage' && typeof from['name'] === 'string' ? from['name'] : undefined;
    tags.set(tagName, { name: tagName, image, index });
  });
  return { name, tags };
}

/**
 * The pull spec of the payload's driver-toolkit image. A payload pins every component by digest; a tag here would
 * make the answer change under the same release digest, so it is refused.
 */
export function driverToolkitImage(refs: ReleaseImageReferences, releaseImage: string): string {
  const tag = refs.tags.get(DRIVER_TOOLKIT_TAG);
  if (tag === undefined) {
    throw new ReleaseError(
      'NO_DTK_TAG',
      `release ${releaseImage} lists no '${DRIVER_TOOLKIT_TAG}' image among its ${refs.tags.size} images ` +
        `(${IMAGE_REFERENCES_PATH}); releases before OpenShift 4.8 have none, so give the target kernel directly`,
    );
  }
  const field = `${IMAGE_REFERENCES_PATH}: spec.tags[${tag.index}] (${DRIVER_TOOLKIT_TAG}).from`;
  if (tag.image === undefined || tag.image === '') {
    throw new ReleaseError(
      'INVALID_RELEASE_MANIFESTS',
      `${field} names no DockerImage pull spec in release ${releaseImage}`,
    );
  }
  if (!DIGEST_REFERENCE.test(tag.image)) {
    throw new ReleaseError(
      'INVALID_RELEASE_MANIFESTS',
      `${field}.name '${tag.image}' is not a reference by digest; a release payload pins its images by digest ` +
        `(rebuild it with 'oc adm release new')`,
    );
  }
  return tag.image;
}

/** Parses `release-manifests/release-metadata` (Cincinnati metadata, `cincinnati-metadata-v0`). */
export function parseReleaseMetadata(text: string): ReleaseMetadata {
  const doc = parseDocument(text, RELEASE_METADATA_PATH);
  if (doc['kind'] !== 'cincinnati-metadata-v0') {
    throw new ReleaseError(
      'INVALID_RELEASE_MANIFESTS',
      `${RELEASE_METADATA_PATH} is kind ${describe(doc['kind'])}, expected cincinnati-metadata-v0`,
    );
  }
  const version = doc['version'];
  if (typeof version !== 'string' || version.trim() === '') {
    throw new ReleaseError(
      'INVALID_RELEASE_MANIFESTS',
      `${RELEASE_METADATA_PATH}: version is ${describe(version)}, expected the release version (e.g. 4.19.0)`,
    );
  }
  const previous = Array.isArray(doc['previous'])
    ? doc['previous'].filter((p): p is string => typeof p === 'string')
    : [];
  return { version, previous };
}

function parseDocument(text: string, path: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new ReleaseError(
      'INVALID_RELEASE_MANIFESTS',
      `${path} is not JSON or YAML: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  const record = asRecord(doc);
  if (record === undefined) {
    throw new ReleaseError('INVALID_RELEASE_MANIFESTS', `${path} is ${describe(doc)}, expected an object`);
  }
  return record;
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}

/** A short, safe rendering of an unexpected value for an error message. */
export function describe(value: unknown): string {
  if (value === undefined) return 'missing';
  if (value === null) return 'null';
  if (typeof value === 'string') return value === '' ? 'empty' : JSON.stringify(value.slice(0, 80));
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${value}`;
  return `a ${typeof value}`;
}
