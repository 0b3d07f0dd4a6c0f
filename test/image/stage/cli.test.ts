import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { buildKernelModule } from '../../../src/fixtures/kmod.ts';
import { buildLayer } from '../../../src/image/oci-layout/tar-layer.ts';
import { writeImage } from '../../../src/image/oci-layout/writer.ts';
import { runCli } from '../../support/cli.ts';

const K = '5.14.0-284.25.1.el9_2.x86_64';
const DIR = `opt/lib/modules/${K}`;

/** `kmm-preflight image` on OCI layout directories: the whole command, offline, as a pipeline would run it. */
describe('kmm-preflight image (OCI layout)', () => {
  let layout: string;

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
    expect(json.dependencies).to.deep.equal({ found: [], missing: [] });
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
