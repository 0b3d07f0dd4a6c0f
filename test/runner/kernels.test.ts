import { expect } from 'chai';
import type { PreflightValidationOCPSpec } from '../../src/api/preflight.ts';
import { ReleaseError } from '../../src/release/errors.ts';
import {
  KernelCache,
  conditionReason,
  type ResolvedKernel,
  type ReleaseResolver,
} from '../../src/runner/kernels.ts';

const K1 = '5.14.0-427.13.1.el9_4.x86_64';
const K2 = '5.14.0-500.el9.x86_64';
const DIGEST1 = `sha256:${'1'.repeat(64)}`;
const DIGEST2 = `sha256:${'2'.repeat(64)}`;
const TAG_SPEC: PreflightValidationOCPSpec = { releaseImage: 'registry.example/ocp/release:4.19' };
const PINNED_SPEC: PreflightValidationOCPSpec = { releaseImage: `registry.example/ocp/release@${DIGEST1}` };
const RECHECK_MS = 60_000;

const kernelOf = (targetKernel: string, releaseDigest: string): ResolvedKernel => ({
  state: 'resolved',
  targetKernel,
  kernelVersion: targetKernel,
  releaseDigest,
});

/** A resolver whose answers the test gives one call at a time, on a clock the test moves. */
function harness() {
  const clock = { nowMs: 1_000_000 };
  const calls: { answer: (kernel: ResolvedKernel) => void; fail: (err: unknown) => void }[] = [];
  const resolve: ReleaseResolver = () =>
    new Promise((answer, fail) => {
      calls.push({ answer, fail });
    });
  const settled: string[] = [];
  const cache = new KernelCache({
    resolve,
    backoff: { baseMs: 100, maxMs: 10_000, jitter: 0 },
    recheckIntervalMs: RECHECK_MS,
    now: () => clock.nowMs,
  });
  cache.onSettled((name) => settled.push(name));
  /** The answer reaches the cache after the promise callbacks run. */
  const flush = () => new Promise((r) => setImmediate(r));
  return { clock, calls, settled, cache, flush };
}

