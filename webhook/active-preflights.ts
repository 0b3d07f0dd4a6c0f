import { PreflightConditionType, type PreflightValidationOCP } from '../src/api/preflight.ts';

/** A PreflightValidationOCP whose upgrade window Module edits must respect. */
export interface ActivePreflight {
  readonly name: string;
  /** The kernel Modules are validated against; absent while the release is not yet resolved. */
  readonly kernel?: string;
  /** Why it counts as active, for messages: "kernel resolved, validation not complete" or "created 2h ago". */
  readonly why: string;
}

/**
 * The preflights that are active at `now`: kernel resolved and validation not complete, or created within the
 * last `windowMs` (an upgrade window often outlives "complete": admins validate, then upgrade hours later).
 * Resources being deleted are never active.
 */
export function findActivePreflights(
  preflights: readonly PreflightValidationOCP[],
  now: Date,
  windowMs: number,
): ActivePreflight[] {
  const active: ActivePreflight[] = [];
  for (const preflight of preflights) {
    if (preflight.metadata.deletionTimestamp !== undefined) continue;
    const kernel = resolvedKernel(preflight);
    const complete = conditionIsTrue(preflight, PreflightConditionType.Complete);
    const createdAgoMs = createdAgo(preflight, now);
    if (kernel !== undefined && !complete) {
      active.push({ name: preflight.metadata.name, kernel, why: 'kernel resolved, validation not complete' });
    } else if (createdAgoMs !== undefined && createdAgoMs < windowMs) {
      active.push({
        name: preflight.metadata.name,
        ...(kernel === undefined ? {} : { kernel }),
        why: `created ${formatAge(createdAgoMs)} ago, within the ${formatAge(windowMs)} upgrade window`,
      });
    }
  }
  return active;
}

/** The kernel the preflight validates against, once its KernelResolved condition is True. */
export function resolvedKernel(preflight: PreflightValidationOCP): string | undefined {
  if (!conditionIsTrue(preflight, PreflightConditionType.KernelResolved)) return undefined;
  const status = preflight.status;
  const kernel =
    status?.targetKernel ??
    (preflight.spec.useRTKernel === true ? status?.rtKernelVersion : status?.kernelVersion);
  return kernel === undefined || kernel === '' ? undefined : kernel;
}

function conditionIsTrue(preflight: PreflightValidationOCP, type: string): boolean {
  return preflight.status?.conditions?.some((c) => c.type === type && c.status === 'True') === true;
}

function createdAgo(preflight: PreflightValidationOCP, now: Date): number | undefined {
  const created = preflight.metadata.creationTimestamp;
  if (created === undefined) return undefined;
  const ms = Date.parse(created);
  return Number.isNaN(ms) ? undefined : Math.max(0, now.getTime() - ms);
}

function formatAge(ms: number): string {
  const minutes = Math.floor(ms / 60_000);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
}
