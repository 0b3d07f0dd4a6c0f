import { ReleaseError } from './errors.ts';
import { describe } from './payload.ts';

/** Written by the Driver Toolkit's last Dockerfile step; the authoritative kernel of a release (labels may be empty). */
export const DRIVER_TOOLKIT_RELEASE_PATH = 'etc/driver-toolkit-release.json';

export interface DriverToolkitRelease {
  readonly kernelVersion: string;
  /** Null when the DTK has no real-time kernel (empty, or the bare `+rt` some aarch64 builds write). */
  readonly rtKernelVersion: string | null;
  /** Set when RT_KERNEL_VERSION holds something that is not a kernel release; only fatal if RT is asked for. */
  readonly rtKernelProblem: string | undefined;
  readonly rhelVersion: string;
}

// A kernel release as `uname -r` prints it: at least major.minor.patch, then anything but whitespace
// (`-427.13.1.el9_4.x86_64`, `+rt`, `.rt14.344.el9_2.x86_64`).
const KERNEL_RELEASE = /^\d+\.\d+\.\d+[^\s]*$/;
const RHEL_VERSION = /^\d+(\.\d+)*$/;

/**
 * Parses `etc/driver-toolkit-release.json`. KERNEL_VERSION and RHEL_VERSION are required (as KMM required them);
 * keys beyond the three the Dockerfile writes are ignored. `where` names the image for error messages.
 */
export function parseDriverToolkitRelease(text: string, where: string): DriverToolkitRelease {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new ReleaseError(
      'DTK_FIELDS_INVALID',
      `${DRIVER_TOOLKIT_RELEASE_PATH} in ${where} is not valid JSON: ${(err as Error).message}`,
      { cause: err },
    );
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new ReleaseError(
      'DTK_FIELDS_INVALID',
      `${DRIVER_TOOLKIT_RELEASE_PATH} in ${where} is ${describe(doc)}, expected an object with KERNEL_VERSION, ` +
        `RT_KERNEL_VERSION and RHEL_VERSION`,
    );
  }
  const fields = doc as Record<string, unknown>;
  const problems: string[] = [];
  const kernelVersion = requiredField(fields, 'KERNEL_VERSION', KERNEL_RELEASE, 'a kernel release', problems);
  const rhelVersion = requiredField(
    fields,
    'RHEL_VERSION',
    RHEL_VERSION,
    'a RHEL version such as 9.4',
    problems,
  );
  if (kernelVersion === undefined || rhelVersion === undefined) {
    throw new ReleaseError(
      'DTK_FIELDS_INVALID',
      `${DRIVER_TOOLKIT_RELEASE_PATH} in ${where}: ${problems.join('; ')}`,
    );
  }
  const rt = fields['RT_KERNEL_VERSION'];
  let rtKernelVersion: string | null = null;
  let rtKernelProblem: string | undefined;
  if (typeof rt === 'string' && rt.trim() !== '' && rt.trim() !== '+rt') {
    if (KERNEL_RELEASE.test(rt.trim())) rtKernelVersion = rt.trim();
    else rtKernelProblem = `RT_KERNEL_VERSION is ${describe(rt)}, not a kernel release`;
  } else if (rt !== undefined && rt !== null && typeof rt !== 'string') {
    rtKernelProblem = `RT_KERNEL_VERSION is ${describe(rt)}, expected a string`;
  }
  return { kernelVersion, rtKernelVersion, rtKernelProblem, rhelVersion };
}

/** The kernel the upgraded nodes will boot: the real-time one when asked for, which must then exist. */
export function targetKernel(
  dtk: DriverToolkitRelease,
  useRTKernel: boolean,
  architecture: string,
  where: string,
): string {
  if (!useRTKernel) return dtk.kernelVersion;
  if (dtk.rtKernelProblem !== undefined) {
    throw new ReleaseError(
      'DTK_FIELDS_INVALID',
      `${DRIVER_TOOLKIT_RELEASE_PATH} in ${where}: ${dtk.rtKernelProblem}`,
    );
  }
  if (dtk.rtKernelVersion === null) {
    throw new ReleaseError(
      'NO_RT_KERNEL',
      `this release has no real-time kernel for ${architecture} (RT_KERNEL_VERSION is empty in ${where}); ` +
        `set useRTKernel to false to check against the standard kernel ${dtk.kernelVersion}`,
    );
  }
  return dtk.rtKernelVersion;
}

function requiredField(
  fields: Record<string, unknown>,
  key: string,
  pattern: RegExp,
  expected: string,
  problems: string[],
): string | undefined {
  const value = fields[key];
  if (typeof value !== 'string' || value.trim() === '') {
    problems.push(`${key} is ${describe(value)}, expected ${expected}`);
    return undefined;
  }
  if (!pattern.test(value.trim())) {
    problems.push(`${key} is ${describe(value)}, not ${expected}`);
    return undefined;
  }
  return value.trim();
}
