import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

import {
  buildReleaseFixture,
  type ReleaseFixture,
  type ReleaseFixtureOptions,
} from '../../src/fixtures/release.ts';
import { RegistryClient } from '../../src/image/registry/client.ts';
import { RegistryCredentials } from '../../src/image/registry/credentials.ts';
import { ReleaseCache } from '../../src/release/cache.ts';
import { ReleaseError } from '../../src/release/errors.ts';
import { resolveRelease } from '../../src/release/resolve.ts';
import { runCli } from '../support/cli.ts';
import { pushLayout, startRegistry, type TestRegistry } from '../support/registry.ts';

const execFileAsync = promisify(execFile);

/**
 * Release resolution against a real Distribution registry (TLS with a suite CA and htpasswd auth), with release
 * and driver-toolkit images built by the release fixture in the real payload layout and pushed by skopeo with their
 * digests kept. Most cases go through the CLI, as a user would run it.
 */
describe('release resolution against a real registry', function () {
  this.timeout(180_000);
  let registry: TestRegistry;
  let tmp: string;
  let count = 0;

  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'kmm-release-e2e-'));
    registry = await startRegistry('tls-auth');
  });
  after(async () => {
    await registry?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  /** Builds a release and pushes it (and, unless omitted, its driver-toolkit) under `prefix` in the registry. */
  async function publish(
    name: string,
    options: Omit<ReleaseFixtureOptions, 'dir'> = {},
    prefix = `${registry.host}/ocp`,
  ): Promise<{ fixture: ReleaseFixture; releaseRef: string }> {
    const fixture = await buildReleaseFixture({
      dir: join(tmp, `layout-${count++}`),
      componentRepository: `${prefix}/ocp-v4.0-art-dev`,
      ...options,
    });
    const path = prefix.slice(prefix.indexOf('/') + 1);
    const registryPath = prefix.startsWith(registry.host) ? path : `mirror/${path}`;
    await pushLayout(fixture.releaseLayoutReference, `${registryPath}/ocp-release:${name}`, registry);
    if (options.omitDriverToolkitImage !== true) {
      await pushLayout(
        fixture.driverToolkitLayoutReference,
        `${registryPath}/ocp-v4.0-art-dev:dtk-${name}`,
        registry,
      );
    }
    return { fixture, releaseRef: `${prefix}/ocp-release:${name}` };
  }

  function flags(): string[] {
    return ['--ca-file', registry.certificates!.caFile, '--auth-file', registry.authFile];
  }

  async function releaseJson(
    argv: string[],
  ): Promise<{ code: number; out: Record<string, unknown>; stderr: string }> {
    const run = await runCli(['release', ...argv, ...flags(), '-o', 'json']);
    return {
      code: run.code,
      out: JSON.parse(run.stdout || '{}') as Record<string, unknown>,
      stderr: run.stderr,
    };
  }

  it('resolves a single-arch release (tag and digest) to its kernel', async () => {
    const { fixture, releaseRef } = await publish('4.19.0-x86_64');
    const expected = {
      releaseImage: releaseRef,
      digest: fixture.releaseDigest,
      version: '4.19.0',
      kernelVersion: '5.14.0-427.13.1.el9_4.x86_64',
      rtKernelVersion: '5.14.0-427.13.1.el9_4.x86_64+rt',
      rhelVersion: '9.4',
      dtkImage: fixture.driverToolkitReference,
      architecture: 'amd64',
    };
    const byTag = await releaseJson([releaseRef]);
    expect(byTag.code, byTag.stderr).to.equal(0);
    expect(byTag.out).to.deep.equal(expected);
    const byDigest = `${registry.host}/ocp/ocp-release@${fixture.releaseDigest}`;
    const pinned = await releaseJson([byDigest, '--rt']);
    expect(pinned.code, pinned.stderr).to.equal(0);
    expect(pinned.out).to.deep.equal({ ...expected, releaseImage: byDigest });
  });

  it('prints a readable summary in text mode', async () => {
    const { releaseRef } = await publish('4.19.1-x86_64', { version: '4.19.1' });
    const run = await runCli(['release', releaseRef, '--rt', ...flags()]);
    expect(run.code, run.stderr).to.equal(0);
    expect(run.stdout).to.match(/^Release +.*ocp-release:4\.19\.1-x86_64$/m);
    expect(run.stdout).to.match(/^Target kernel +5\.14\.0-427\.13\.1\.el9_4\.x86_64\+rt \(real-time\)$/m);
  });

  it('picks the architecture at the release and driver-toolkit level of a -multi release', async () => {
    const { fixture, releaseRef } = await publish('4.19.0-multi', { architectures: ['amd64', 'arm64'] });
    const arm = await releaseJson([releaseRef, '--arch', 'arm64']);
    expect(arm.code, arm.stderr).to.equal(0);
    expect(arm.out).to.include({
      digest: fixture.releaseDigest,
      architecture: 'arm64',
      kernelVersion: '5.14.0-427.13.1.el9_4.aarch64',
      rtKernelVersion: null,
    });
    const amd = await releaseJson([releaseRef]);
    expect(amd.out).to.include({ architecture: 'amd64', kernelVersion: '5.14.0-427.13.1.el9_4.x86_64' });
    const rt = await releaseJson([releaseRef, '--arch', 'arm64', '--rt']);
    expect(rt.code).to.equal(1);
    expect(rt.out).to.deep.equal({ releaseImage: releaseRef, error: rt.out['error'] });
    expect(rt.out['error']).to.match(/^this release has no real-time kernel for arm64/);
    const s390x = await releaseJson([releaseRef, '--arch', 's390x']);
    expect(s390x.code).to.equal(1);
    expect(s390x.out['error']).to.match(/s390x/);
  });

  /**
   * Publishes a release in Docker media types, as real payloads are: skopeo converts the fixture's images to
   * schema2 (a manifest list when multi-arch) on push, which changes the driver-toolkit's digest, so the payload is
   * built again naming the converted driver-toolkit by its new digest.
   */
  async function publishDocker(
    name: string,
    architectures: string[],
  ): Promise<{ releaseRef: string; dtkRef: string }> {
    const repository = `${registry.host}/ocp/ocp-v4.0-art-dev`;
    const first = await buildReleaseFixture({ dir: join(tmp, `layout-${count++}`), architectures });
    await pushLayout(first.driverToolkitLayoutReference, `ocp/ocp-v4.0-art-dev:dtk-${name}`, registry, {
      format: 'v2s2',
    });
    const client = new RegistryClient({
      ...registry.clientOptions,
      credentials: RegistryCredentials.fromDockerConfig(registry.dockerConfig, 'test registry'),
    });
    let dtkRef: string;
    try {
      const dtk = await client.resolve(`${repository}:dtk-${name}`, {
        platform: { os: 'linux', architecture: 'amd64' },
      });
      expect(dtk.manifest.mediaType).to.equal('application/vnd.docker.distribution.manifest.v2+json');
      dtkRef = `${repository}@${dtk.indexDigest ?? dtk.digest}`;
    } finally {
      await client.close();
    }
    const payload = await buildReleaseFixture({
      dir: join(tmp, `layout-${count++}`),
      architectures,
      imageReferences: (is) => ({
        ...is,
        spec: {
          ...is.spec,
          tags: is.spec.tags.map((t) =>
            t.name === 'driver-toolkit' ? { ...t, from: { ...t.from, name: dtkRef } } : t,
          ),
        },
      }),
      omitDriverToolkitImage: true,
    });
    await pushLayout(payload.releaseLayoutReference, `ocp/ocp-release:${name}`, registry, { format: 'v2s2' });
    return { releaseRef: `${registry.host}/ocp/ocp-release:${name}`, dtkRef };
  }

  it('resolves Docker schema2 releases: single-arch, and a -multi manifest list at both levels', async () => {
    const single = await publishDocker('4.19.3-x86_64', ['amd64']);
    const amd = await releaseJson([single.releaseRef]);
    expect(amd.code, amd.stderr).to.equal(0);
    expect(amd.out).to.include({
      dtkImage: single.dtkRef,
      kernelVersion: '5.14.0-427.13.1.el9_4.x86_64',
      architecture: 'amd64',
    });
    const multi = await publishDocker('4.19.3-multi', ['amd64', 'arm64']);
    const arm = await releaseJson([multi.releaseRef, '--arch', 'aarch64']);
    expect(arm.code, arm.stderr).to.equal(0);
    expect(arm.out).to.include({
      dtkImage: multi.dtkRef,
      kernelVersion: '5.14.0-427.13.1.el9_4.aarch64',
      architecture: 'arm64',
    });
    // What the registry serves, read by an independent client: a Docker manifest list.
    const { stdout } = await execFileAsync('skopeo', [
      'inspect',
      '--raw',
      '--cert-dir',
      registry.certificates!.dir,
      '--authfile',
      registry.authFile,
      `docker://${multi.releaseRef}`,
    ]);
    expect((JSON.parse(stdout) as { mediaType?: string }).mediaType).to.equal(
      'application/vnd.docker.distribution.manifest.list.v2+json',
    );
  });

  it('follows mirror rules when the payload points at a host that does not exist', async () => {
    const { fixture } = await publish('4.19.0-x86_64', {}, 'quay.invalid/openshift-release-dev');
    const releaseRef = `quay.invalid/openshift-release-dev/ocp-release@${fixture.releaseDigest}`;
    const mirrored = await releaseJson([
      releaseRef,
      '--mirror',
      `quay.invalid/openshift-release-dev=${registry.host}/mirror/openshift-release-dev`,
    ]);
    expect(mirrored.code, mirrored.stderr).to.equal(0);
    expect(mirrored.out).to.include({
      releaseImage: releaseRef,
      dtkImage: `quay.invalid/openshift-release-dev/ocp-v4.0-art-dev@${fixture.driverToolkitDigest}`,
      kernelVersion: '5.14.0-427.13.1.el9_4.x86_64',
    });
    // Release mirrored, driver-toolkit not: the error names the image and what to do.
    const partly = await releaseJson([
      releaseRef,
      '--mirror',
      `quay.invalid/openshift-release-dev/ocp-release=${registry.host}/mirror/openshift-release-dev/ocp-release`,
    ]);
    expect(partly.code).to.equal(1);
    expect(partly.out['error']).to.match(
      /driver-toolkit image quay\.invalid\/openshift-release-dev\/ocp-v4\.0-art-dev@sha256:/,
    );
  });

  it('a second resolution of the same digest costs no request; of the same tag, one manifest request', async () => {
    const { fixture, releaseRef } = await publish('4.19.2-x86_64', { version: '4.19.2' });
    const client = new RegistryClient({
      ...registry.clientOptions,
      credentials: RegistryCredentials.fromDockerConfig(registry.dockerConfig, 'test registry'),
    });
    try {
      const cache = new ReleaseCache();
      const byDigest = `${registry.host}/ocp/ocp-release@${fixture.releaseDigest}`;
      await resolveRelease({ source: client, cache }, { releaseImage: byDigest });
      const first = client.stats()[registry.host]!;
      expect(first.bytesReceived).to.be.greaterThan(fixture.architectures[0]!.sizes.releaseLastLayer);
      await resolveRelease({ source: client, cache }, { releaseImage: byDigest, useRTKernel: true });
      expect(client.stats()[registry.host]).to.deep.equal(first);
      await resolveRelease({ source: client, cache }, { releaseImage: releaseRef });
      const afterTag = client.stats()[registry.host]!;
      expect(afterTag.requests - first.requests).to.equal(1);
      expect(afterTag.bytesReceived - first.bytesReceived).to.be.lessThan(2048);
    } finally {
      await client.close();
    }
  });

  describe('failures: exit 1 with {releaseImage, error}', () => {
    const cases: [string, Omit<ReleaseFixtureOptions, 'dir'>, RegExp][] = [
      [
        'not-a-release',
        { imageReferences: () => null, decoyInBaseLayer: true },
        /is not an OpenShift release image: its last layer has no release-manifests\/image-references/,
      ],
      [
        'wrong-kind',
        { imageReferences: (is) => ({ ...is, apiVersion: 'v1' }) },
        /release-manifests\/image-references is kind "ImageStream" of apiVersion "v1"/,
      ],
      [
        'no-dtk-tag',
        {
          imageReferences: (is) => ({
            ...is,
            spec: { ...is.spec, tags: is.spec.tags.filter((t) => t.name !== 'driver-toolkit') },
          }),
        },
        /lists no 'driver-toolkit' image among its 3 images/,
      ],
      [
        'dtk-missing',
        { omitDriverToolkitImage: true },
        /the driver-toolkit image .*@sha256:[0-9a-f]{64} named by release .* cannot be read/,
      ],
      [
        'dtk-file-missing',
        { driverToolkit: () => ({ fileText: null }) },
        /has no \/etc\/driver-toolkit-release.json in any of its 3 layers/,
      ],
      [
        'dtk-json-malformed',
        { driverToolkit: () => ({ fileText: '{"KERNEL_VERSION": ' }) },
        /etc\/driver-toolkit-release.json in driver-toolkit image .* is not valid JSON/,
      ],
      [
        'dtk-fields-empty',
        { driverToolkit: () => ({ kernelVersion: '', rhelVersion: '' }) },
        /KERNEL_VERSION is empty, expected a kernel release; RHEL_VERSION is empty/,
      ],
    ];
    for (const [name, options, message] of cases) {
      it(name, async () => {
        const { releaseRef } = await publish(name, options);
        const run = await releaseJson([releaseRef]);
        expect(run.code, run.stderr).to.equal(1);
        expect(Object.keys(run.out)).to.deep.equal(['releaseImage', 'error']);
        expect(run.out['releaseImage']).to.equal(releaseRef);
        expect(run.out['error']).to.match(message);
      });
    }

    it('a release tag that does not exist', async () => {
      const run = await releaseJson([`${registry.host}/ocp/ocp-release:0.0.0-none`]);
      expect(run.code).to.equal(1);
      expect(run.out['error']).to.match(/release image .*ocp-release:0\.0\.0-none/);
    });

    it('no credentials for an authenticated registry is a definite answer, not a retry', async () => {
      const { releaseRef } = await publish('4.19.3-x86_64', { version: '4.19.3' });
      const client = new RegistryClient(registry.clientOptions);
      try {
        const err = await resolveRelease({ source: client }, { releaseImage: releaseRef }).then(
          () => expect.fail('resolved without credentials'),
          (e: unknown) => e as ReleaseError,
        );
        expect(err).to.be.instanceOf(ReleaseError);
        expect(err.code).to.equal('RELEASE_IMAGE_UNAVAILABLE');
        expect(err.retryable).to.equal(false);
      } finally {
        await client.close();
      }
    });
  });
});

