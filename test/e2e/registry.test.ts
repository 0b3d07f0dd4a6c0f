import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';

import { buildLayer } from '../../src/image/oci-layout/tar-layer.ts';
import { writeImage, writeImageManifest, writeIndex } from '../../src/image/oci-layout/writer.ts';
import { RegistryCredentials } from '../../src/image/registry/credentials.ts';
import { computeDigest } from '../../src/image/registry/digest.ts';
import { MediaType } from '../../src/image/registry/media-types.ts';
import type { Descriptor, PullOptions } from '../../src/image/source.ts';
import { createImageSource, type RoutingImageSource } from '../../src/image/sources.ts';
import {
  pushLayout,
  startFaultProxy,
  startRegistry,
  type RegistryMode,
  type TestRegistry,
} from '../support/registry.ts';
import { readAll, rejection } from '../support/image-assertions.ts';

/**
 * The registry client against Debian's Distribution 2.8 in its three modes, with images pushed by skopeo (an
 * independent writer), and behind a fault proxy that fails on cue.
 */

const amd64 = { os: 'linux', architecture: 'amd64' };

interface Fixture {
  layoutDir: string;
  single: Descriptor;
  singleLayer: Buffer;
  amdImage: Descriptor;
  armImage: Descriptor;
  index: Descriptor;
  bare: Descriptor;
}

/** Writes the suite's images into one OCI layout with project code. */
async function writeFixture(layoutDir: string): Promise<Fixture> {
  const singleLayer = await buildLayer([
    { type: 'directory', name: 'opt/lib/modules/5.14.0/' },
    { type: 'file', name: 'opt/lib/modules/5.14.0/kmm_ci_a.ko', content: randomBytes(4096) },
  ]);
  const single = await writeImage(layoutDir, { tag: 'single', layers: [singleLayer] });
  const amdImage = await writeImageManifest(layoutDir, {
    platform: amd64,
    layers: [await buildLayer([{ type: 'file', name: 'amd64.ko', content: 'a' }])],
  });
  const armImage = await writeImageManifest(layoutDir, {
    platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    layers: [await buildLayer([{ type: 'file', name: 'arm64.ko', content: 'b' }])],
  });
  const attestation = {
    ...(await writeImageManifest(layoutDir, { layers: [] })),
    platform: { os: 'unknown', architecture: 'unknown' },
    annotations: {
      'vnd.docker.reference.type': 'attestation-manifest',
      'vnd.docker.reference.digest': amdImage.digest,
    },
  };
  const index = await writeIndex(layoutDir, { tag: 'multi', manifests: [amdImage, armImage, attestation] });
  const bare = await writeImage(layoutDir, {
    tag: 'bare',
    omitMediaType: true,
    layers: [await buildLayer([{ type: 'file', name: 'bare.ko', content: 'c' }], { compression: 'zstd' })],
  });
  return { layoutDir, single, singleLayer: singleLayer.data, amdImage, armImage, index, bare };
}

const modes: readonly RegistryMode[] = ['http', 'tls', 'tls-auth'];

