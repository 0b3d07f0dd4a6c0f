import { ImageError } from './source.ts';

/**
 * Image references: the Docker reference grammar (as distribution/reference defines it) with Docker's
 * normalisation, plus `oci:<dir>[:<tag>]` for an OCI image layout on disk (skopeo's transport syntax; the
 * directory ends at the first `:`). Registry references may also be written with skopeo's `docker://` prefix.
 *
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [ domain "/" ] path-component ( "/" path-component )*
 *   domain     := host [ ":" port ]      host: DNS labels, "localhost", an IPv4 address or "[" IPv6 "]"
 *   path-comp  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
 *   tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
 *   digest     := algorithm ":" hex   (sha256: 64 lowercase hex, sha512: 128)
 *
 * The first component is a registry only if it contains `.`, `:` or uppercase, or is `localhost`; otherwise it is
 * in docker.io, and a single-component docker.io repository gets `library/` (`busybox` → docker.io/library/busybox).
 */

export const DEFAULT_REGISTRY = 'docker.io';
export const DEFAULT_TAG = 'latest';
const LEGACY_DEFAULT_REGISTRY = 'index.docker.io';
const MAX_NAME_LENGTH = 255;

export interface RegistryReferenceParts {
  readonly kind: 'registry';
  /** Normalised registry host, with port if given: `docker.io`, `quay.io`, `localhost:5000`, `[::1]:5000`. */
  readonly registry: string;
  /** Repository path in the registry: `library/busybox`, `org/team/image`. */
  readonly repository: string;
  /** As written; absent if none was given (see `referenceTag` for the effective tag). */
  readonly tag?: string;
  readonly digest?: string;
}

export interface OciLayoutReferenceParts {
  readonly kind: 'oci-layout';
  /** The layout directory, as written. */
  readonly directory: string;
  /** The image's `org.opencontainers.image.ref.name` in the layout index; absent = the only image in it. */
  readonly tag?: string;
  /** `oci:<dir>@<digest>`: the manifest with this digest among the layout's blobs (what a mirror rule yields). */
  readonly digest?: string;
}

export type ImageReferenceParts = RegistryReferenceParts | OciLayoutReferenceParts;

/** A parsed reference carries its normalised text (`formatReference` of its parts). */
export type RegistryReference = RegistryReferenceParts & { readonly normalized: string };
export type OciLayoutReference = OciLayoutReferenceParts & { readonly normalized: string };
export type ImageReference = RegistryReference | OciLayoutReference;

export type ParseReferenceResult =
  { readonly ok: true; readonly data: ImageReference } | { readonly ok: false; readonly error: ImageError };

function parsed(parts: ImageReferenceParts): ParseReferenceResult {
  return { ok: true, data: { ...parts, normalized: formatReference(parts) } };
}

const DOMAIN_COMPONENT = /^(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])$/;
const IPV6_HOST = /^\[[0-9A-Fa-f:.]+\]$/;
const PORT = /^[0-9]+$/;
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[A-Za-z0-9=_-]+$/;
const KNOWN_DIGEST_LENGTHS: Readonly<Record<string, number>> = { sha256: 64, sha384: 96, sha512: 128 };
const HEX_64 = /^[a-f0-9]{64}$/;

function invalid(text: string, why: string): ParseReferenceResult {
  return {
    ok: false,
    error: new ImageError('INVALID_REFERENCE', `invalid image reference "${text}": ${why}`),
  };
}

export function parseImageReference(text: string): ParseReferenceResult {
  if (text === '') return invalid(text, 'the reference is empty');
  if (text !== text.trim()) return invalid(text, 'it has leading or trailing whitespace');
  if (text.startsWith('oci:')) return parseOciLayout(text);
  const body = text.startsWith('docker://') ? text.slice('docker://'.length) : text;
  return parseRegistryReference(text, body);
}

