import type { Logger } from 'pino';
import { ContentType, isConflict, isNotFound, type KubeClient } from './client.ts';
import { errorMessage } from '../errors.ts';

/**
 * Leader election on a coordination.k8s.io/v1 Lease, as client-go does it: the holder renews every retry period;
 * another candidate takes over when it has seen no renewal for the lease duration (measured on its own clock, so
 * clock skew between nodes does not matter); every write is guarded by resourceVersion, so a lost race is a 409,
 * never two leaders. A leader that cannot renew within the renew deadline steps down.
 */

export interface LeaseSpec {
  readonly holderIdentity?: string;
  readonly leaseDurationSeconds?: number;
  readonly acquireTime?: string;
  readonly renewTime?: string;
  readonly leaseTransitions?: number;
}

export interface LeaseRecord {
  readonly spec: LeaseSpec;
  readonly resourceVersion: string;
}

/**
 * Lease times are metav1.MicroTime: the API server accepts exactly six fractional digits, and a JavaScript Date
 * has three (a plain toISOString() is answered with 400).
 */
export function formatMicroTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export type LeaseDecision =
  | { readonly action: 'create'; readonly spec: LeaseSpec }
  | { readonly action: 'update'; readonly spec: LeaseSpec; readonly acquired: boolean }
  | { readonly action: 'wait'; readonly holder: string; readonly expiresAtMs: number };

/**
 * What a candidate should do given the Lease as read. `observedAtMs` is when this candidate first saw the current
 * record (same resourceVersion); expiry counts from there on the local clock.
 */
export function decideLease(
  current: LeaseRecord | undefined,
  identity: string,
  nowMs: number,
  observedAtMs: number,
  leaseDurationSeconds: number,
): LeaseDecision {
  const now = formatMicroTime(nowMs);
  if (current === undefined) {
    return {
      action: 'create',
      spec: {
        holderIdentity: identity,
        leaseDurationSeconds,
        acquireTime: now,
        renewTime: now,
        leaseTransitions: 0,
      },
    };
  }
  const holder = current.spec.holderIdentity ?? '';
  if (holder === identity) {
    return {
      action: 'update',
      acquired: false,
      spec: { ...current.spec, leaseDurationSeconds, renewTime: now },
    };
  }
  const duration = (current.spec.leaseDurationSeconds ?? leaseDurationSeconds) * 1000;
  const expiresAtMs = observedAtMs + duration;
  if (holder !== '' && nowMs < expiresAtMs) return { action: 'wait', holder, expiresAtMs };
  return {
    action: 'update',
    acquired: true,
    spec: {
      holderIdentity: identity,
      leaseDurationSeconds,
      acquireTime: now,
      renewTime: now,
      leaseTransitions: (current.spec.leaseTransitions ?? 0) + (holder === '' ? 0 : 1),
    },
  };
}

export interface LeaseStore {
  get(): Promise<LeaseRecord | undefined>;
  /** Rejects with a conflict when the Lease already exists. */
  create(spec: LeaseSpec): Promise<LeaseRecord>;
  /** Rejects with a conflict when the resourceVersion is stale. */
  update(resourceVersion: string, spec: LeaseSpec): Promise<LeaseRecord>;
}

export interface Clock {
  now(): number;
  /** Resolves after `ms`, or early when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      if (signal.aborted) {
        resolve();
        return;
      }
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    }),
};

export interface LeaderElectionConfig {
  readonly identity: string;
  readonly leaseDurationSeconds: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
}

export interface LeaderCallbacks {
  onStartedLeading(): void;
  /** Called once when leadership is lost (not on a release at shutdown). */
  onStoppedLeading(): void;
}

export class LeaderElector {
  readonly #store: LeaseStore;
  readonly #config: LeaderElectionConfig;
  readonly #clock: Clock;
  readonly #logger: Logger;
  #observed: { resourceVersion: string; atMs: number } | undefined;
  #record: LeaseRecord | undefined;
  #leading = false;

  constructor(store: LeaseStore, config: LeaderElectionConfig, clock: Clock, logger: Logger) {
    this.#store = store;
    this.#config = config;
    this.#clock = clock;
    this.#logger = logger;
  }

  get leading(): boolean {
    return this.#leading;
  }

