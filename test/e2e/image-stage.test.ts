import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  buildKernelModule,
  createModuleSigningKey,
  EM_AARCH64,
  type FakeModuleOptions,
  type ModuleSigningKey,
} from '../../src/fixtures/kmod.ts';
import { buildReleaseFixture } from '../../src/fixtures/release.ts';
import {
  buildLayer,
  opaqueWhiteout,
  whiteout,
  type TarEntrySpec,
} from '../../src/image/oci-layout/tar-layer.ts';
import { writeImage, writeImageManifest, writeIndex } from '../../src/image/oci-layout/writer.ts';
import { RegistryClient } from '../../src/image/registry/client.ts';
import { RegistryCredentials } from '../../src/image/registry/credentials.ts';
import type { Platform } from '../../src/image/source.ts';
import { ImageStageCache } from '../../src/image/stage/cache.ts';
import type { ImageVerdict, ImageVerifyRequest } from '../../src/image/stage/types.ts';
import { verifyModuleImage } from '../../src/image/stage/verify.ts';
import { InTreeModuleLists } from '../../src/release/in-tree-modules.ts';
import { pushLayout, startRegistry, type TestRegistry } from '../support/registry.ts';

/**
 * The Image stage against a real Distribution registry (Debian's docker-registry) with images this suite builds
 * (project writer → OCI layout → skopeo copy → registry), one per case of issues 3 and 10.
 */

const K = '5.14.0-284.25.1.el9_2.x86_64';
const OLD = '5.14.0-162.6.1.el9_1.x86_64';
const DIR = `opt/lib/modules/${K}`;
const AMD64: Platform = { os: 'linux', architecture: 'amd64' };
const ARM64: Platform = { os: 'linux', architecture: 'arm64' };

