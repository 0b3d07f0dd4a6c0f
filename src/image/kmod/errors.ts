import { CodedError } from '../../platform/errors.ts';

/**
 * Why a file that sits where a kernel module should is not a module the kernel would load. Each code is a definite
 * property of the bytes: reading them again gives the same answer.
 */
export type KmodErrorCode =
  | 'NOT_ELF'
  | 'NOT_RELOCATABLE'
  | 'TRUNCATED'
  | 'NO_MODINFO'
  | 'BAD_SIGNATURE'
  | 'BAD_COMPRESSION'
  | 'BAD_MODULES_DEP'
  | 'BAD_MODULE_SYMVERS';

export class KmodError extends CodedError<KmodErrorCode> {}
