import { parseImageReference } from './reference.ts';
import type { Descriptor, ImageSource, PullOptions, ResolvedImage } from './source.ts';
import { ImageError } from './source.ts';
import { CodedError } from '../platform/errors.ts';

/**
 * Mirror rules for disconnected clusters: images are referenced at their source (quay.io/...) but served from a
 * mirror. The semantics follow containers-registries.conf(5), which is what CRI-O on the nodes applies after the
 * Machine Config Operator renders the cluster's ImageDigestMirrorSet / ImageTagMirrorSet / ImageContentSourcePolicy
 * objects into it: the most specific matching source wins, its mirrors are tried in order, then the source itself.
 */

/** Which pulls a rule's mirrors serve: IDMS and ICSP mirror digest pulls only, ITMS tag pulls only. */
export type MirrorPullType = 'any' | 'digest' | 'tag';

export interface MirrorRule {
  /** A registry (`quay.io`, `host:5000`) or a repository prefix (`quay.io/openshift-release-dev`). */
  readonly source: string;
  /** Prefixes that replace `source`, tried in order. */
  readonly mirrors: readonly string[];
  readonly pullType: MirrorPullType;
  /** IDMS/ITMS `mirrorSourcePolicy: NeverContactSource`: if every mirror fails, do not fall back to the source. */
  readonly neverContactSource?: boolean;
}

export class MirrorRuleError extends CodedError<'INVALID_MIRROR_RULE'> {
  constructor(message: string) {
    super('INVALID_MIRROR_RULE', message);
  }
}

/** Rules read from cluster objects, and what was wrong with the entries that had to be skipped. */
export interface ClusterMirrorRules {
  readonly rules: readonly MirrorRule[];
  readonly problems: readonly string[];
}

// A source or mirror prefix: no scheme, no tag or digest, no whitespace. `oci:` layouts are accepted as mirrors so
// a mirrored payload can be served from a directory.
const PREFIX = /^(oci:)?[^\s@=]+$/;

/** Parses the command line's `SOURCE=MIRROR`; repeated flags for one source add mirrors in order. */
export function parseMirrorFlag(text: string): MirrorRule {
  const eq = text.indexOf('=');
  const source = (eq < 0 ? '' : text.slice(0, eq)).trim().replace(/\/+$/, '');
  const mirror = (eq < 0 ? '' : text.slice(eq + 1)).trim().replace(/\/+$/, '');
  if (eq < 0 || source === '' || mirror === '') {
    throw new MirrorRuleError(
      `--mirror '${text}': expected SOURCE=MIRROR, e.g. quay.io/openshift-release-dev=mirror.example.com:5000/ocp`,
    );
  }
  for (const [what, value] of [
    ['SOURCE', source],
    ['MIRROR', mirror],
  ] as const) {
    const problem = prefixProblem(value, what === 'MIRROR');
    if (problem !== undefined) throw new MirrorRuleError(`--mirror '${text}': ${what} ${problem}`);
  }
  return { source, mirrors: [mirror], pullType: 'any' };
}

/** Rules from `ImageDigestMirrorSet` objects (config.openshift.io/v1, `spec.imageDigestMirrors`). */
export function mirrorRulesFromImageDigestMirrorSets(objects: readonly unknown[]): ClusterMirrorRules {
  return rulesFromObjects(objects, 'ImageDigestMirrorSet', 'imageDigestMirrors', 'digest', true);
}

/** Rules from `ImageTagMirrorSet` objects (config.openshift.io/v1, `spec.imageTagMirrors`). */
export function mirrorRulesFromImageTagMirrorSets(objects: readonly unknown[]): ClusterMirrorRules {
  return rulesFromObjects(objects, 'ImageTagMirrorSet', 'imageTagMirrors', 'tag', true);
}

/** Rules from `ImageContentSourcePolicy` objects (operator.openshift.io/v1alpha1, `spec.repositoryDigestMirrors`). */
export function mirrorRulesFromImageContentSourcePolicies(objects: readonly unknown[]): ClusterMirrorRules {
  return rulesFromObjects(objects, 'ImageContentSourcePolicy', 'repositoryDigestMirrors', 'digest', false);
}

function rulesFromObjects(
  objects: readonly unknown[],
  kind: string,
  listField: string,
  pullType: MirrorPullType,
  hasSourcePolicy: boolean,
): ClusterMirrorRules {
  const rules: MirrorRule[] = [];
  const problems: string[] = [];
  objects.forEach((object, objectIndex) => {
    const record = asRecord(object);
    const name = asRecord(record?.['metadata'])?.['name'];
    const where = `${kind} ${typeof name === 'string' ? name : `#${objectIndex}`}`;
    const entries = asRecord(record?.['spec'])?.[listField] ?? [];
    if (!Array.isArray(entries)) {
      problems.push(`${where}: spec.${listField} is not a list; object skipped`);
      return;
    }
    entries.forEach((raw: unknown, i) => {
      const field = `${where}: spec.${listField}[${i}]`;
      const entry = asRecord(raw);
      const source = entry?.['source'];
      if (typeof source !== 'string' || prefixProblem(source, false) !== undefined) {
        const why = typeof source === 'string' ? prefixProblem(source, false) : 'is missing';
        problems.push(`${field}.source ${why}; entry skipped`);
        return;
      }
      const rawMirrors = entry?.['mirrors'] ?? [];
      const mirrors: string[] = [];
      if (Array.isArray(rawMirrors)) {
        rawMirrors.forEach((m: unknown, j) => {
          const problem = typeof m === 'string' ? prefixProblem(m, false) : 'is not a string';
          if (problem === undefined) mirrors.push((m as string).replace(/\/+$/, ''));
          else problems.push(`${field}.mirrors[${j}] ${problem}; mirror skipped`);
        });
      } else {
        problems.push(`${field}.mirrors is not a list; entry skipped`);
        return;
      }
      const policy = hasSourcePolicy ? entry?.['mirrorSourcePolicy'] : undefined;
      if (policy !== undefined && policy !== 'NeverContactSource' && policy !== 'AllowContactingSource') {
        problems.push(
          `${field}.mirrorSourcePolicy ${JSON.stringify(policy)} is not NeverContactSource or AllowContactingSource; treated as AllowContactingSource`,
        );
      }
      rules.push({
        source: source.replace(/\/+$/, ''),
        mirrors,
        pullType,
        ...(policy === 'NeverContactSource' ? { neverContactSource: true } : {}),
      });
    });
  });
  return { rules, problems };
}