describe('release resolution from a plain-HTTP registry (registryTLS.insecure)', function () {
  this.timeout(180_000);
  let registry: TestRegistry;
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'kmm-release-http-'));
    registry = await startRegistry('http');
  });
  after(async () => {
    await registry?.stop();
    await rm(tmp, { recursive: true, force: true });
  });

  it('reads the layers over HTTP too, not only the manifests', async () => {
    const fixture = await buildReleaseFixture({
      dir: join(tmp, 'layout'),
      componentRepository: `${registry.host}/ocp/ocp-v4.0-art-dev`,
    });
    await pushLayout(fixture.releaseLayoutReference, 'ocp/ocp-release:4.19.0-x86_64', registry);
    await pushLayout(fixture.driverToolkitLayoutReference, 'ocp/ocp-v4.0-art-dev:dtk', registry);
    const run = await runCli([
      'release',
      `${registry.host}/ocp/ocp-release:4.19.0-x86_64`,
      '--insecure',
      '-o',
      'json',
    ]);
    expect(run.stderr).to.equal('');
    expect(run.code).to.equal(0);
    const out = JSON.parse(run.stdout) as { kernelVersion: string };
    expect(out.kernelVersion).to.equal(fixture.architectures[0]?.driverToolkit.kernelVersion);
  });
});
