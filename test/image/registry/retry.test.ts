import { expect } from 'chai';

import {
  backoffDelay,
  DEFAULT_RETRY_POLICY,
  isRetryableStatus,
  isTransientError,
  parseRetryAfter,
} from '../../../src/image/registry/retry.ts';

describe('registry: retry policy', () => {
  const policy = { ...DEFAULT_RETRY_POLICY, baseDelayMs: 100, maxDelayMs: 1000 };

  it('doubles the delay per failure up to the cap, with half of it jittered', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, policy, () => 0))).to.deep.equal([
      50, 100, 200, 400, 500, 500,
    ]);
    expect([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, policy, () => 1))).to.deep.equal([
      100, 200, 400, 800, 1000, 1000,
    ]);
    expect(backoffDelay(3, policy, () => 0.5)).to.equal(300);
  });

  it('reads Retry-After as seconds or as an HTTP date', () => {
    const now = Date.parse('2026-01-01T00:00:00Z');
    expect(parseRetryAfter('7', now)).to.equal(7000);
    expect(parseRetryAfter('Thu, 01 Jan 2026 00:00:03 GMT', now)).to.equal(3000);
    expect(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now)).to.equal(0);
    expect(parseRetryAfter(undefined, now)).to.be.undefined;
    expect(parseRetryAfter('soon', now)).to.be.undefined;
  });

  it('retries throttling and server faults, not refusals or 501', () => {
    expect([429, 500, 502, 503, 504, 408].every(isRetryableStatus)).to.be.true;
    expect([200, 301, 400, 401, 403, 404, 501].some(isRetryableStatus)).to.be.false;
  });

  it('treats resets, refusals and undici timeouts as transient, also when wrapped', () => {
    expect(isTransientError(Object.assign(new Error('x'), { code: 'ECONNRESET' }))).to.be.true;
    expect(
      isTransientError(
        new Error('fetch failed', { cause: Object.assign(new Error('y'), { code: 'UND_ERR_BODY_TIMEOUT' }) }),
      ),
    ).to.be.true;
    expect(isTransientError(Object.assign(new Error('x'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }))).to.be
      .false;
    expect(isTransientError(new Error('plain'))).to.be.false;
  });
});
