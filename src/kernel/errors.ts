import { CodedError } from '../platform/errors.ts';

/**
 * Why a Module cannot be resolved for a kernel. Every one of these is a property of the inputs (the Module spec
 * or the kernel string), so asking again gives the same answer: `definite` is always true, and the runner reports
 * these instead of retrying them (KMM retried "kernel mapping not found" every 3 minutes forever).
 */
export type KernelErrorCode =
  | 'INVALID_KERNEL'
  | 'NO_MAPPING'
  | 'INVALID_REGEXP'
  | 'NO_MODULE_LOADER'
  | 'NO_CONTAINER_IMAGE'
  | 'INVALID_IMAGE'
  | 'INVALID_SUBSTITUTION';

export class KernelError extends CodedError<KernelErrorCode> {
  readonly definite = true;
}

/** The outcome of an operation that fails with a KernelError instead of throwing. */
export type KernelResult<T> =
  { readonly ok: true; readonly data: T } | { readonly ok: false; readonly error: KernelError };

export function failure<T>(code: KernelErrorCode, message: string): KernelResult<T> {
  return { ok: false, error: new KernelError(code, message) };
}
