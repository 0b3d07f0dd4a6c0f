import { failure } from './errors.ts';
import type { KernelResult } from './errors.ts';

/**
 * A kernel release string (`uname -r`), e.g. `5.14.0-284.30.1.el9_2.x86_64`, with the pieces KMM exposes as
 * variables (kmm-anchor.md 1.6).
 */
export interface KernelVersion {
  /** As given, without surrounding whitespace: what kernel mappings are matched against and modprobe looks for. */
  readonly raw: string;
  /** KMM's normalised form: characters outside `[A-Za-z0-9._-]` become `_` (`+rt` → `_rt`). Used for variables. */
  readonly normalized: string;
  /** `normalized` split on `.`, `,` and `-`, as KMM splits it. */
  readonly components: readonly string[];
  /** KERNEL_X, KERNEL_Y, KERNEL_Z: the first three components. */
  readonly x: string;
  readonly y: string;
  readonly z: string;
  /** KERNEL_XYZ: the first three components joined by `.`. */
  readonly xyz: string;
}

const OUTSIDE_KERNEL_CHARS = /[^A-Za-z0-9._-]/g;
const COMPONENT_SEPARATOR = /[.,-]/;

/** KMM's kernel normalisation (used in variables and in names derived from the kernel). */
export function normalizeKernel(kernel: string): string {
  return kernel.replace(OUTSIDE_KERNEL_CHARS, '_');
}

/**
 * Parses a kernel release. Fewer than three components, or an empty one among the first three, is an
 * INVALID_KERNEL result, never an exception: KMM indexed the pieces blindly and panicked on `tesdt`.
 */
export function parseKernelVersion(kernel: string): KernelResult<KernelVersion> {
  const raw = kernel.trim();
  if (raw === '') return failure('INVALID_KERNEL', 'invalid kernel version "": the kernel version is empty');
  const normalized = normalizeKernel(raw);
  const components = normalized.split(COMPONENT_SEPARATOR);
  const [x, y, z] = components;
  if (x === undefined || y === undefined || z === undefined) {
    return failure(
      'INVALID_KERNEL',
      `invalid kernel version "${raw}": expected at least three components (major.minor.patch), got ${components.length}`,
    );
  }
  const empty = [x, y, z].findIndex((component) => component === '');
  if (empty !== -1) {
    return failure(
      'INVALID_KERNEL',
      `invalid kernel version "${raw}": component ${empty + 1} of major.minor.patch is empty`,
    );
  }
  return { ok: true, data: { raw, normalized, components, x, y, z, xyz: `${x}.${y}.${z}` } };
}
