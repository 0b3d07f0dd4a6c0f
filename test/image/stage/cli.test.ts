import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { buildKernelModule } from '../../../src/fixtures/kmod.ts';
import { buildReleaseFixture } from '../../../src/fixtures/release.ts';
import { buildLayer } from '../../../src/image/oci-layout/tar-layer.ts';
import { writeImage } from '../../../src/image/oci-layout/writer.ts';
import { runCli } from '../../support/cli.ts';
import { imageCommandArgs } from './image-command-args.ts';

const K = '5.14.0-284.25.1.el9_2.x86_64';
const DIR = `opt/lib/modules/${K}`;

/** `kmm-preflight image` on OCI layout directories: the whole command, offline, as a pipeline would run it. */
describe('kmm-preflight image (OCI layout)', () => {
  let layout: string;
  let driverToolkit: string;
  const json = async (
    tag: string,
    ...extra: string[]
  ): Promise<{ code: number; out: Record<string, unknown>; stderr: string }> => {
    const run = await runCli(imageCommandArgs(`oci:${layout}:${tag}`, K, ...extra));
    return {
      code: run.code,
      out: JSON.parse(run.stdout || '{}') as Record<string, unknown>,
      stderr: run.stderr,
    };
  };

  before(async () => {
    layout = await mkdtemp(join(tmpdir(), 'kmm-image-cli-'));
    const module = await buildKernelModule({ name: 'kmm_ci_a', kernel: K });
    await writeImage(layout, {
      tag: 'good',
      layers: [
        await buildLayer([
          { type: 'file', name: `${DIR}/kmm_ci_a.ko`, content: module },
          { type: 'file', name: `${DIR}/modules.dep`, content: 'kmm_ci_a.ko:\n' },
        ]),
      ],
    });
    for (const [tag, depends] of [
      ['in-tree-dep', ['nvme-core']],
      ['typo-dep', ['nvme-core', 'typo_dep']],
    ] as const) {
      const withDeps = await buildKernelModule({ name: 'kmm_ci_a', kernel: K, depends });
      await writeImage(layout, {
        tag,
        layers: [
          await buildLayer([
            { type: 'file', name: `${DIR}/kmm_ci_a.ko`, content: withDeps },
            { type: 'file', name: `${DIR}/modules.dep`, content: 'kmm_ci_a.ko:\n' },
          ]),
        ],
      });
    }
    // An arm64 image holding an x86-64 module, as a build on the wrong machine makes.
    await writeImage(layout, {
      tag: 'arm-config',
      platform: { os: 'linux', architecture: 'arm64' },
      layers: [
        await buildLayer([
          { type: 'file', name: `${DIR}/kmm_ci_a.ko`, content: module },
          { type: 'file', name: `${DIR}/modules.dep`, content: 'kmm_ci_a.ko:\n' },
        ]),
      ],
    });
    const release = await buildReleaseFixture({
      dir: join(layout, 'release'),
      driverToolkit: () => ({ kernelVersion: K, rtKernelVersion: '' }),
    });
    driverToolkit = release.driverToolkitLayoutReference;
    await writeImage(layout, {
      tag: 'no-depmod',
      layers: [await buildLayer([{ type: 'file', name: `${DIR}/kmm_ci_a.ko`, content: module }])],
    });
  });

  after(async () => {
    await rm(layout, { recursive: true, force: true });
  });

  it('prints the verdict as one JSON object with the documented keys and exits 0 when verified', async () => {
    const run = await runCli([
      'image',
      `oci:${layout}:good`,
      '--kernel',
      K,
      '--module',
      'kmm_ci_a',
      '-o',
      'json',
    ]);
    expect(run.code, run.stderr).to.equal(0);
    const json = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(Object.keys(json)).to.deep.equal([
      'image',
      'digest',
      'kernel',
      'module',
      'verified',
      'reason',
      'path',
      'vermagic',
      'signed',
      'depmod',
      'dependencies',
    ]);
    expect(json).to.include({
      kernel: K,
      module: 'kmm_ci_a',
      verified: true,
      path: `/${DIR}/kmm_ci_a.ko`,
      signed: false,
      depmod: true,
    });
    expect(json.dependencies).to.deep.equal({ found: [], missing: [], inTree: [], assumedInTree: [] });
  });

  it('takes kernel names for --arch (x86_64 is amd64) and names the architecture a module is built for', async () => {
    const x86 = await json('good', '--arch', 'x86_64');
    expect(x86.code, x86.stderr).to.equal(0);
    const noArm = await json('good', '--arch', 'aarch64');
    expect(noArm.code).to.equal(1);
    expect(noArm.out['reason']).to.equal(
      `no image for linux/arm64 in oci:${layout}:good (it is a single-platform image for linux/amd64)`,
    );
    const arm = await json('arm-config', '--arch', 'aarch64');
    expect(arm.code).to.equal(1);
    expect(arm.out['reason']).to.equal(
      `/${DIR}/kmm_ci_a.ko is built for amd64 (ELF machine 62), but the nodes are arm64`,
    );
    const bad = await json('good', '--arch', 'x86-64!');
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.include("--arch: 'x86-64!' is not an architecture");
  });

  it("checks dependencies the image lacks against the driver-toolkit's in-tree modules", async () => {
    const inTree = await json('in-tree-dep', '--driver-toolkit', driverToolkit);
    expect(inTree.code, String(inTree.out['reason'])).to.equal(0);
    expect(inTree.out['dependencies']).to.deep.equal({
      found: [],
      missing: [],
      inTree: ['nvme_core'],
      assumedInTree: [],
    });
    const typo = await json('typo-dep', '--driver-toolkit', driverToolkit);
    expect(typo.code).to.equal(1);
    expect(typo.out['reason']).to.equal(
      `kmm_ci_a depends on typo_dep, which is neither in the image under /${DIR}/ nor an in-tree module of ${K}`,
    );
    expect(typo.out['dependencies']).to.deep.include({ inTree: ['nvme_core'], missing: ['typo_dep'] });
    const unknown = await json('typo-dep');
    expect(unknown.code).to.equal(0);
    expect(unknown.out['dependencies']).to.deep.include({ assumedInTree: ['nvme_core', 'typo_dep'] });
    expect(unknown.out['reason']).to.include('not in the image: assumed to be in-tree modules');
    const badFlag = await json('good', '--driver-toolkit', 'A:B:C');
    expect(badFlag.code).to.equal(2);
    expect(badFlag.stderr).to.include('--driver-toolkit:');
  });

  it('exits 1 with the reason when not verified, in text form', async () => {
    const run = await runCli(['image', `oci:${layout}:no-depmod`, '--kernel', K, '--module', 'kmm_ci_a']);
    expect(run.code).to.equal(1);
    expect(run.stdout).to.match(/^Verified\s+no$/m);
    expect(run.stdout).to.include('RUN depmod -b /opt ${KERNEL_FULL_VERSION}');
  });

  it('exits 1 with null values for an image that is not there', async () => {
    const run = await runCli([
      'image',
      `oci:${layout}:missing`,
      '--kernel',
      K,
      '--module',
      'kmm_ci_a',
      '-o',
      'json',
    ]);
    expect(run.code).to.equal(1);
    const json = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(json).to.include({
      verified: false,
      digest: null,
      path: null,
      vermagic: null,
      signed: null,
      depmod: null,
    });
  });

  it('exits 2 on bad input: a kernel with too few components, an invalid reference, a missing flag', async () => {
    const badKernel = await runCli(['image', `oci:${layout}:good`, '--kernel', '5.14', '--module', 'm']);
    expect(badKernel.code).to.equal(2);
    expect(badKernel.stderr).to.include('--kernel: invalid kernel version "5.14"');
    const badRef = await runCli(['image', 'UPPER/Case:tag', '--kernel', K, '--module', 'm']);
    expect(badRef.code).to.equal(2);
    expect(badRef.stderr).to.include('invalid image reference');
    const noModule = await runCli(['image', `oci:${layout}:good`, '--kernel', K]);
    expect(noModule.code).to.equal(2);
    expect(noModule.stderr).to.include("required option '--module <name>' not specified");
  });
});
