import type { Module } from '../src/api/module.ts';
import type { PreflightValidationOCP } from '../src/api/preflight.ts';
import { CodedError } from '../src/platform/errors.ts';

/**
 * What the admission rules read about the cluster: an in-memory view kept current by watches, so an admission never
 * waits on the API server. Implementations must return quickly and never throw for a synced cache.
 */
export interface AdmissionCache {
  /** True once the initial list of every watched resource has been loaded. */
  synced(): boolean;
  listPreflights(): readonly PreflightValidationOCP[];
  listModules(): readonly Module[];
}

/** The cache has not finished its first list; rules that need it cannot answer yet. */
export class CacheNotSyncedError extends CodedError<'ERR_CACHE_NOT_SYNCED'> {
  constructor() {
    super(
      'ERR_CACHE_NOT_SYNCED',
      'the webhook has not yet loaded PreflightValidationOCP and Module objects from the API server',
    );
  }
}

/** The cache's lists, or CacheNotSyncedError while it is still loading. */
export function syncedPreflights(cache: AdmissionCache): readonly PreflightValidationOCP[] {
  if (!cache.synced()) throw new CacheNotSyncedError();
  return cache.listPreflights();
}

export function syncedModules(cache: AdmissionCache): readonly Module[] {
  if (!cache.synced()) throw new CacheNotSyncedError();
  return cache.listModules();
}