  /**
   * Campaigns until leading, then renews until `signal` aborts or leadership is lost. Resolves when it stops; the
   * Lease is still held after an abort (call release()).
   */
  async run(signal: AbortSignal, callbacks: LeaderCallbacks): Promise<void> {
    while (!signal.aborted && !this.#leading) {
      if (await this.tryAcquireOrRenew()) {
        this.#leading = true;
        this.#logger.info({ identity: this.#config.identity }, 'became leader');
        callbacks.onStartedLeading();
        break;
      }
      await this.#clock.sleep(this.#config.retryPeriodMs, signal);
    }
    let lastRenew = this.#clock.now();
    while (!signal.aborted && this.#leading) {
      await this.#clock.sleep(this.#config.retryPeriodMs, signal);
      if (signal.aborted) break;
      if (await this.tryAcquireOrRenew()) {
        lastRenew = this.#clock.now();
      } else if (this.#clock.now() - lastRenew >= this.#config.renewDeadlineMs || !this.#holdsRecord()) {
        this.#leading = false;
        this.#logger.error({ identity: this.#config.identity }, 'lost leadership');
        callbacks.onStoppedLeading();
      }
    }
  }

  /** One round: read the Lease and create, renew, take over or wait. True when this candidate holds it now. */
  async tryAcquireOrRenew(): Promise<boolean> {
    try {
      const current = await this.#store.get();
      const now = this.#clock.now();
      if (current !== undefined && current.resourceVersion !== this.#observed?.resourceVersion) {
        this.#observed = { resourceVersion: current.resourceVersion, atMs: now };
      }
      this.#record = current;
      const decision = decideLease(
        current,
        this.#config.identity,
        now,
        this.#observed?.atMs ?? now,
        this.#config.leaseDurationSeconds,
      );
      switch (decision.action) {
        case 'wait':
          return false;
        case 'create':
          this.#record = await this.#store.create(decision.spec);
          break;
        case 'update':
          if (current === undefined) return false;
          this.#record = await this.#store.update(current.resourceVersion, decision.spec);
          if (decision.acquired) this.#logger.info({ identity: this.#config.identity }, 'acquired the Lease');
          break;
      }
      this.#observed = { resourceVersion: this.#record.resourceVersion, atMs: this.#clock.now() };
      return true;
    } catch (err) {
      if (!isConflict(err)) {
        this.#logger.warn({ err: errorMessage(err) }, 'Lease round failed');
      }
      return false;
    }
  }

  /** Gives the Lease up so a standby takes over at once instead of after the lease duration. */
  async release(): Promise<void> {
    if (!this.#leading || this.#record === undefined) return;
    this.#leading = false;
    try {
      await this.#store.update(this.#record.resourceVersion, {
        ...this.#record.spec,
        holderIdentity: '',
        leaseDurationSeconds: 1,
        renewTime: formatMicroTime(this.#clock.now()),
      });
      this.#logger.info({ identity: this.#config.identity }, 'released the Lease');
    } catch (err) {
      this.#logger.warn({ err: errorMessage(err) }, 'could not release the Lease');
    }
  }

  #holdsRecord(): boolean {
    const holder = this.#record?.spec.holderIdentity;
    return holder === undefined || holder === this.#config.identity;
  }
}

interface LeaseObject {
  metadata: { resourceVersion: string };
  spec?: LeaseSpec;
}

/** The Lease `namespace/name` through the API server. */
export function kubeLeaseStore(client: KubeClient, namespace: string, name: string): LeaseStore {
  const collection = `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`;
  const toRecord = (lease: LeaseObject): LeaseRecord => ({
    spec: lease.spec ?? {},
    resourceVersion: lease.metadata.resourceVersion,
  });
  return {
    async get() {
      try {
        return toRecord(await client.request<LeaseObject>('GET', `${collection}/${name}`));
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    },
    async create(spec) {
      const body = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name, namespace },
        spec,
      };
      return toRecord(await client.request<LeaseObject>('POST', collection, { body }));
    },
    async update(resourceVersion, spec) {
      const body = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name, namespace, resourceVersion },
        spec,
      };
      return toRecord(
        await client.request<LeaseObject>('PUT', `${collection}/${name}`, {
          body,
          contentType: ContentType.json,
        }),
      );
    },
  };
}