/**
 * Where to pull `reference` from, in order: the mirrors of the most specific matching source that serve this kind
 * of pull, then the reference itself unless that source is never to be contacted. `reference` must be normalised
 * (`docker.io/library/x`, not `x`), since sources are matched as text on a path-component boundary.
 */
export function mirrorCandidates(reference: string, rules: readonly MirrorRule[]): string[] {
  let best: string | undefined;
  for (const rule of rules) {
    if (matchesPrefix(reference, rule.source) && (best === undefined || rule.source.length > best.length)) {
      best = rule.source;
    }
  }
  if (best === undefined) return [reference];
  const byDigest = /@sha(256|512):/.test(reference);
  const candidates: string[] = [];
  let contactSource = true;
  for (const rule of rules) {
    if (rule.source !== best) continue;
    if (rule.neverContactSource === true) contactSource = false;
    if (rule.pullType === (byDigest ? 'tag' : 'digest')) continue;
    for (const mirror of rule.mirrors) {
      const candidate = mirror + reference.slice(best.length);
      if (!candidates.includes(candidate)) candidates.push(candidate);
    }
  }
  if (contactSource && !candidates.includes(reference)) candidates.push(reference);
  return candidates;
}

/**
 * An ImageSource that pulls through mirrors. The image it returns keeps the reference that was asked for (what
 * the cluster's objects name); its blobs are read from wherever its manifest was found.
 */
export function withMirrors(inner: ImageSource, rules: readonly MirrorRule[]): ImageSource {
  if (rules.length === 0) return inner;
  const servedBy = new WeakMap<ResolvedImage, ResolvedImage>();
  return {
    async resolve(asked: string, options: PullOptions): Promise<ResolvedImage> {
      // Sources are matched against the normalised form (`busybox` is docker.io/library/busybox:latest); a
      // reference that does not parse goes to the inner source as written, which reports it.
      const parsed = parseImageReference(asked);
      const reference = parsed.ok && parsed.data.kind === 'registry' ? parsed.data.normalized : asked;
      const candidates = mirrorCandidates(reference, rules);
      const failures: { candidate: string; error: ImageError }[] = [];
      for (const candidate of candidates) {
        try {
          const image = await inner.resolve(candidate, options);
          if (candidate === reference) return image;
          const asked: ResolvedImage = { ...image, reference };
          servedBy.set(asked, image);
          return asked;
        } catch (err) {
          // The content behind a digest is the same everywhere: a missing platform or an over-limit manifest
          // would be the same at the next location, so only "this location cannot serve it" moves on.
          if (!(err instanceof ImageError) || err.code === 'NO_PLATFORM' || err.code === 'LIMIT_EXCEEDED')
            throw err;
          options.signal?.throwIfAborted();
          failures.push({ candidate, error: err });
        }
      }
      throw combinedFailure(reference, failures);
    },
    openBlob(image: ResolvedImage, descriptor: Descriptor, options?: Omit<PullOptions, 'platform'>) {
      return inner.openBlob(servedBy.get(image) ?? image, descriptor, options);
    },
  };
}

function combinedFailure(
  reference: string,
  failures: readonly { candidate: string; error: ImageError }[],
): ImageError {
  // Report as retryable if any location failed transiently; otherwise as the last location's definite answer.
  const transient = failures.find((f) => !f.error.definite);
  const primary = transient ?? failures[failures.length - 1];
  if (primary === undefined) {
    return new ImageError('NOT_FOUND', `${reference}: the mirror rules allow no location to pull it from`);
  }
  if (failures.length === 1) return primary.error;
  const tried = failures.map((f) => `${f.candidate}: ${f.error.message}`).join('; ');
  return new ImageError(
    primary.error.code,
    `${reference} could not be pulled from any of ${failures.length} locations (${tried})`,
    {
      definite: transient === undefined,
      cause: primary.error,
    },
  );
}

/**
 * Sources match on a path-component boundary: `quay.io/a` matches `quay.io/a/b@…` and `quay.io/a:t`, not
 * `quay.io/ab`; a bare host `h` does not match `h:5000/x` (there `:` starts a port, not a tag).
 */
function matchesPrefix(reference: string, source: string): boolean {
  if (!reference.startsWith(source)) return false;
  const next = reference.charAt(source.length);
  return next === '' || next === '/' || next === '@' || (next === ':' && source.includes('/'));
}

function prefixProblem(value: string, allowLayout: boolean): string | undefined {
  const trimmed = value.trim();
  if (trimmed === '') return 'is empty';
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed))
    return `'${value}' must not have a scheme (write host[:port]/path)`;
  if (!allowLayout && trimmed.startsWith('oci:')) return `'${value}': an OCI layout cannot be a source`;
  if (trimmed.startsWith('*.')) return `'${value}': wildcard sources are not supported; list the registries`;
  if (!PREFIX.test(trimmed))
    return `'${value}' is not a registry or repository prefix (no tag, digest or spaces)`;
  return undefined;
}

function asRecord(value: unknown): Record<string, unknown> | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : undefined;
}
