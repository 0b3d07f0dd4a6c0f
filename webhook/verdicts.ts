import type { AdmissionStatus, AdmissionVerdict } from './admission-review.ts';

/** Builders for the verdicts rules return, so codes and reasons stay consistent across rules. */

/**
 * kubectl prints each warning on its own line; the Kubernetes documentation advises at most 120 characters and
 * warns that longer ones (over 256) may be truncated. Warnings name the object and the fix, and leave the detail
 * to denials and the preflight's status.
 */
export const WARNING_MAX_CHARS = 120;

export function allow(warnings: readonly string[] = []): AdmissionVerdict {
  return { allowed: true, warnings };
}

/** The object is invalid: 422 Invalid, as the API server itself answers for schema errors. */
export function denyInvalid(message: string, warnings: readonly string[] = []): AdmissionVerdict {
  return deny({ code: 422, reason: 'Invalid', message }, warnings);
}

/** The object is valid but the change is not allowed now or ever (immutability, upgrade-window protection). */
export function denyForbidden(message: string, warnings: readonly string[] = []): AdmissionVerdict {
  return deny({ code: 403, reason: 'Forbidden', message }, warnings);
}

export function deny(status: AdmissionStatus, warnings: readonly string[] = []): AdmissionVerdict {
  return { allowed: false, status, warnings };
}

/** "a", "a and b", "a, b and 3 more": keeps warnings short when many objects are involved. */
export function listNames(names: readonly string[], shown = 3): string {
  if (names.length <= 1) return names[0] ?? '';
  if (names.length <= shown) return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
  return `${names.slice(0, shown).join(', ')} and ${names.length - shown} more`;
}