describe('runner: KernelCache', () => {
  it('a failure is KernelResolved False with its reason, retried with backoff; success after failure resolves', async () => {
    const t = harness();
    expect(t.cache.stateFor(TAG_SPEC, 'pf').kernel).to.deep.equal({ state: 'pending' });
    expect(t.calls).to.have.length(1);
    t.calls[0]?.fail(new ReleaseError('REGISTRY_UNAVAILABLE', 'registry.example: connection refused'));
    await t.flush();
    expect(t.settled, 'the waiting resource is told').to.deep.equal(['pf']);

    const failed = t.cache.stateFor(TAG_SPEC, 'pf');
    expect(failed.kernel).to.deep.equal({
      state: 'failed',
      reason: 'RegistryUnavailable',
      message: 'registry.example: connection refused',
      retrying: true,
    });
    expect(failed.nextCheckInMs, 'first retry after the base delay').to.equal(100);
    t.clock.nowMs += 99;
    t.cache.stateFor(TAG_SPEC, 'pf');
    expect(t.calls, 'not before it is due').to.have.length(1);

    t.clock.nowMs += 1;
    const retrying = t.cache.stateFor(TAG_SPEC, 'pf');
    expect(t.calls, 'retried when due').to.have.length(2);
    expect(retrying.kernel.state, 'the failure stays shown while the retry runs').to.equal('failed');
    expect(retrying.nextCheckInMs, 'the retry settles by itself').to.equal(undefined);
    t.calls[1]?.fail(new ReleaseError('REGISTRY_UNAVAILABLE', 'still refused'));
    await t.flush();
    expect(t.cache.stateFor(TAG_SPEC, 'pf').nextCheckInMs, 'the delay doubles').to.equal(200);

    t.clock.nowMs += 200;
    t.cache.stateFor(TAG_SPEC, 'pf');
    t.calls[2]?.answer(kernelOf(K1, DIGEST1));
    await t.flush();
    const resolved = t.cache.stateFor(TAG_SPEC, 'pf');
    expect(resolved.kernel).to.deep.equal(kernelOf(K1, DIGEST1));
    expect(resolved.nextCheckInMs, 'a tag is checked again on the interval').to.equal(RECHECK_MS);
  });

  it('a definite failure is retried too, but no faster than after three transient ones', async () => {
    const t = harness();
    t.cache.stateFor(TAG_SPEC, 'pf');
    t.calls[0]?.fail(new ReleaseError('NO_DTK_TAG', 'the payload has no driver-toolkit tag'));
    await t.flush();
    const failed = t.cache.stateFor(TAG_SPEC, 'pf');
    expect(failed.kernel).to.include({ state: 'failed', reason: 'NoDriverToolkitTag' });
    expect(failed.nextCheckInMs).to.equal(800);
  });

  it('a tag that moved gives the new kernel; the old one stays in force while the tag is checked', async () => {
    const t = harness();
    t.cache.stateFor(TAG_SPEC, 'pf');
    t.calls[0]?.answer(kernelOf(K1, DIGEST1));
    await t.flush();
    t.clock.nowMs += RECHECK_MS - 1;
    expect(t.cache.stateFor(TAG_SPEC, 'pf')).to.deep.equal({
      kernel: kernelOf(K1, DIGEST1),
      nextCheckInMs: 1,
    });
    expect(t.calls).to.have.length(1);

    t.clock.nowMs += 1;
    t.settled.length = 0;
    expect(t.cache.stateFor(TAG_SPEC, 'pf')).to.deep.equal({ kernel: kernelOf(K1, DIGEST1) });
    expect(t.cache.stateFor(TAG_SPEC, 'other').kernel, 'another resource naming the tag').to.deep.equal(
      kernelOf(K1, DIGEST1),
    );
    expect(t.calls, 'one check for every resource naming the tag').to.have.length(2);
    t.calls[1]?.answer(kernelOf(K2, DIGEST2));
    await t.flush();
    expect(t.settled).to.have.members(['pf', 'other']);
    expect(t.cache.stateFor(TAG_SPEC, 'pf').kernel).to.deep.equal(kernelOf(K2, DIGEST2));
  });

  it('a failed check of a tag keeps the kernel it named last and is tried again with backoff', async () => {
    const t = harness();
    t.cache.stateFor(TAG_SPEC, 'pf');
    t.calls[0]?.answer(kernelOf(K1, DIGEST1));
    await t.flush();
    t.clock.nowMs += RECHECK_MS;
    t.cache.stateFor(TAG_SPEC, 'pf');
    t.calls[1]?.fail(new ReleaseError('REGISTRY_UNAVAILABLE', 'timeout'));
    await t.flush();
    expect(t.cache.stateFor(TAG_SPEC, 'pf')).to.deep.equal({
      kernel: kernelOf(K1, DIGEST1),
      nextCheckInMs: 100,
    });
    t.clock.nowMs += 100;
    t.cache.stateFor(TAG_SPEC, 'pf');
    expect(t.calls).to.have.length(3);
  });

  it('a release pinned by digest is resolved once and never again, also when seeded from a status', async () => {
    const t = harness();
    t.cache.stateFor(PINNED_SPEC, 'pf');
    t.calls[0]?.answer(kernelOf(K1, DIGEST1));
    await t.flush();
    t.clock.nowMs += 100 * RECHECK_MS;
    expect(t.cache.stateFor(PINNED_SPEC, 'pf')).to.deep.equal({ kernel: kernelOf(K1, DIGEST1) });
    expect(t.calls).to.have.length(1);

    const restarted = harness();
    restarted.cache.remember(PINNED_SPEC, kernelOf(K1, DIGEST1));
    expect(restarted.cache.stateFor(PINNED_SPEC, 'pf')).to.deep.equal({ kernel: kernelOf(K1, DIGEST1) });
    expect(restarted.calls, 'the recorded kernel is used as it is').to.have.length(0);
  });

  it('a tag seeded from a status is used at once and checked again in the background', async () => {
    const t = harness();
    t.cache.remember(TAG_SPEC, kernelOf(K1, DIGEST1));
    expect(t.cache.stateFor(TAG_SPEC, 'pf').kernel).to.deep.equal(kernelOf(K1, DIGEST1));
    expect(t.calls, 'it may have moved while no runner watched').to.have.length(1);
    t.cache.remember(TAG_SPEC, kernelOf(K1, DIGEST1));
    t.calls[0]?.answer(kernelOf(K2, DIGEST2));
    await t.flush();
    t.cache.remember(TAG_SPEC, kernelOf(K1, DIGEST1));
    expect(t.cache.stateFor(TAG_SPEC, 'pf').kernel, 'a stale status does not undo it').to.deep.equal(
      kernelOf(K2, DIGEST2),
    );
    expect(t.cache.known(TAG_SPEC)).to.deep.equal(kernelOf(K2, DIGEST2));
  });

  it('the real-time kernel of a release is a different entry', () => {
    const t = harness();
    t.cache.stateFor(TAG_SPEC, 'pf');
    t.cache.stateFor({ ...TAG_SPEC, useRTKernel: true }, 'rt');
    expect(t.calls).to.have.length(2);
    expect(t.cache.known({ ...TAG_SPEC, useRTKernel: true })).to.deep.equal({ state: 'pending' });
  });
});

describe('runner: condition reasons of release failures', () => {
  const CRD_PATTERN = /^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/;
  const cases: [unknown, string][] = [
    ['ReleaseImageUnavailable', 'ReleaseImageUnavailable'],
    ['Registry:Unavailable', 'Registry:Unavailable'],
    ['Unavailable:', 'Unavailable'],
    ['Unavailable,', 'Unavailable'],
    ['Unavailable,:,', 'Unavailable'],
    ['Release image unavailable!', 'Releaseimageunavailable'],
    ['404NotFound', 'NotFound'],
    ['_x', 'x'],
    [':', 'ResolutionFailed'],
    ['', 'ResolutionFailed'],
    ['1234', 'ResolutionFailed'],
    [undefined, 'ResolutionFailed'],
    [42, 'ResolutionFailed'],
    [`A${'b'.repeat(2000)}:`, `A${'b'.repeat(1023)}`],
  ];
  for (const [input, expected] of cases) {
    it(`${JSON.stringify(input)?.slice(0, 40) ?? 'undefined'} → ${expected.slice(0, 40)}`, () => {
      const reason = conditionReason(input);
      expect(reason).to.equal(expected);
      expect(reason).to.match(CRD_PATTERN);
      expect(reason.length).to.be.at.most(1024);
    });
  }

  it('a resolver error with a malformed reason still gives a valid KernelResolved reason', async () => {
    const t = harness();
    t.cache.stateFor(TAG_SPEC, 'pf');
    t.calls[0]?.fail(Object.assign(new Error('odd'), { reason: 'Odd:', retryable: false }));
    await t.flush();
    expect(t.cache.stateFor(TAG_SPEC, 'pf').kernel).to.include({ state: 'failed', reason: 'Odd' });
  });
});
