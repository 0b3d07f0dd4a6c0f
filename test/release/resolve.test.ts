import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  ART_REPOSITORY,
  buildReleaseFixture,
  type ReleaseFixture,
  type ReleaseFixtureOptions,
} from '../../src/fixtures/release.ts';
import type { ImageSource } from '../../src/image/source.ts';
import { MappedSource, RELEASE_REPO } from './mapped-source.ts';
import { ReleaseCache } from '../../src/release/cache.ts';
import { ReleaseError } from '../../src/release/errors.ts';
import { resolveRelease, type ReleaseRequest } from '../../src/release/resolve.ts';

describe('resolveRelease (OCI layouts behind a registry double)', function () {
  let tmp: string;
  let count = 0;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'kmm-release-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  async function setup(
    options: Omit<ReleaseFixtureOptions, 'dir'> = {},
  ): Promise<{ fixture: ReleaseFixture; source: MappedSource }> {
    const fixture = await buildReleaseFixture({ dir: join(tmp, `layout-${count++}`), ...options });
    const source = new MappedSource();
    source.publish(fixture);
    return { fixture, source };
  }

  async function failure(
    source: ImageSource,
    request: ReleaseRequest,
    cache?: ReleaseCache,
  ): Promise<ReleaseError> {
    const err = await resolveRelease({ source, ...(cache ? { cache } : {}) }, request).then(
      () => expect.fail('resolved'),
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(ReleaseError);
    return err as ReleaseError;
  }

  it('resolves a single-arch release to its driver-toolkit kernel, reading only the needed layers', async () => {
    const { fixture, source } = await setup({ decoyInBaseLayer: true });
    const arch = fixture.architectures[0]!;
    const resolved = await resolveRelease({ source }, { releaseImage: `${RELEASE_REPO}:4.19.0-x86_64` });
    expect(resolved).to.deep.equal({
      releaseImage: `${RELEASE_REPO}:4.19.0-x86_64`,
      digest: fixture.releaseDigest,
      version: '4.19.0',
      kernelVersion: '5.14.0-427.13.1.el9_4.x86_64',
      rtKernelVersion: '5.14.0-427.13.1.el9_4.x86_64+rt',
      rhelVersion: '9.4',
      dtkImage: fixture.driverToolkitReference,
      architecture: 'amd64',
      targetKernel: '5.14.0-427.13.1.el9_4.x86_64',
      useRTKernel: false,
    });
    expect(source.blobBytes).to.equal(arch.sizes.releaseLastLayer + arch.sizes.driverToolkitTopLayer);
    expect(source.blobsOpened).to.have.length(2);
  });

  it('selects the real-time kernel when asked', async () => {
    const { source } = await setup();
    const resolved = await resolveRelease(
      { source },
      { releaseImage: `${RELEASE_REPO}:4.19.0-x86_64`, useRTKernel: true },
    );
    expect(resolved.targetKernel).to.equal('5.14.0-427.13.1.el9_4.x86_64+rt');
  });

  it('picks the target architecture at the release and the driver-toolkit level of a -multi release', async () => {
    const { fixture, source } = await setup({ architectures: ['amd64', 'arm64'] });
    const arm = await resolveRelease(
      { source },
      { releaseImage: `${RELEASE_REPO}:4.19.0-multi`, platform: { os: 'linux', architecture: 'arm64' } },
    );
    expect(arm.digest).to.equal(fixture.releaseDigest);
    expect(arm.architecture).to.equal('arm64');
    expect(arm.kernelVersion).to.equal('5.14.0-427.13.1.el9_4.aarch64');
    expect(arm.rtKernelVersion).to.equal(null);
    const amd = await resolveRelease({ source }, { releaseImage: `${RELEASE_REPO}:4.19.0-multi` });
    expect(amd.kernelVersion).to.equal('5.14.0-427.13.1.el9_4.x86_64');
    const noRt = await failure(source, {
      releaseImage: `${RELEASE_REPO}:4.19.0-multi`,
      platform: { os: 'linux', architecture: 'arm64' },
      useRTKernel: true,
    });
    expect(noRt.code).to.equal('NO_RT_KERNEL');
    expect(noRt.message).to.match(/^this release has no real-time kernel for arm64/);
    const s390 = await failure(source, {
      releaseImage: `${RELEASE_REPO}:4.19.0-multi`,
      platform: { os: 'linux', architecture: 's390x' },
    });
    expect(s390.code).to.equal('RELEASE_IMAGE_UNAVAILABLE');
  });

  it('resolves releases in Docker media types, as real payloads are: schema2 and a -multi manifest list', async () => {
    const single = await setup({ format: 'docker' });
    const resolved = await resolveRelease(
      { source: single.source },
      { releaseImage: `${RELEASE_REPO}:4.19.0-x86_64` },
    );
    expect(resolved).to.include({
      digest: single.fixture.releaseDigest,
      kernelVersion: '5.14.0-427.13.1.el9_4.x86_64',
      architecture: 'amd64',
    });
    const arch = single.fixture.architectures[0]!;
    expect(single.source.blobBytes).to.equal(arch.sizes.releaseLastLayer + arch.sizes.driverToolkitTopLayer);
    const multi = await setup({ format: 'docker', architectures: ['amd64', 'arm64'] });
    const arm = await resolveRelease(
      { source: multi.source },
      { releaseImage: `${RELEASE_REPO}:4.19.0-multi`, platform: { os: 'linux', architecture: 'arm64' } },
    );
    expect(arm).to.include({
      digest: multi.fixture.releaseDigest,
      kernelVersion: '5.14.0-427.13.1.el9_4.aarch64',
      architecture: 'arm64',
    });
  });

  it('caches by release digest: by digest nothing is asked again, by tag only the tag', async () => {
    const { fixture, source } = await setup();
    const cache = new ReleaseCache(4);
    const byDigest = `${RELEASE_REPO}@${fixture.releaseDigest}`;
    const first = await resolveRelease({ source, cache }, { releaseImage: byDigest });
    const resolvedBefore = source.resolved.length;
    const bytesBefore = source.blobBytes;
    const again = await resolveRelease({ source, cache }, { releaseImage: byDigest, useRTKernel: true });
    expect(source.resolved.length).to.equal(resolvedBefore);
    expect(source.blobBytes).to.equal(bytesBefore);
    expect(again.targetKernel).to.equal(first.rtKernelVersion);
    await resolveRelease({ source, cache }, { releaseImage: `${RELEASE_REPO}:4.19.0-x86_64` });
    expect(source.resolved.slice(resolvedBefore)).to.deep.equal([`${RELEASE_REPO}:4.19.0-x86_64`]);
    expect(source.blobBytes).to.equal(bytesBefore);
  });

  it('shares one resolution between concurrent requests for the same release', async () => {
    const { source } = await setup();
    const cache = new ReleaseCache();
    const results = await Promise.all(
      [1, 2, 3].map(() =>
        resolveRelease({ source, cache }, { releaseImage: `${RELEASE_REPO}:4.19.0-x86_64` }),
      ),
    );
    expect(new Set(results.map((r) => r.kernelVersion)).size).to.equal(1);
    expect(source.blobsOpened).to.have.length(2);
  });

  it('forgets the least recently used release beyond its bound', async () => {
    const cache = new ReleaseCache(1);
    const a = await setup({ version: '4.19.1' });
    const b = await setup({ version: '4.19.2' });
    await resolveRelease({ source: a.source, cache }, { releaseImage: `${RELEASE_REPO}:4.19.1-x86_64` });
    await resolveRelease({ source: b.source, cache }, { releaseImage: `${RELEASE_REPO}:4.19.2-x86_64` });
    expect(cache.size).to.equal(1);
    const opened = a.source.blobsOpened.length;
    await resolveRelease({ source: a.source, cache }, { releaseImage: `${RELEASE_REPO}:4.19.1-x86_64` });
    expect(a.source.blobsOpened.length).to.equal(opened + 2);
  });

  it('reads component images through mirrors when the payload points at a host that does not exist', async () => {
    const fixture = await buildReleaseFixture({
      dir: join(tmp, `layout-${count++}`),
      componentRepository: 'quay.invalid/openshift-release-dev/ocp-v4.0-art-dev',
    });
    const source = new MappedSource();
    source.publish(fixture, 'mirror.local:5000/ocp/release', 'mirror.local:5000/ocp/art');
    const resolved = await resolveRelease(
      { source },
      {
        releaseImage: `quay.invalid/openshift-release-dev/ocp-release@${fixture.releaseDigest}`,
        mirrors: [
          {
            source: 'quay.invalid/openshift-release-dev/ocp-release',
            mirrors: ['mirror.local:5000/ocp/release'],
            pullType: 'any',
          },
          {
            source: 'quay.invalid/openshift-release-dev/ocp-v4.0-art-dev',
            mirrors: ['mirror.local:5000/ocp/art'],
            pullType: 'digest',
          },
        ],
      },
    );
    expect(resolved.dtkImage).to.equal(fixture.driverToolkitReference);
    expect(resolved.kernelVersion).to.equal('5.14.0-427.13.1.el9_4.x86_64');
    expect(source.resolved).to.deep.equal([
      `mirror.local:5000/ocp/release@${fixture.releaseDigest}`,
      `mirror.local:5000/ocp/art@${fixture.driverToolkitDigest}`,
    ]);
  });

  describe('failures, each with a code, a condition reason and a message to act on', () => {
    it('NOT_A_RELEASE when the last layer has no release manifests (even if a lower layer does)', async () => {
      const { source } = await setup({ imageReferences: () => null, decoyInBaseLayer: true });
      const err = await failure(source, { releaseImage: `${RELEASE_REPO}:4.19.0-x86_64` });
      expect(err.code).to.equal('NOT_A_RELEASE');
      expect(err.reason).to.equal('NotAReleaseImage');
      expect(err.retryable).to.equal(false);
      expect(err.message).to.match(
        /is not an OpenShift release image: its last layer has no release-manifests\/image-references/,
      );
    });

    it('INVALID_RELEASE_MANIFESTS for an image-references of the wrong kind', async () => {
      const { source } = await setup({ imageReferences: (is) => ({ ...is, kind: 'ImageStreamList' }) });
      const err = await failure(source, { releaseImage: `${RELEASE_REPO}:4.19.0-x86_64` });
      expect(err.code).to.equal('INVALID_RELEASE_MANIFESTS');
      expect(err.message).to.match(/kind "ImageStreamList"/);
    });

    it('NO_DTK_TAG when the payload has no driver-toolkit', async () => {
      const { source } = await setup({
        imageReferences: (is) => ({
          ...is,
          spec: { ...is.spec, tags: is.spec.tags.filter((t) => t.name !== 'driver-toolkit') },
        }),
      });
      const err = await failure(source, { releaseImage: `${RELEASE_REPO}:4.19.0-x86_64` });
      expect(err.code).to.equal('NO_DTK_TAG');
      expect(err.reason).to.equal('NoDriverToolkitTag');
    });

    it('DTK_IMAGE_MISSING when the driver-toolkit image cannot be found, with the mirror hint', async () => {
      const { fixture, source } = await setup({ omitDriverToolkitImage: true });
      source.map.delete(`${ART_REPOSITORY}@${fixture.driverToolkitDigest}`);
      const err = await failure(source, { releaseImage: `${RELEASE_REPO}:4.19.0-x86_64` });
      expect(err.code).to.equal('DTK_IMAGE_MISSING');
      expect(err.retryable).to.equal(false);
      expect(err.message).to.contain(fixture.driverToolkitReference);
      expect(err.message).to.match(/mirror rule/);
    });

    it('DTK_FILE_MISSING when no layer has the JSON file', async () => {
      const { source } = await setup({ driverToolkit: () => ({ fileText: null }) });
      const err = await failure(source, { releaseImage: `${RELEASE_REPO}:4.19.0-x86_64` });
      expect(err.code).to.equal('DTK_FILE_MISSING');
      expect(err.message).to.match(/has no \/etc\/driver-toolkit-release.json in any of its 3 layers/);
    });

    it('DTK_FIELDS_INVALID for malformed JSON or empty fields', async () => {
      const malformed = await setup({ driverToolkit: () => ({ fileText: '{"KERNEL_VERSION": "5.14.0-1' }) });
      expect(
        (await failure(malformed.source, { releaseImage: `${RELEASE_REPO}:4.19.0-x86_64` })).code,
      ).to.equal('DTK_FIELDS_INVALID');
      const empty = await setup({ driverToolkit: () => ({ kernelVersion: '' }) });
      const err = await failure(empty.source, { releaseImage: `${RELEASE_REPO}:4.19.0-x86_64` });
      expect(err.code).to.equal('DTK_FIELDS_INVALID');
      expect(err.message).to.match(/KERNEL_VERSION is empty/);
    });

    it('remembers a failure the content causes, so it is not downloaded again', async () => {
      const { fixture, source } = await setup({ driverToolkit: () => ({ fileText: null }) });
      const cache = new ReleaseCache();
      const ref = `${RELEASE_REPO}@${fixture.releaseDigest}`;
      await failure(source, { releaseImage: ref }, cache);
      const opened = source.blobsOpened.length;
      const again = await failure(source, { releaseImage: ref }, cache);
      expect(again.code).to.equal('DTK_FILE_MISSING');
      expect(source.blobsOpened.length).to.equal(opened);
    });

    it('RELEASE_IMAGE_UNAVAILABLE for a release that does not exist, INVALID_RELEASE_REFERENCE for one that does not parse', async () => {
      const { source } = await setup();
      const missing = await failure(source, { releaseImage: `${RELEASE_REPO}:9.9.9-x86_64` });
      expect(missing.code).to.equal('RELEASE_IMAGE_UNAVAILABLE');
      expect(missing.message).to.contain(`${RELEASE_REPO}:9.9.9-x86_64`);
      const invalid = await failure(source, { releaseImage: 'Quay.io/UPPER/case::x' });
      expect(invalid.code).to.equal('INVALID_RELEASE_REFERENCE');
      expect(invalid.reason).to.equal('InvalidReleaseImage');
    });

    it('REGISTRY_UNAVAILABLE, retryable, when the registry cannot be reached, and not cached', async () => {
      const { fixture, source } = await setup();
      const cache = new ReleaseCache();
      source.unreachable.add(`${ART_REPOSITORY}@${fixture.driverToolkitDigest}`);
      const err = await failure(source, { releaseImage: `${RELEASE_REPO}:4.19.0-x86_64` }, cache);
      expect(err.code).to.equal('REGISTRY_UNAVAILABLE');
      expect(err.retryable).to.equal(true);
      source.unreachable.clear();
      const resolved = await resolveRelease(
        { source, cache },
        { releaseImage: `${RELEASE_REPO}:4.19.0-x86_64` },
      );
      expect(resolved.kernelVersion).to.equal('5.14.0-427.13.1.el9_4.x86_64');
    });
  });
});

describe('ReleaseCache', () => {
  it('refuses a bound that is not a positive integer', () => {
    expect(() => new ReleaseCache(0)).to.throw(RangeError, /positive integer/);
    expect(() => new ReleaseCache(1.5)).to.throw(RangeError);
  });
});