async function ko(path: string, options: Partial<FakeModuleOptions> = {}): Promise<TarEntrySpec> {
  const name = path.replace(/^.*\//, '').replace(/\.ko.*$/, '');
  return { type: 'file', name: path, content: await buildKernelModule({ name, kernel: K, ...options }) };
}
const dep = (text: string, dir = DIR): TarEntrySpec => ({
  type: 'file',
  name: `${dir}/modules.dep`,
  content: text,
});
const base = (): TarEntrySpec[] => [
  { type: 'directory', name: 'usr/bin' },
  { type: 'file', name: 'usr/bin/cp', content: '#!/bin/sh\n' },
  { type: 'file', name: 'etc/os-release', content: 'ID=rhel\n' },
];

describe('e2e: image stage on a real registry', function () {
  this.timeout(300_000);
  let registry: TestRegistry;
  let workDir: string;
  let source: RegistryClient;
  let key: ModuleSigningKey;
  const repo = 'kmod/driver';

  /** Writes an image into the suite's OCI layout and pushes it with skopeo as `<repo>:<tag>`. */
  async function push(
    tag: string,
    layers: TarEntrySpec[][],
    compression: 'gzip' | 'zstd' = 'gzip',
  ): Promise<string> {
    await writeImage(workDir, {
      tag,
      layers: await Promise.all(layers.map((entries) => buildLayer(entries, { compression }))),
    });
    await pushLayout(`oci:${workDir}:${tag}`, `${repo}:${tag}`, registry);
    return `${registry.host}/${repo}:${tag}`;
  }

  async function verify(reference: string, extra: Partial<ImageVerifyRequest> = {}): Promise<ImageVerdict> {
    return verifyModuleImage(
      { source },
      { reference, kernel: K, modprobe: { moduleName: 'kmm_ci_a' }, tls: registry.pullOptions.tls, ...extra },
    );
  }

  const refs: Record<string, string> = {};

  before(async () => {
    key = createModuleSigningKey();
    workDir = await mkdtemp(join(tmpdir(), 'kmm-image-e2e-'));
    registry = await startRegistry('http');
    source = new RegistryClient({ ...registry.clientOptions });
    const present = [await ko(`${DIR}/kmm_ci_a.ko`), dep('kmm_ci_a.ko:\n')];
    refs.present = await push('present', [base(), present]);
    refs.absent = await push('absent', [base(), [dep('')]]);
    refs.wrongKernelDir = await push('wrong-kernel-dir', [
      base(),
      [
        await ko(`opt/lib/modules/${OLD}/kmm_ci_a.ko`, { kernel: OLD }),
        dep('kmm_ci_a.ko:\n', `opt/lib/modules/${OLD}`),
      ],
    ]);
    refs.whiteout = await push('whiteout', [base(), present, [whiteout(`${DIR}/kmm_ci_a.ko`)]]);
    refs.opaque = await push('opaque', [
      base(),
      present,
      [opaqueWhiteout(DIR), { type: 'file', name: `${DIR}/README`, content: 'replaced' }],
    ]);
    refs.symlink = await push('symlink', [
      base(),
      [await ko(`usr/lib/modules/${K}/extra/kmm_ci_a.ko`), dep('extra/kmm_ci_a.ko:\n')],
      [
        {
          type: 'symlink',
          name: `${DIR}/extra/kmm_ci_a.ko`,
          target: `/usr/lib/modules/${K}/extra/kmm_ci_a.ko`,
        },
      ],
    ]);
    refs.danglingSymlink = await push('dangling-symlink', [
      base(),
      [
        { type: 'symlink', name: `${DIR}/kmm_ci_a.ko`, target: '/nowhere/kmm_ci_a.ko' },
        dep('kmm_ci_a.ko:\n'),
      ],
    ]);
    refs.zstd = await push('zstd', [base(), present], 'zstd');
    await pushLayout(`oci:${workDir}:present`, `${repo}:docker-v2s2`, registry, { format: 'v2s2' });
    refs.dockerV2s2 = `${registry.host}/${repo}:docker-v2s2`;
    refs.compressed = await push('compressed', [
      base(),
      [await ko(`${DIR}/extra/kmm-ci-a.ko.xz`, { compression: 'xz' }), dep('extra/kmm-ci-a.ko.xz:\n')],
    ]);
    refs.otherVermagic = await push('other-vermagic', [
      base(),
      [await ko(`${DIR}/kmm_ci_a.ko`, { kernel: OLD }), dep('kmm_ci_a.ko:\n')],
    ]);
    refs.signed = await push('signed', [
      base(),
      [await ko(`${DIR}/kmm_ci_a.ko.zst`, { compression: 'zstd', signWith: key }), dep('kmm_ci_a.ko.zst:\n')],
    ]);
    refs.noDepmod = await push('no-depmod', [base(), [await ko(`${DIR}/kmm_ci_a.ko`)]]);
    refs.depPresent = await push('dep-present', [
      base(),
      [await ko(`${DIR}/extra/kmm_ci_b.ko`)],
      [
        await ko(`${DIR}/extra/kmm_ci_a.ko`, { depends: ['kmm_ci_b'] }),
        dep('extra/kmm_ci_a.ko: extra/kmm_ci_b.ko\nextra/kmm_ci_b.ko:\n'),
      ],
    ]);
    refs.depMissing = await push('dep-missing', [
      base(),
      [
        await ko(`${DIR}/extra/kmm_ci_a.ko`, { depends: ['kmm_ci_b'] }),
        dep('extra/kmm_ci_a.ko: extra/kmm_ci_b.ko\nextra/kmm_ci_b.ko:\n'),
      ],
    ]);
    refs.depInTree = await push('dep-in-tree', [
      base(),
      [await ko(`${DIR}/extra/kmm_ci_a.ko`, { depends: ['nvme-core'] }), dep('extra/kmm_ci_a.ko:\n')],
    ]);
    refs.depTypo = await push('dep-typo', [
      base(),
      [
        await ko(`${DIR}/extra/kmm_ci_a.ko`, { depends: ['nvme-core', 'typo_dep'] }),
        dep('extra/kmm_ci_a.ko:\n'),
      ],
    ]);
    // The release's driver-toolkit for K, pushed with its digest kept, as image-references names it.
    const release = await buildReleaseFixture({
      dir: join(workDir, 'release'),
      componentRepository: `${registry.host}/ocp/ocp-v4.0-art-dev`,
      driverToolkit: () => ({ kernelVersion: K, rtKernelVersion: '' }),
    });
    await pushLayout(release.driverToolkitLayoutReference, 'ocp/ocp-v4.0-art-dev:dtk', registry);
    refs.driverToolkit = release.driverToolkitReference;
    refs.depIndexXz = await push('dep-index-xz', [
      base(),
      [await ko(`${DIR}/kmm_ci_a.ko`), dep('kmm_ci_a.ko.xz:\n')],
    ]);
    refs.firmware = await push('firmware', [
      base(),
      [...present, { type: 'file', name: 'firmware/kmm_ci_a.bin', content: 'firmware blob' }],
    ]);
    refs.firmwareEmpty = await push('firmware-empty', [
      base(),
      [...present, { type: 'directory', name: 'firmware' }],
    ]);

    const amd64 = await writeImageManifest(workDir, {
      platform: AMD64,
      layers: [await buildLayer(base()), await buildLayer(present)],
    });
    const arm64 = await writeImageManifest(workDir, {
      platform: ARM64,
      layers: [
        await buildLayer(base()),
        await buildLayer([await ko(`${DIR}/kmm_ci_a.ko`, { machine: EM_AARCH64 }), dep('kmm_ci_a.ko:\n')]),
      ],
    });
    await writeIndex(workDir, { tag: 'multi-arch', manifests: [amd64, arm64] });
    await pushLayout(`oci:${workDir}:multi-arch`, `${repo}:multi-arch`, registry);
    refs.multiArch = `${registry.host}/${repo}:multi-arch`;
  });

  after(async () => {
    await source?.close();
    await registry?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('verifies a module that is present, with its digest, vermagic and depmod index', async () => {
    const verdict = await verify(refs.present!);
    expect(verdict).to.include({
      verified: true,
      definite: true,
      depmod: true,
      signed: false,
      path: `/${DIR}/kmm_ci_a.ko`,
    });
    expect(verdict.digest).to.match(/^sha256:[0-9a-f]{64}$/);
    expect(verdict.vermagic?.split(' ')[0]).to.equal(K);
  });

  it('reports a module that is absent, and an image that does not exist', async () => {
    const absent = await verify(refs.absent!);
    expect(absent).to.include({ verified: false, definite: true });
    expect(absent.reason).to.include(`module kmm_ci_a is not at /${DIR}/kmm_ci_a.ko`);
    const missing = await verify(`${registry.host}/${repo}:no-such-tag`);
    expect(missing).to.include({ verified: false, definite: true, errorCode: 'NOT_FOUND' });
    expect(missing.reason).to.match(/^image \S+:no-such-tag does not exist\b/);
    expect(missing.reason.split(`${registry.host}/${repo}`), 'the image is named once').to.have.length(2);
  });

  it('names the kernel directories an image has when the module is in another kernel directory', async () => {
    const verdict = await verify(refs.wrongKernelDir!);
    expect(verdict.verified).to.equal(false);
    expect(verdict.kernelDirectories).to.deep.equal([OLD]);
    expect(verdict.reason).to.include(`the image has modules for: ${OLD}`);
  });

  it('does not see a module deleted by a whiteout or hidden under an opaque directory in a later layer', async () => {
    for (const ref of [refs.whiteout!, refs.opaque!]) {
      const verdict = await verify(ref);
      expect(verdict.verified, ref).to.equal(false);
      expect(verdict.reason).to.include('module kmm_ci_a is not at');
    }
  });

  it('follows a symlink to the module, and does not take a dangling one for a module', async () => {
    expect(await verify(refs.symlink!)).to.include({ verified: true, path: `/${DIR}/extra/kmm_ci_a.ko` });
    const dangling = await verify(refs.danglingSymlink!);
    expect(dangling).to.include({ verified: false, definite: true, path: null });
    expect(dangling.reason).to.equal(
      `module kmm_ci_a is not at /${DIR}/kmm_ci_a.ko (nor under /${DIR}/ as .ko/.ko.xz/.ko.zst/.ko.gz with - or _): ` +
        `the image's /opt/lib/modules/${K}/ holds no such module (modules.dep still names /${DIR}/kmm_ci_a.ko)`,
    );
  });

  it('picks the entry of a multi-arch index for the target architecture, and says when there is none', async () => {
    const amd64 = await verify(refs.multiArch!, { platform: AMD64 });
    const arm64 = await verify(refs.multiArch!, { platform: ARM64 });
    expect(amd64.verified).to.equal(true);
    expect(arm64.verified).to.equal(true);
    expect(amd64.digest).to.not.equal(arm64.digest);
    const s390x = await verify(refs.multiArch!, { platform: { os: 'linux', architecture: 's390x' } });
    expect(s390x).to.include({ verified: false, definite: true, errorCode: 'NO_PLATFORM' });
    expect(s390x.reason).to.match(/^no image for linux\/s390x/);
  });

  it('reads zstd layers, Docker schema2 images and compressed modules', async () => {
    expect((await verify(refs.zstd!)).verified).to.equal(true);
    expect((await verify(refs.dockerV2s2!)).verified).to.equal(true);
    expect(await verify(refs.compressed!)).to.include({
      verified: true,
      path: `/${DIR}/extra/kmm-ci-a.ko.xz`,
    });
  });

  it('rejects a module built for another kernel', async () => {
    const verdict = await verify(refs.otherVermagic!);
    expect(verdict.verified).to.equal(false);
    expect(verdict.reason).to.include(`built for ${OLD}, not ${K}`);
  });

  it('reports a signed module and requires a signature when a sign section applies', async () => {
    const signed = await verify(refs.signed!, { requireSignature: true });
    expect(signed).to.include({ verified: true, signed: true });
    const unsigned = await verify(refs.present!, { requireSignature: true });
    expect(unsigned.verified).to.equal(false);
    expect(unsigned.reason).to.include('is not signed, but a sign section applies');
  });

  it('requires the depmod index and gives the fix', async () => {
    const verdict = await verify(refs.noDepmod!);
    expect(verdict).to.include({ verified: false, depmod: false });
    expect(verdict.reason).to.include('RUN depmod -b /opt ${KERNEL_FULL_VERSION}');
  });

  it('finds a dependency in a lower layer and names a missing one', async () => {
    const present = await verify(refs.depPresent!);
    expect(present.verified).to.equal(true);
    expect(present.dependencies).to.deep.equal({
      found: ['kmm_ci_b'],
      missing: [],
      inTree: [],
      assumedInTree: [],
    });
    const missing = await verify(refs.depMissing!);
    expect(missing.verified).to.equal(false);
    expect(missing.dependencies).to.deep.equal({
      found: [],
      missing: ['kmm_ci_b'],
      inTree: [],
      assumedInTree: [],
    });
    expect(missing.reason).to.include('kmm_ci_a needs kmm_ci_b');
  });

  it("checks a dependency outside the image against the driver-toolkit's in-tree modules (Module.symvers)", async () => {
    const requests: string[] = [];
    const dtkSource = new RegistryClient({
      ...registry.clientOptions,
      onRequest: (event) => requests.push(`${event.method} ${event.path}`),
    });
    try {
      const lists = new InTreeModuleLists({ source: dtkSource, tls: registry.pullOptions.tls });
      const inTreeModules = lists.source({
        driverToolkitImage: refs.driverToolkit!,
        kernel: K,
        platform: AMD64,
      });
      const inTree = await verify(refs.depInTree!, { inTreeModules });
      expect(inTree.verified, inTree.reason).to.equal(true);
      expect(inTree.dependencies).to.deep.equal({
        found: [],
        missing: [],
        inTree: ['nvme_core'],
        assumedInTree: [],
      });
      expect(inTree.reason).to.include('with in-tree nvme_core');
      const typo = await verify(refs.depTypo!, { inTreeModules });
      expect(typo).to.include({ verified: false, definite: true });
      expect(typo.dependencies).to.deep.equal({
        found: [],
        missing: ['typo_dep'],
        inTree: ['nvme_core'],
        assumedInTree: [],
      });
      expect(typo.reason).to.equal(
        `kmm_ci_a depends on typo_dep, which is neither in the image under /${DIR}/ nor an in-tree module of ${K}`,
      );
      // One read of the driver-toolkit for both: its manifest, its config and the two layers down to kernel-devel's
      // file, never the OS layer below.
      expect(requests.filter((r) => r.includes('/manifests/'))).to.have.length(1);
      expect(requests.filter((r) => r.includes('/blobs/'))).to.have.length(3);
      // Without a driver-toolkit the same image is verified, the dependencies assumed in-tree and said to be.
      const offline = await verify(refs.depTypo!);
      expect(offline.verified).to.equal(true);
      expect(offline.dependencies?.assumedInTree).to.deep.equal(['nvme_core', 'typo_dep']);
      expect(offline.reason).to.include('assumed to be in-tree modules');
    } finally {
      await dtkSource.close();
    }
  });

  it('reports modules.dep naming a .ko.xz while the image holds the .ko, with both paths', async () => {
    const verdict = await verify(refs.depIndexXz!);
    expect(verdict.verified).to.equal(false);
    expect(verdict.reason).to.include(
      `modules.dep names /${DIR}/kmm_ci_a.ko.xz but the image holds /${DIR}/kmm_ci_a.ko`,
    );
  });

  it('checks firmwarePath: present, empty (warning) and absent', async () => {
    const withFirmware = { modprobe: { moduleName: 'kmm_ci_a', firmwarePath: '/firmware' } };
    expect((await verify(refs.firmware!, withFirmware)).verified).to.equal(true);
    const empty = await verify(refs.firmwareEmpty!, withFirmware);
    expect(empty.verified).to.equal(true);
    expect(empty.reason).to.include('firmwarePath /firmware is empty');
    const absent = await verify(refs.present!, withFirmware);
    expect(absent.verified).to.equal(false);
    expect(absent.reason).to.include('firmwarePath /firmware does not exist in the image');
  });

  it('answers many Modules sharing images with one fetch per layer', async () => {
    const requests: string[] = [];
    const counted = new RegistryClient({
      ...registry.clientOptions,
      onRequest: (event) => requests.push(`${event.method} ${event.path}`),
    });
    try {
      const cache = new ImageStageCache();
      const verdicts = await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          verifyModuleImage(
            { source: counted, cache },
            {
              reference: i % 2 ? refs.present! : refs.depPresent!,
              kernel: K,
              modprobe: { moduleName: 'kmm_ci_a' },
              tls: registry.pullOptions.tls,
            },
          ),
        ),
      );
      expect(verdicts.every((v) => v.verified)).to.equal(true);
      const blobGets = requests.filter((r) => r.includes('/blobs/'));
      // Two images: 2 + 3 layers, the base layer shared; the stage never needs the config blob.
      expect(blobGets.length).to.be.greaterThan(0);
      expect(new Set(blobGets).size, 'each blob fetched once').to.equal(blobGets.length);
      const manifestGets = requests.filter((r) => r.includes('/manifests/'));
      expect(manifestGets, 'each tag resolved once').to.have.length(2);
    } finally {
      await counted.close();
    }
  });
});

describe('e2e: image stage with registry authentication', function () {
  this.timeout(300_000);
  let registry: TestRegistry;
  let workDir: string;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'kmm-image-auth-e2e-'));
    registry = await startRegistry('tls-auth');
    const module = await buildKernelModule({ name: 'kmm_ci_a', kernel: K });
    await writeImage(workDir, {
      tag: 'v1',
      layers: [
        await buildLayer([
          { type: 'file', name: `${DIR}/kmm_ci_a.ko`, content: module },
          dep('kmm_ci_a.ko:\n'),
        ]),
      ],
    });
    await pushLayout(`oci:${workDir}:v1`, 'private/kmod:v1', registry);
  });

  after(async () => {
    await registry?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  it('is denied anonymously, names the credentials used, and verifies with the right ones', async () => {
    const reference = `${registry.host}/private/kmod:v1`;
    const anonymous = new RegistryClient({ ...registry.clientOptions });
    const authenticated = new RegistryClient({
      ...registry.clientOptions,
      credentials: RegistryCredentials.fromDockerConfig(registry.dockerConfig, 'suite auth file'),
    });
    try {
      const request = { reference, kernel: K, modprobe: { moduleName: 'kmm_ci_a' } };
      const denied = await verifyModuleImage({ source: anonymous }, request);
      expect(denied).to.include({ verified: false, definite: true });
      expect(denied.reason, denied.reason).to.match(
        /^access to \S+ denied: \S+ requires credentials and none are configured for it/,
      );
      const ok = await verifyModuleImage({ source: authenticated }, request);
      expect(ok.verified, ok.reason).to.equal(true);
      expect(JSON.stringify(denied) + JSON.stringify(ok)).to.not.include(registry.password!);
    } finally {
      await anonymous.close();
      await authenticated.close();
    }
  });
});