function parseOciLayout(text: string): ParseReferenceResult {
  const rest = text.slice('oci:'.length);
  // A digest can only be the last `@` part: directory names may contain `@` but not `@sha256:<hex>` at the end.
  const byDigest = /^(.+)@([a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+)$/.exec(rest);
  if (byDigest !== null) {
    const [, directory = '', digest = ''] = byDigest;
    const problem = checkDigest(digest);
    if (problem !== undefined) return invalid(text, problem);
    return parsed({ kind: 'oci-layout', directory, digest });
  }
  const colon = rest.indexOf(':');
  const directory = colon === -1 ? rest : rest.slice(0, colon);
  const tag = colon === -1 ? undefined : rest.slice(colon + 1);
  if (directory === '') return invalid(text, 'oci: needs a layout directory (oci:<dir>[:<tag>])');
  if (tag !== undefined && (tag === '' || /\s/.test(tag))) {
    return invalid(text, 'the tag after the directory is empty or contains whitespace (oci:<dir>[:<tag>])');
  }
  return parsed(
    tag === undefined ? { kind: 'oci-layout', directory } : { kind: 'oci-layout', directory, tag },
  );
}

function parseRegistryReference(text: string, body: string): ParseReferenceResult {
  let rest = body;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    const digestProblem = checkDigest(digest);
    if (digestProblem !== undefined) return invalid(text, digestProblem);
  }

  // A tag follows the last ':' that comes after the last '/': a ':' before it belongs to a registry port.
  let tag: string | undefined;
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > rest.lastIndexOf('/')) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!TAG.test(tag)) {
      return invalid(
        text,
        tag === ''
          ? 'the tag after ":" is empty'
          : `tag "${tag}" is invalid (letters, digits, "_", "." and "-", at most 128, not starting with "." or "-")`,
      );
    }
  }

  if (rest === '') return invalid(text, 'the repository name is empty');
  if (rest.length > MAX_NAME_LENGTH)
    return invalid(text, `the name is longer than ${MAX_NAME_LENGTH} characters`);

  const slash = rest.indexOf('/');
  const first = slash === -1 ? rest : rest.slice(0, slash);
  // As distribution/reference: an uppercase first component cannot be a repository, so it is a host.
  const hasRegistry =
    slash !== -1 &&
    (first.includes('.') || first.includes(':') || first === 'localhost' || first.toLowerCase() !== first);
  let registry = hasRegistry ? first : DEFAULT_REGISTRY;
  let repository = hasRegistry ? rest.slice(slash + 1) : rest;

  if (hasRegistry) {
    const hostProblem = checkRegistry(registry);
    if (hostProblem !== undefined) return invalid(text, hostProblem);
    if (registry === LEGACY_DEFAULT_REGISTRY) registry = DEFAULT_REGISTRY;
  }

  if (repository === '') return invalid(text, 'the repository path after the registry is empty');
  if (!hasRegistry && HEX_64.test(repository)) {
    return invalid(text, 'a 64-character hexadecimal string is an image ID, not a repository name');
  }
  for (const component of repository.split('/')) {
    if (component === '')
      return invalid(text, 'the repository path has an empty component ("//" or a trailing "/")');
    if (component.toLowerCase() !== component)
      return invalid(text, `repository "${repository}" must be lowercase`);
    if (!PATH_COMPONENT.test(component)) {
      return invalid(
        text,
        `repository component "${component}" is invalid (lowercase letters and digits, separated by ".", "_", "__" or "-")`,
      );
    }
  }
  if (registry === DEFAULT_REGISTRY && !repository.includes('/')) repository = `library/${repository}`;

  return parsed({
    kind: 'registry',
    registry,
    repository,
    ...(tag === undefined ? {} : { tag }),
    ...(digest === undefined ? {} : { digest }),
  });
}

function checkRegistry(registry: string): string | undefined {
  let host = registry;
  const portColon = registry.startsWith('[')
    ? registry.indexOf(':', registry.indexOf(']'))
    : registry.indexOf(':');
  if (portColon !== -1) {
    const port = registry.slice(portColon + 1);
    host = registry.slice(0, portColon);
    if (!PORT.test(port) || Number(port) > 65535)
      return `registry port "${port}" is not a number from 0 to 65535`;
  }
  if (IPV6_HOST.test(host)) return undefined;
  if (host.split('.').every((label) => DOMAIN_COMPONENT.test(label))) return undefined;
  return `registry host "${host}" is invalid (DNS labels of letters, digits and "-", or an [IPv6] address)`;
}

function checkDigest(digest: string): string | undefined {
  if (!DIGEST.test(digest))
    return `digest "${digest}" is invalid (expected <algorithm>:<hex>, e.g. sha256:...)`;
  const [algorithm = '', encoded = ''] = digest.split(':');
  const length = KNOWN_DIGEST_LENGTHS[algorithm];
  if (length !== undefined && !new RegExp(`^[a-f0-9]{${length}}$`).test(encoded)) {
    return `digest "${digest}" is invalid (${algorithm} needs ${length} lowercase hexadecimal characters)`;
  }
  if (length === undefined && encoded.length < 32) return `digest "${digest}" is too short`;
  return undefined;
}

/** The normalised text: `docker.io/library/busybox:latest`, `quay.io/a/b@sha256:...`, `oci:/dir:tag`. */
export function formatReference(reference: ImageReferenceParts): string {
  if (reference.kind === 'oci-layout') {
    if (reference.digest !== undefined) return `oci:${reference.directory}@${reference.digest}`;
    return reference.tag === undefined
      ? `oci:${reference.directory}`
      : `oci:${reference.directory}:${reference.tag}`;
  }
  const tag = referenceTag(reference);
  return (
    `${reference.registry}/${reference.repository}` +
    (tag === undefined ? '' : `:${tag}`) +
    (reference.digest === undefined ? '' : `@${reference.digest}`)
  );
}

/** The registry host, or undefined for an OCI layout. */
export function referenceRegistry(reference: ImageReferenceParts): string | undefined {
  return reference.kind === 'registry' ? reference.registry : undefined;
}

/** The repository path (`library/busybox`), or the layout directory for an OCI layout. */
export function referenceRepository(reference: ImageReferenceParts): string {
  return reference.kind === 'registry' ? reference.repository : reference.directory;
}

/** The effective tag: as written, else `latest` for a registry reference without a digest (Docker's default). */
export function referenceTag(reference: ImageReferenceParts): string | undefined {
  if (reference.tag !== undefined) return reference.tag;
  return reference.kind === 'registry' && reference.digest === undefined ? DEFAULT_TAG : undefined;
}

export function referenceDigest(reference: ImageReferenceParts): string | undefined {
  return reference.kind === 'registry' ? reference.digest : undefined;
}

/** What to ask the registry's manifests endpoint for: the digest when pinned (it wins over a tag), else the tag. */
export function manifestReference(reference: RegistryReferenceParts): string {
  return reference.digest ?? referenceTag(reference) ?? DEFAULT_TAG;
}
