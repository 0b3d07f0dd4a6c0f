import type { Logger } from 'pino';
import { KMM_GROUP } from '../src/api/meta.ts';
import { MODULE_PLURAL } from '../src/api/module.ts';
import { PREFLIGHT_PLURAL } from '../src/api/preflight.ts';
import type { AdmissionReviewRequest, AdmissionVerdict } from './admission-review.ts';
import type { AdmissionDecider } from './app.ts';
import { findActivePreflights } from './active-preflights.ts';
import { CacheNotSyncedError, syncedModules, syncedPreflights, type AdmissionCache } from './cache.ts';
import type { ReviewOutcome } from './metrics.ts';
import { reviewModule, type ModulePolicy } from './module-rules.ts';
import { reviewPreflight } from './preflight-rules.ts';
import { allow, deny } from './verdicts.ts';

export const FailureModes = ['deny', 'allow'] as const;
/** What an admission gets when the webhook cannot evaluate it (an unexpected error, caches not loaded yet). */
export type FailureMode = (typeof FailureModes)[number];

export interface AdmissionPolicy {
  readonly modulePolicy: ModulePolicy;
  readonly failureMode: FailureMode;
  /** A preflight created less than this long ago is active whatever its status. */
  readonly activeWindowMs: number;
}

export interface RuleDeciderOptions {
  readonly cache: AdmissionCache;
  readonly policy: AdmissionPolicy;
  readonly logger: Logger;
  readonly now?: () => Date;
}

/**
 * Routes each review to the rules of its resource and turns anything the rules could not decide into a verdict
 * under the failure mode. Logs one line per decision with identifiers only: never object contents.
 */
export class RuleDecider implements AdmissionDecider {
  readonly #cache: AdmissionCache;
  readonly #policy: AdmissionPolicy;
  readonly #logger: Logger;
  readonly #now: () => Date;

  constructor(options: RuleDeciderOptions) {
    this.#cache = options.cache;
    this.#policy = options.policy;
    this.#logger = options.logger;
    this.#now = options.now ?? (() => new Date());
  }

  decide(review: AdmissionReviewRequest): { verdict: AdmissionVerdict; outcome: ReviewOutcome } {
    const request = review.request;
    const identity = {
      uid: request.uid,
      resource: request.resource.resource,
      operation: request.operation,
      namespace: request.namespace,
      name: request.name,
      dryRun: request.dryRun,
    };
    let verdict: AdmissionVerdict;
    let outcome: ReviewOutcome;
    try {
      verdict = this.#evaluate(review);
      outcome = verdict.allowed
        ? verdict.warnings.length > 0
          ? 'allowed_with_warnings'
          : 'allowed'
        : 'denied';
    } catch (err) {
      verdict = this.#failureVerdict(request.resource.resource, err);
      outcome = 'error';
      this.#logger.error(
        {
          ...identity,
          err: {
            name: (err as Error).name,
            code: (err as { code?: unknown }).code,
            message: (err as Error).message,
            stack: (err as Error).stack,
          },
          failureMode: this.#policy.failureMode,
        },
        'admission rules failed',
      );
      return { verdict, outcome };
    }
    this.#logger.info(
      { ...identity, allowed: verdict.allowed, warnings: verdict.warnings.length },
      'admission decided',
    );
    return { verdict, outcome };
  }

  #evaluate(review: AdmissionReviewRequest): AdmissionVerdict {
    const request = review.request;
    // Status writes and other subresources are the runner's business; rules judge the main resource only.
    if (request.resource.group !== KMM_GROUP || (request.subResource ?? '') !== '') return allow();
    switch (request.resource.resource) {
      case PREFLIGHT_PLURAL:
        return reviewPreflight(request, {
          preflights: () => syncedPreflights(this.#cache),
          modules: () => syncedModules(this.#cache),
        });
      case MODULE_PLURAL:
        return reviewModule(request, {
          policy: this.#policy.modulePolicy,
          activePreflights: () =>
            findActivePreflights(syncedPreflights(this.#cache), this.#now(), this.#policy.activeWindowMs),
        });
      default:
        return allow();
    }
  }

  #failureVerdict(resource: string, err: unknown): AdmissionVerdict {
    const notSynced = err instanceof CacheNotSyncedError;
    const errorName = err instanceof Error ? err.name : typeof err;
    if (this.#policy.failureMode === 'allow') {
      const why = notSynced ? 'caches not loaded yet' : `internal error ${errorName}, see the webhook log`;
      return allow([`${resource} change admitted unchecked (--failure-mode=allow): ${why}`]);
    }
    const why = notSynced
      ? `${err.message}; retry shortly`
      : `an internal error occurred (${errorName}; see the webhook log)`;
    return deny({
      code: notSynced ? 503 : 500,
      reason: notSynced ? 'ServiceUnavailable' : 'InternalError',
      message: `kmm-preflight webhook could not check this ${resource} change, denied (--failure-mode=deny): ${why}`,
    });
  }
}
