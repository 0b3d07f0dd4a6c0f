import { isDeepStrictEqual } from 'node:util';
import type { Module } from '../src/api/module.ts';
import { formatFieldIssue } from '../src/api/structure.ts';
import { resolveModuleForKernel } from '../src/kernel/resolve.ts';
import { validateModule, validateModuleUpdate } from '../src/kernel/validate.ts';
import type { AdmissionRequest, AdmissionVerdict } from './admission-review.ts';
import type { ActivePreflight } from './active-preflights.ts';
import { CacheNotSyncedError } from './cache.ts';
import { objectName } from './preflight-rules.ts';
import { allow, denyForbidden, denyInvalid } from './verdicts.ts';

export const ModulePolicies = ['deny', 'warn'] as const;
/** What to do with a Module change that breaks an active preflight's kernel: refuse it, or admit it with a warning. */
export type ModulePolicy = (typeof ModulePolicies)[number];

export interface ModuleRuleContext {
  /** Active preflights from the cache; called only when the rules need them. */
  readonly activePreflights: () => readonly ActivePreflight[];
  readonly policy: ModulePolicy;
}

/**
 * Module CREATE and UPDATE: the domain core's full spec validation, every error with its path. Then, against each
 * active preflight: a change that leaves the Module without a usable mapping (no mapping, or an image that does not
 * parse) for the preflight's kernel, where it had one before, is refused (policy deny) or warned about; any other
 * spec change gets a warning that it will be validated again. DELETE is allowed, with a warning when it matters.
 */
export function reviewModule(request: AdmissionRequest, context: ModuleRuleContext): AdmissionVerdict {
  switch (request.operation) {
    case 'DELETE':
      return reviewDelete(request, context);
    case 'CREATE':
    case 'UPDATE':
      return reviewWrite(request, context);
    default:
      return allow();
  }
}

function reviewDelete(request: AdmissionRequest, context: ModuleRuleContext): AdmissionVerdict {
  const key = moduleKey(request, request.oldObject);
  let active: readonly ActivePreflight[];
  try {
    active = context.activePreflights();
  } catch (err) {
    // A delete is always allowed: not knowing the preflights yet only costs the warning.
    if (!(err instanceof CacheNotSyncedError)) throw err;
    return allow([
      `Module ${key} deleted before the webhook loaded the preflights: any active one will drop it`,
    ]);
  }
  if (active.length === 0) return allow();
  return allow(
    active.map(
      (preflight) =>
        `PreflightValidationOCP ${preflight.name} is active: it will drop Module ${key} from its status`,
    ),
  );
}

function reviewWrite(request: AdmissionRequest, context: ModuleRuleContext): AdmissionVerdict {
  const key = moduleKey(request, request.object);
  const issues = validateModule(request.object);
  if (request.operation === 'UPDATE') issues.push(...validateModuleUpdate(request.oldObject, request.object));
  if (issues.length > 0) {
    return denyInvalid(`Module ${key} is invalid: ${issues.map(formatFieldIssue).join('; ')}`);
  }
  const module = request.object as unknown as Module;
  const old =
    request.operation === 'UPDATE' ? (request.oldObject as unknown as Module | null | undefined) : undefined;
  // Metadata-only edits do not change what a preflight validates (the generation stays the same).
  if (old != null && isDeepStrictEqual(old.spec, module.spec)) return allow();

  const validateAgain = old == null ? 'validate this Module' : 'validate this Module again';
  const warnings: string[] = [];
  /** Changes that break an active preflight: the full denial, and the short warning under policy warn. */
  const breaks: { readonly denial: string; readonly warning: string }[] = [];
  // Only a Module that was valid before can regress; an old object that never was valid is not protected. Checked
  // once, and only if a preflight's kernel finds the new object unusable.
  let oldValid: boolean | undefined;
  const wasValid = (previous: Module): boolean => (oldValid ??= validateModule(previous).length === 0);
  for (const preflight of context.activePreflights()) {
    if (preflight.kernel === undefined) {
      warnings.push(`PreflightValidationOCP ${preflight.name} is in progress: it will ${validateAgain}`);
      continue;
    }
    const now = usableFor(module, preflight.kernel);
    if (now.ok) {
      warnings.push(
        `PreflightValidationOCP ${preflight.name} is active: it will ${validateAgain} for ${preflight.kernel}`,
      );
      continue;
    }
    const problem = `${now.problem} for ${preflight.kernel}`;
    const before = old != null && wasValid(old) ? usableFor(old, preflight.kernel) : undefined;
    if (before?.ok === true) {
      breaks.push({
        denial:
          `this change leaves Module ${key} with ${now.problem}${now.detail} for kernel ${preflight.kernel}, the ` +
          `target of the active PreflightValidationOCP ${preflight.name} (${preflight.why}). Keep a kernelMappings ` +
          `entry with a valid image for ${preflight.kernel}, or make this change once ${preflight.name} is complete or deleted`,
        warning: `Module ${key}: ${problem}, target of pfvo ${preflight.name} (policy warn)`,
      });
    } else {
      warnings.push(`Module ${key} has ${problem}: pfvo ${preflight.name} will report it failed`);
    }
  }
  if (breaks.length === 0) return allow(warnings);
  if (context.policy === 'warn') return allow([...breaks.map((b) => b.warning), ...warnings]);
  return denyForbidden(breaks.map((b) => b.denial).join('; '), warnings);
}

type Usability =
  | { readonly ok: true }
  | {
      readonly ok: false;
      /** Short, for warnings: "no kernel mapping", "no valid image". */
      readonly problem: string;
      /** Why, for denials: " (<resolver message>)" or "". */
      readonly detail: string;
    };

/** Whether the Module resolves, for `kernel`, to a mapping with an image reference that parses. */
function usableFor(module: Module, kernel: string): Usability {
  const resolved = resolveModuleForKernel(module, kernel);
  if (resolved.ok) return { ok: true };
  const detail = ` (${resolved.error.message})`;
  switch (resolved.error.code) {
    case 'NO_MAPPING':
      return { ok: false, problem: 'no kernel mapping', detail: '' };
    case 'INVALID_IMAGE':
    case 'INVALID_SUBSTITUTION':
    case 'NO_CONTAINER_IMAGE':
      return { ok: false, problem: 'no valid image', detail };
    default:
      return { ok: false, problem: 'no usable mapping', detail };
  }
}

function moduleKey(request: AdmissionRequest, object: Record<string, unknown> | null | undefined): string {
  const metadata = object?.['metadata'] as { namespace?: unknown } | undefined;
  const namespace = typeof metadata?.namespace === 'string' ? metadata.namespace : (request.namespace ?? '');
  return `${namespace}/${objectName(object, request)}`;
}