for (const mode of modes) {
  describe(`registry e2e: Distribution in ${mode} mode`, function () {
    this.timeout(180_000);
    let registry: TestRegistry;
    let fixture: Fixture;
    let source: RoutingImageSource;
    let pull: PullOptions;
    let credentials: RegistryCredentials;

    before(async () => {
      fixture = await writeFixture(await mkdtemp(join(tmpdir(), 'kmm-e2e-layout-')));
      registry = await startRegistry(mode);
      await pushLayout(`oci:${fixture.layoutDir}:single`, 'mods/single:v1', registry);
      await pushLayout(`oci:${fixture.layoutDir}:multi`, 'mods/multi:v1', registry);
      await pushLayout(`oci:${fixture.layoutDir}:multi`, 'mods/multi:v2s2', registry, { format: 'v2s2' });
      await pushLayout(`oci:${fixture.layoutDir}:single`, 'mods/single:v2s2', registry, { format: 'v2s2' });
      await pushLayout(`oci:${fixture.layoutDir}:bare`, 'mods/bare:v1', registry);
      credentials = RegistryCredentials.fromDockerConfig(registry.dockerConfig, 'suite');
      source = createImageSource({ ...registry.clientOptions, retry: { baseDelayMs: 20 } });
      pull = { platform: amd64, ...registry.pullOptions, credentials };
    });
    after(async () => {
      await source?.close();
      await registry?.stop();
      if (fixture) await rm(fixture.layoutDir, { recursive: true, force: true });
    });

    it('resolves a single OCI image to the digest skopeo pushed and streams its layer verified', async () => {
      const image = await source.resolve(`${registry.host}/mods/single:v1`, pull);
      expect(image.digest).to.equal(fixture.single.digest);
      expect(image.manifest.mediaType).to.equal(MediaType.ociManifest);
      const layer = await readAll(await source.openBlob(image, image.manifest.layers[0]!));
      expect(layer.equals(fixture.singleLayer)).to.be.true;
    });

    it('selects the platform from a multi-arch OCI index and skips the attestation', async () => {
      const amd = await source.resolve(`${registry.host}/mods/multi:v1`, pull);
      expect([amd.digest, amd.indexDigest]).to.deep.equal([fixture.amdImage.digest, fixture.index.digest]);
      const arm = await source.resolve(`${registry.host}/mods/multi:v1`, {
        ...pull,
        platform: { os: 'linux', architecture: 'arm64' },
      });
      expect(arm.digest).to.equal(fixture.armImage.digest);
      const none = await rejection(
        source.resolve(`${registry.host}/mods/multi:v1`, {
          ...pull,
          platform: { os: 'linux', architecture: 's390x' },
        }),
      );
      expect(none.code).to.equal('NO_PLATFORM');
      expect(none.message).to.contain('no image for linux/s390x');
    });

    it('reads a Docker manifest list and Docker schema2 manifests', async () => {
      const arm = await source.resolve(`${registry.host}/mods/multi:v2s2`, {
        ...pull,
        platform: { os: 'linux', architecture: 'arm64' },
      });
      expect(arm.manifest.mediaType).to.equal(MediaType.dockerManifest);
      expect(arm.indexDigest).to.be.a('string');
      const single = await source.resolve(`${registry.host}/mods/single:v2s2`, pull);
      expect(single.manifest.mediaType).to.equal(MediaType.dockerManifest);
      expect(single.manifest.layers[0]?.mediaType).to.equal(MediaType.dockerLayerGzip);
      const layer = await readAll(await source.openBlob(single, single.manifest.layers[0]!));
      expect(layer.equals(fixture.singleLayer)).to.be.true;
    });

    it('reads an OCI manifest without mediaType by its Content-Type, and a zstd layer', async () => {
      const image = await source.resolve(`${registry.host}/mods/bare:v1`, pull);
      expect(image.digest).to.equal(fixture.bare.digest);
      expect(image.manifest.mediaType).to.equal(MediaType.ociManifest);
      expect(image.manifest.layers[0]?.mediaType).to.equal(MediaType.ociLayerZstd);
    });

    it('resolves by digest to the same image', async () => {
      const image = await source.resolve(`${registry.host}/mods/single@${fixture.single.digest}`, pull);
      expect(image.digest).to.equal(fixture.single.digest);
    });

    it('answers NOT_FOUND, definitely, for a missing tag and a missing repository', async () => {
      for (const ref of [`${registry.host}/mods/single:nope`, `${registry.host}/mods/absent:v1`]) {
        const err = await rejection(source.resolve(ref, pull));
        expect([err.code, err.definite], ref).to.deep.equal(['NOT_FOUND', true]);
      }
    });

    if (mode === 'tls-auth') {
      it('reports wrong or missing credentials as UNAUTHORIZED without echoing the password', async () => {
        const wrong = RegistryCredentials.fromDockerConfig(
          {
            auths: {
              [registry.host]: { auth: Buffer.from('kmm-tester:not-the-password').toString('base64') },
            },
          },
          'wrong',
        );
        const err = await rejection(
          source.resolve(`${registry.host}/mods/single:v1`, { ...pull, credentials: wrong }),
        );
        expect([err.code, err.definite]).to.deep.equal(['UNAUTHORIZED', true]);
        expect(err.message).to.contain('as kmm-tester').and.not.contain('not-the-password');
        const none = await rejection(
          source.resolve(`${registry.host}/mods/single:v1`, {
            ...pull,
            credentials: RegistryCredentials.none,
          }),
        );
        expect(none.code).to.equal('UNAUTHORIZED');
        expect(none.message).to.contain('requires credentials');
      });
    }

    if (mode !== 'http') {
      it('refuses the registry certificate without the suite CA, and accepts it with insecureSkipTLSVerify', async () => {
        const untrusting = createImageSource({ retry: { maxAttempts: 1 } });
        try {
          const err = await rejection(untrusting.resolve(`${registry.host}/mods/single:v1`, pull));
          expect([err.code, err.definite]).to.deep.equal(['UNREACHABLE', true]);
          expect(err.message).to.contain('trust its CA');
          // `insecure` allows plain HTTP, but a TLS server with an untrusted certificate is still reported as that.
          const insecure = await rejection(
            untrusting.resolve(`${registry.host}/mods/single:v1`, { ...pull, tls: { insecure: true } }),
          );
          expect(insecure.message).to.contain('trust its CA');
          const image = await untrusting.resolve(`${registry.host}/mods/single:v1`, {
            ...pull,
            tls: { insecureSkipTLSVerify: true },
          });
          expect(image.digest).to.equal(fixture.single.digest);
        } finally {
          await untrusting.close();
        }
      });
    } else {
      it('does not speak plain HTTP unless registryTLS.insecure allows it', async () => {
        const err = await rejection(source.resolve(`${registry.host}/mods/single:v1`, { ...pull, tls: {} }));
        expect(err.code).to.equal('UNREACHABLE');
      });
    }
  });
}

