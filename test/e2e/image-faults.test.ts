import { expect } from 'chai';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { buildKernelModule } from '../../src/fixtures/kmod.ts';
import { buildLayer } from '../../src/image/oci-layout/tar-layer.ts';
import { writeImage } from '../../src/image/oci-layout/writer.ts';
import { createImageSource, type ImageSourceOptions } from '../../src/image/sources.ts';
import type { ImageVerdict } from '../../src/image/stage/types.ts';
import { verifyModuleImage } from '../../src/image/stage/verify.ts';
import {
  pushLayout,
  startFaultProxy,
  startRegistry,
  type Fault,
  type TestRegistry,
} from '../support/registry.ts';

const K = '5.14.0-284.25.1.el9_2.x86_64';
const DIR = `opt/lib/modules/${K}`;

/**
 * The Image stage behind a fault-injecting proxy in front of a real registry: it retries within the client's bounds
 * and never reports a module verified that it did not read in full and verified.
 */
describe('e2e: image stage under registry faults', function () {
  this.timeout(300_000);
  let registry: TestRegistry;
  let workDir: string;
  /** The module layer's blob path; it also holds 3 MiB of random bytes so faults can hit it mid-stream. */
  let moduleBlob: RegExp;
  const manifest = /\/manifests\/v1$/;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'kmm-image-faults-'));
    const layer = await buildLayer([
      { type: 'file', name: 'usr/share/filler.bin', content: randomBytes(3 << 20) },
      {
        type: 'file',
        name: `${DIR}/kmm_ci_a.ko`,
        content: await buildKernelModule({ name: 'kmm_ci_a', kernel: K }),
      },
      { type: 'file', name: `${DIR}/modules.dep`, content: 'kmm_ci_a.ko:\n' },
    ]);
    moduleBlob = new RegExp(`/blobs/sha256:${createHash('sha256').update(layer.data).digest('hex')}$`);
    await writeImage(workDir, { tag: 'v1', layers: [layer] });
    registry = await startRegistry('http');
    await pushLayout(`oci:${workDir}:v1`, 'faults/kmod:v1', registry);
  });

  after(async () => {
    await registry?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  async function verifyThrough(
    faults: Fault[],
    options: ImageSourceOptions = {},
  ): Promise<{ verdict: ImageVerdict; served: Record<string, number> }> {
    const proxy = await startFaultProxy(registry, faults);
    const source = createImageSource({ retry: { baseDelayMs: 20 }, ...options });
    try {
      const verdict = await verifyModuleImage(
        { source },
        {
          reference: `${proxy.host}/faults/kmod:v1`,
          kernel: K,
          modprobe: { moduleName: 'kmm_ci_a' },
          tls: { insecure: true },
        },
      );
      return { verdict, served: { ...proxy.served } };
    } finally {
      await source.close();
      await proxy.close();
    }
  }

  it('verifies after a 500 then 200 on the manifest', async () => {
    const { verdict, served } = await verifyThrough([
      { path: manifest, times: 1, kind: 'status', status: 500 },
    ]);
    expect(served.status).to.equal(1);
    expect(verdict.verified, verdict.reason).to.equal(true);
  });

  it('verifies after a 429 with Retry-After on the module layer', async () => {
    const { verdict, served } = await verifyThrough([
      { path: moduleBlob, times: 1, kind: 'status', status: 429, headers: { 'retry-after': '1' } },
    ]);
    expect(served.status).to.equal(1);
    expect(verdict.verified, verdict.reason).to.equal(true);
  });

  it('verifies when the module layer is reset mid-stream once, or stalls once', async () => {
    const reset = await verifyThrough([{ path: moduleBlob, times: 1, kind: 'reset', afterBytes: 1 << 20 }]);
    expect(reset.served.reset).to.equal(1);
    expect(reset.verdict.verified, reset.verdict.reason).to.equal(true);
    const stall = await verifyThrough([{ path: moduleBlob, times: 1, kind: 'stall', afterBytes: 1 << 20 }], {
      bodyTimeoutMs: 1000,
    });
    expect(stall.served.stall).to.equal(1);
    expect(stall.verdict.verified, stall.verdict.reason).to.equal(true);
  });

  it('reports a layer that keeps breaking as unreachable after N tries, not definite, never verified', async () => {
    const { verdict } = await verifyThrough(
      [{ path: moduleBlob, times: 100, kind: 'reset', afterBytes: 100_000 }],
      {
        retry: { maxAttempts: 3, baseDelayMs: 10 },
      },
    );
    expect(verdict).to.include({ verified: false, definite: false, errorCode: 'UNREACHABLE' });
    expect(verdict.reason).to.match(/^registry unreachable for .*broke off 3 times/);
  });

  it('gives up on a module layer that stalls every time: timed out after N tries, within bounds, never verified', async () => {
    const started = Date.now();
    const { verdict, served } = await verifyThrough(
      [{ path: moduleBlob, times: 100, kind: 'stall', afterBytes: 1 << 20 }],
      { bodyTimeoutMs: 1000, retry: { maxAttempts: 3, baseDelayMs: 10 } },
    );
    const elapsed = Date.now() - started;
    expect(served.stall, 'the first request and two resumptions').to.equal(3);
    expect(verdict).to.include({ verified: false, definite: false, errorCode: 'TIMEOUT', path: null });
    expect(verdict.reason).to.match(
      /^registry timed out for .*: the download broke off 3 times \(last at byte \d+: UND_ERR_BODY_TIMEOUT\)$/,
    );
    // Three silences of about the body timeout each (undici's timers are coarse), never the 30 s default.
    expect(elapsed).to.be.below(30_000);
  });

  it('gives up on a manifest whose body stalls every time, as timed out, never verified', async () => {
    const started = Date.now();
    const { verdict, served } = await verifyThrough(
      [{ path: manifest, times: 100, kind: 'stall', afterBytes: 100 }],
      { bodyTimeoutMs: 1000, retry: { maxAttempts: 3, baseDelayMs: 10 } },
    );
    expect(served.stall).to.equal(3);
    expect(verdict).to.include({ verified: false, definite: false, errorCode: 'TIMEOUT', digest: null });
    expect(verdict.reason).to.match(/^registry timed out for .*broke off 3 times \(UND_ERR_BODY_TIMEOUT\)$/);
    expect(Date.now() - started).to.be.below(30_000);
  });

  it('does not verify a module from a layer whose bytes arrive altered', async () => {
    const { verdict, served } = await verifyThrough([
      { path: moduleBlob, times: 100, kind: 'corrupt', atByte: 2 << 20 },
    ]);
    expect(served.corrupt).to.be.greaterThan(0);
    expect(verdict.verified).to.equal(false);
    expect(verdict.errorCode).to.equal('DIGEST_MISMATCH');
  });
});
