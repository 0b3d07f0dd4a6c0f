import type { Module } from '../src/api/module.ts';
import type { PreflightValidationOCP, PreflightValidationOCPSpec } from '../src/api/preflight.ts';
import { formatFieldIssue } from '../src/api/structure.ts';
import { parseImageReference, type ImageReference } from '../src/image/reference.ts';
import { validatePreflightSpec } from '../src/kernel/validate.ts';
import type { AdmissionRequest, AdmissionVerdict } from './admission-review.ts';
import { allow, denyForbidden, denyInvalid, listNames } from './verdicts.ts';

/** What the PreflightValidationOCP rules read from the cache; called only when a rule needs it. */
export interface PreflightRuleContext {
  readonly preflights: () => readonly PreflightValidationOCP[];
  readonly modules: () => readonly Module[];
}

/**
 * PreflightValidationOCP CREATE and UPDATE: a valid releaseImage; releaseImage and useRTKernel fixed after
 * creation; warnings for a tag that can move, for Modules whose Sign stage would have no input, and for a second
 * resource validating the same release.
 */
export function reviewPreflight(request: AdmissionRequest, context: PreflightRuleContext): AdmissionVerdict {
  if (request.operation !== 'CREATE' && request.operation !== 'UPDATE') return allow();
  const object = request.object;
  const name = objectName(object, request);
  const issues = validatePreflightSpec(object?.['spec']);
  if (issues.length > 0) {
    return denyInvalid(
      `PreflightValidationOCP "${name}" is invalid: ${issues.map(formatFieldIssue).join('; ')}`,
    );
  }
  const spec = object?.['spec'] as PreflightValidationOCPSpec;
  const reference = parseImageReference(spec.releaseImage);
  if (request.operation === 'UPDATE') {
    const changes = immutableChanges(
      request.oldObject?.['spec'] as PreflightValidationOCPSpec | undefined,
      spec,
    );
    if (changes.length > 0) {
      return denyForbidden(
        `PreflightValidationOCP "${name}": ${changes.join('; ')}. A PreflightValidationOCP validates one kernel: ` +
          'create another PreflightValidationOCP for another release or kernel (and delete this one when done)',
      );
    }
  }
  const warnings: string[] = [];
  if (reference.ok && digestOf(reference.data) === undefined) {
    warnings.push(
      'spec.releaseImage is not pinned by digest: the tag can move during the upgrade window; use @sha256:<digest>',
    );
  }
  if (spec.pushBuiltImage !== true) {
    const buildAndSign = context
      .modules()
      .filter(buildsAndSigns)
      .map((m) => `${m.metadata.namespace}/${m.metadata.name}`);
    if (buildAndSign.length > 0) {
      warnings.push(
        `Module ${listNames(buildAndSign)} build and sign: Sign needs the built image; set spec.pushBuiltImage: true`,
      );
    }
  }
  if (reference.ok) {
    const sameRelease = context
      .preflights()
      .filter((other) => other.metadata.name !== name && targetsSameRelease(other.spec, spec, reference.data))
      .map((other) => other.metadata.name);
    if (sameRelease.length > 0) {
      warnings.push(
        `PreflightValidationOCP ${listNames(sameRelease)} already validates this release; delete one of them`,
      );
    }
  }
  return allow(warnings);
}

function immutableChanges(
  old: PreflightValidationOCPSpec | undefined,
  spec: PreflightValidationOCPSpec,
): string[] {
  if (old === undefined) return [];
  const changes: string[] = [];
  if (!sameImage(old.releaseImage, spec.releaseImage)) {
    changes.push(
      `spec.releaseImage cannot change after creation (was ${old.releaseImage}, now ${spec.releaseImage})`,
    );
  }
  if ((old.useRTKernel === true) !== (spec.useRTKernel === true)) {
    changes.push(
      `spec.useRTKernel cannot change after creation (was ${old.useRTKernel === true}, now ${spec.useRTKernel === true})`,
    );
  }
  return changes;
}

/** Same image once normalised (`quay.io/x:1` and `quay.io/x:1` spelled alike or not), else same string. */
function sameImage(a: string | undefined, b: string): boolean {
  if (a === b) return true;
  if (a === undefined) return false;
  const left = parseImageReference(a);
  const right = parseImageReference(b);
  return left.ok && right.ok && left.data.normalized === right.data.normalized;
}

function targetsSameRelease(
  other: PreflightValidationOCPSpec | undefined,
  spec: PreflightValidationOCPSpec,
  reference: ImageReference,
): boolean {
  if (other === undefined || (other.useRTKernel === true) !== (spec.useRTKernel === true)) return false;
  const parsed = parseImageReference(other.releaseImage);
  if (!parsed.ok) return false;
  // A mirror of the release has another name but the same digest.
  const digest = digestOf(parsed.data);
  if (digest !== undefined && digest === digestOf(reference)) return true;
  return parsed.data.normalized === reference.normalized;
}

function digestOf(reference: ImageReference): string | undefined {
  return reference.kind === 'registry' ? reference.digest : undefined;
}

/**
 * True when some kernel mapping both builds and signs (each section taken from the mapping, else the container):
 * KMM's ShouldBeBuilt/ShouldBeSigned for that mapping.
 */
function buildsAndSigns(module: Module): boolean {
  const container = module.spec.moduleLoader?.container;
  if (container === undefined) return false;
  return (container.kernelMappings ?? []).some(
    (mapping) =>
      (mapping.build ?? container.build) !== undefined && (mapping.sign ?? container.sign) !== undefined,
  );
}

export function objectName(
  object: Record<string, unknown> | null | undefined,
  request: AdmissionRequest,
): string {
  const metadata = object?.['metadata'] as { name?: unknown; generateName?: unknown } | undefined;
  if (typeof metadata?.name === 'string' && metadata.name !== '') return metadata.name;
  if (request.name !== undefined && request.name !== '') return request.name;
  return typeof metadata?.generateName === 'string' ? `${metadata.generateName}<generated>` : '<unnamed>';
}
