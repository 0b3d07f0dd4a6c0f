import { expect } from 'chai';
import { KubeApiError } from '../../src/platform/kube/client.ts';
import {
  decideLease,
  formatMicroTime,
  LeaderElector,
  type Clock,
  type LeaseRecord,
  type LeaseSpec,
  type LeaseStore,
} from '../../src/platform/kube/leader-election.ts';
import { createLogger } from '../../src/platform/logger.ts';

const logger = createLogger({ level: 'silent' });
const config = { leaseDurationSeconds: 15, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 };

/** One Lease with resourceVersion checks, as the API server keeps it. */
class MemoryLeaseStore implements LeaseStore {
  record: LeaseRecord | undefined;
  #version = 0;
  failing = false;
  get(): Promise<LeaseRecord | undefined> {
    if (this.failing) return Promise.reject(new KubeApiError(0, 'connection refused'));
    return Promise.resolve(this.record);
  }
  create(spec: LeaseSpec): Promise<LeaseRecord> {
    if (this.failing) return Promise.reject(new KubeApiError(0, 'connection refused'));
    if (this.record !== undefined) return Promise.reject(new KubeApiError(409, 'exists', 'AlreadyExists'));
    this.record = { spec, resourceVersion: String(++this.#version) };
    return Promise.resolve(this.record);
  }
  update(resourceVersion: string, spec: LeaseSpec): Promise<LeaseRecord> {
    if (this.failing) return Promise.reject(new KubeApiError(0, 'connection refused'));
    if (this.record?.resourceVersion !== resourceVersion) {
      return Promise.reject(new KubeApiError(409, 'conflict', 'Conflict'));
    }
    this.record = { spec, resourceVersion: String(++this.#version) };
    return Promise.resolve(this.record);
  }
}

class FakeClock implements Clock {
  time = Date.parse('2026-01-01T00:00:00Z');
  now(): number {
    return this.time;
  }
  sleep(ms: number): Promise<void> {
    this.time += ms;
    return new Promise((resolve) => setImmediate(resolve));
  }
}

describe('leader election', () => {
  it('writes MicroTime with exactly six fractional digits (the API server rejects three)', () => {
    expect(formatMicroTime(Date.parse('2026-01-02T03:04:05.678Z'))).to.equal('2026-01-02T03:04:05.678000Z');
  });

  it('decideLease: create when absent, renew our own, wait for a live holder, take over an expired or released one', () => {
    const t = 1_000_000;
    expect(decideLease(undefined, 'a', t, t, 15)).to.deep.include({ action: 'create' });
    const held: LeaseRecord = {
      resourceVersion: '1',
      spec: { holderIdentity: 'b', leaseDurationSeconds: 15, leaseTransitions: 2 },
    };
    const own = decideLease({ ...held, spec: { ...held.spec, holderIdentity: 'a' } }, 'a', t, t, 15);
    expect(own).to.deep.include({ action: 'update', acquired: false });
    expect(decideLease(held, 'a', t + 14_999, t, 15)).to.deep.equal({
      action: 'wait',
      holder: 'b',
      expiresAtMs: t + 15_000,
    });
    const takeover = decideLease(held, 'a', t + 15_000, t, 15);
    expect(takeover).to.deep.include({ action: 'update', acquired: true });
    expect(takeover.action === 'update' && takeover.spec).to.include({
      holderIdentity: 'a',
      leaseTransitions: 3,
    });
    const released = decideLease({ ...held, spec: { ...held.spec, holderIdentity: '' } }, 'a', t, t, 15);
    expect(released).to.deep.include({ action: 'update', acquired: true });
  });

  it('one of two candidates leads; the other takes over only after the lease expires on its own clock', async () => {
    const store = new MemoryLeaseStore();
    const clock = new FakeClock();
    const a = new LeaderElector(store, { identity: 'a', ...config }, clock, logger);
    const b = new LeaderElector(store, { identity: 'b', ...config }, clock, logger);
    expect(await a.tryAcquireOrRenew()).to.equal(true);
    expect(await b.tryAcquireOrRenew()).to.equal(false);
    clock.time += 14_000;
    expect(await b.tryAcquireOrRenew(), 'not yet expired').to.equal(false);
    expect(await a.tryAcquireOrRenew(), 'a renews').to.equal(true);
    clock.time += 14_000;
    expect(await b.tryAcquireOrRenew(), "the renewal reset b's observation").to.equal(false);
    clock.time += 15_000;
    expect(await b.tryAcquireOrRenew(), 'a stopped renewing: b takes over').to.equal(true);
    expect(store.record?.spec).to.include({ holderIdentity: 'b', leaseTransitions: 1 });
    expect(await a.tryAcquireOrRenew(), 'a sees b as holder').to.equal(false);
  });

  it('run() leads, steps down when renewals fail past the renew deadline, and release() hands over at once', async () => {
    const store = new MemoryLeaseStore();
    const clock = new FakeClock();
    const a = new LeaderElector(store, { identity: 'a', ...config }, clock, logger);
    const events: string[] = [];
    const stop = new AbortController();
    const running = a.run(stop.signal, {
      onStartedLeading: () => {
        events.push('started');
        store.failing = true;
      },
      onStoppedLeading: () => events.push('stopped'),
    });
    await running;
    expect(events).to.deep.equal(['started', 'stopped']);
    expect(a.leading).to.equal(false);

    store.failing = false;
    const b = new LeaderElector(store, { identity: 'b', ...config }, clock, logger);
    const c = new LeaderElector(store, { identity: 'c', ...config }, clock, logger);
    clock.time += 20_000;
    expect(await b.tryAcquireOrRenew()).to.equal(false);
    clock.time += 16_000;
    expect(await b.tryAcquireOrRenew()).to.equal(true);
    const bStop = new AbortController();
    const bRun = b.run(bStop.signal, {
      onStartedLeading: () => bStop.abort(),
      onStoppedLeading: () => undefined,
    });
    await bRun;
    await b.release();
    expect(store.record?.spec.holderIdentity).to.equal('');
    expect(await c.tryAcquireOrRenew(), 'a released Lease is taken without waiting').to.equal(true);
  });
});
