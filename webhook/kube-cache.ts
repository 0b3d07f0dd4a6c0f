import type { Logger } from 'pino';
import { KMM_GROUP, KMM_VERSION } from '../src/api/meta.ts';
import { MODULE_PLURAL, type Module } from '../src/api/module.ts';
import { PREFLIGHT_PLURAL, type PreflightValidationOCP } from '../src/api/preflight.ts';
import type { KubeClient } from '../src/platform/kube/client.ts';
import { Informer } from '../src/platform/kube/informer.ts';
import type { AdmissionCache } from './cache.ts';

export interface KubeAdmissionCacheOptions {
  readonly client: KubeClient;
  readonly logger: Logger;
  /** Full relist with diff this often (default 10 min): recovers anything a watch missed. */
  readonly relistIntervalMs?: number;
  /** A watch silent this long is reopened (default 5 min). */
  readonly idleTimeoutMs?: number;
}

/**
 * The webhook's view of PreflightValidationOCP and Module objects (all namespaces), kept by the platform's
 * self-healing informers. Admissions read only this memory, never the API server.
 */
export class KubeAdmissionCache implements AdmissionCache {
  readonly #preflights: Informer<PreflightValidationOCP>;
  readonly #modules: Informer<Module>;

  constructor(options: KubeAdmissionCacheOptions) {
    const common = {
      client: options.client,
      relistIntervalMs: options.relistIntervalMs ?? 600_000,
      idleTimeoutMs: options.idleTimeoutMs ?? 300_000,
      backoff: { baseMs: 500, maxMs: 30_000, jitter: 0.5 },
    };
    this.#preflights = new Informer<PreflightValidationOCP>({
      ...common,
      resource: { group: KMM_GROUP, version: KMM_VERSION, plural: PREFLIGHT_PLURAL, namespaced: false },
      logger: options.logger.child({ watch: PREFLIGHT_PLURAL }),
    });
    this.#modules = new Informer<Module>({
      ...common,
      resource: { group: KMM_GROUP, version: KMM_VERSION, plural: MODULE_PLURAL, namespaced: true },
      logger: options.logger.child({ watch: MODULE_PLURAL }),
    });
  }

  start(): void {
    this.#preflights.start();
    this.#modules.start();
  }

  stop(): void {
    this.#preflights.stop();
    this.#modules.stop();
  }

  synced(): boolean {
    return this.#preflights.synced && this.#modules.synced;
  }

  listPreflights(): readonly PreflightValidationOCP[] {
    return this.#preflights.list();
  }

  listModules(): readonly Module[] {
    return this.#modules.list();
  }
}