describe('registry e2e: faults between the client and a real registry', function () {
  this.timeout(180_000);
  let registry: TestRegistry;
  let layoutDir: string;
  let layer: Buffer;
  /** The big layer's blob path (the config blob must pass untouched). */
  let blobPath: RegExp;
  const pull: PullOptions = { platform: amd64, tls: { insecure: true } };

  before(async () => {
    layoutDir = await mkdtemp(join(tmpdir(), 'kmm-e2e-faults-'));
    // Incompressible, so the blob is big enough to be cut in the middle.
    const built = await buildLayer([{ type: 'file', name: 'big.bin', content: randomBytes(3 << 20) }]);
    layer = built.data;
    blobPath = new RegExp(`/blobs/${computeDigest(layer)}$`);
    await writeImage(layoutDir, { tag: 'v1', layers: [built] });
    registry = await startRegistry('http');
    await pushLayout(`oci:${layoutDir}:v1`, 'faults/img:v1', registry);
  });
  after(async () => {
    await registry?.stop();
    if (layoutDir) await rm(layoutDir, { recursive: true, force: true });
  });

  async function throughProxy<T>(
    faults: Parameters<typeof startFaultProxy>[1],
    body: (host: string, source: RoutingImageSource) => Promise<T>,
    options: Parameters<typeof createImageSource>[0] = {},
  ): Promise<{
    result: T;
    served: Record<string, number>;
    requests: Array<{ path: string; range?: string }>;
  }> {
    const proxy = await startFaultProxy(registry, faults);
    const source = createImageSource({ retry: { baseDelayMs: 20 }, ...options });
    try {
      return {
        result: await body(proxy.host, source),
        served: { ...proxy.served },
        requests: proxy.requests,
      };
    } finally {
      await source.close();
      await proxy.close();
    }
  }

  const manifestPath = /\/manifests\/v1$/;

  it('retries a 500 and then resolves', async () => {
    const { result, served } = await throughProxy(
      [{ path: manifestPath, times: 2, kind: 'status', status: 500 }],
      (host, s) =>
        s.resolve(`${host}/faults/img:v1`, pull).then((image) => ({ image, stats: s.stats()[host] })),
    );
    expect(served.status).to.equal(2);
    expect(result.stats?.retries).to.equal(2);
    expect(result.image.manifest.layers).to.have.length(1);
  });

  it('waits as a 429 Retry-After says, then resolves', async () => {
    const waits: number[] = [];
    const { served } = await throughProxy(
      [{ path: manifestPath, times: 1, kind: 'status', status: 429, headers: { 'retry-after': '1' } }],
      (host, s) => s.resolve(`${host}/faults/img:v1`, pull),
      {
        sleep: (ms) => {
          waits.push(ms);
          return Promise.resolve();
        },
      },
    );
    expect(served.status).to.equal(1);
    expect(waits).to.deep.equal([1000]);
  });

  it('gives up on a registry that keeps failing, within the bound, as not definite', async () => {
    const { result } = await throughProxy(
      [{ path: manifestPath, times: 100, kind: 'status', status: 503 }],
      (host, s) => rejection(s.resolve(`${host}/faults/img:v1`, pull)),
      { retry: { maxAttempts: 3, baseDelayMs: 10 } },
    );
    expect([result.code, result.definite]).to.deep.equal(['UNREACHABLE', false]);
    expect(result.message).to.contain('answered 503 after 3 tries');
  });

  async function pullLayer(host: string, source: RoutingImageSource): Promise<Buffer> {
    const image = await source.resolve(`${host}/faults/img:v1`, pull);
    const descriptor = image.manifest.layers[0]!;
    return readAll(await source.openBlob(image, descriptor));
  }

  it('resumes a blob whose connection is reset mid-stream and returns exactly the verified bytes', async () => {
    const { result, served, requests } = await throughProxy(
      [{ path: blobPath, times: 1, kind: 'reset', afterBytes: 1 << 20 }],
      pullLayer,
    );
    expect(served.reset).to.equal(1);
    expect(result.equals(layer)).to.be.true;
    expect(requests.some((r) => r.range !== undefined)).to.be.true;
  });

  it('resumes a blob that stalls, after the body timeout', async () => {
    const { result, served } = await throughProxy(
      [{ path: blobPath, times: 1, kind: 'stall', afterBytes: 1 << 20 }],
      pullLayer,
      { bodyTimeoutMs: 1000 },
    );
    expect(served.stall).to.equal(1);
    expect(result.equals(layer)).to.be.true;
  });

  it('fails, and never ends cleanly, a blob that keeps breaking or arrives altered', async () => {
    const broken = await throughProxy(
      [{ path: blobPath, times: 100, kind: 'reset', afterBytes: 100_000 }],
      (host, s) => rejection(pullLayer(host, s)),
      { retry: { maxAttempts: 3, baseDelayMs: 10 } },
    );
    expect(broken.result.code).to.equal('UNREACHABLE');
    const altered = await throughProxy(
      [{ path: blobPath, times: 1, kind: 'corrupt', atByte: 2_000_000 }],
      (host, s) => rejection(pullLayer(host, s)),
    );
    expect(altered.result.code).to.equal('DIGEST_MISMATCH');
  });
});
