import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import {
  ART_REPOSITORY,
  buildReleaseFixture,
  type ReleaseFixtureOptions,
} from '../../src/fixtures/release.ts';
import { InTreeModuleLists, moduleSymversPath } from '../../src/release/in-tree-modules.ts';
import { resolveRelease } from '../../src/release/resolve.ts';
import { MappedSource, RELEASE_REPO } from './mapped-source.ts';

const AMD64 = { os: 'linux', architecture: 'amd64' } as const;

describe("in-tree modules from the release's driver-toolkit", function () {
  let tmp: string;
  let count = 0;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'kmm-in-tree-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  async function setup(options: Omit<ReleaseFixtureOptions, 'dir'> = {}) {
    const fixture = await buildReleaseFixture({ dir: join(tmp, `layout-${count++}`), ...options });
    const source = new MappedSource();
    source.publish(fixture);
    return { fixture, source, dtk: `${ART_REPOSITORY}@${fixture.driverToolkitDigest}` };
  }

  it('reads Module.symvers from below the top layer, once per driver-toolkit digest and kernel', async () => {
    const { fixture, source, dtk } = await setup();
    const kernel = fixture.architectures[0]!.driverToolkit.kernelVersion;
    const lists = new InTreeModuleLists({ source });
    const list = lists.source({ driverToolkitImage: dtk, kernel, platform: AMD64 });
    expect(list.description).to.equal(`driver-toolkit image ${dtk}`);
    const first = await list.load();
    expect(first.known).to.equal(true);
    if (first.known) expect([...first.names]).to.include.members(['nvme_core', 'mlx5_core', 'xfs']);
    expect(first.known && first.names.has('vmlinux')).to.equal(false);
    // The top layer (the JSON file) and the kernel-headers layer; the large OS layer below is never read.
    expect(source.blobsOpened).to.have.length(2);
    const opened = source.blobsOpened.length;
    const again = await lists.load({ driverToolkitImage: dtk, kernel, platform: AMD64 });
    expect(again).to.equal(first);
    expect(source.blobsOpened, 'pinned by digest: nothing read again').to.have.length(opened);
    expect(source.resolved).to.have.length(1);
    const rt = await lists.load({ driverToolkitImage: dtk, kernel: `${kernel}+rt`, platform: AMD64 });
    expect(rt.known, 'the real-time kernel has its own kernel-devel').to.equal(true);
  });

  it('leaves the release resolution reading what it read before', async () => {
    const { fixture, source } = await setup();
    await resolveRelease({ source }, { releaseImage: `${RELEASE_REPO}:${fixture.releaseTag}` });
    const arch = fixture.architectures[0]!;
    expect(source.blobBytes).to.equal(arch.sizes.releaseLastLayer + arch.sizes.driverToolkitTopLayer);
  });

  it('says why the list is unknown: no Module.symvers (definite), an unreachable registry (transient)', async () => {
    const { fixture, source, dtk } = await setup({ driverToolkit: () => ({ inTreeModules: null }) });
    const kernel = fixture.architectures[0]!.driverToolkit.kernelVersion;
    const lists = new InTreeModuleLists({ source });
    expect(await lists.load({ driverToolkitImage: dtk, kernel, platform: AMD64 })).to.deep.equal({
      known: false,
      why: `driver-toolkit image ${dtk} has no /${moduleSymversPath(kernel)} (kernel-devel for ${kernel}) to list its in-tree modules`,
      transient: false,
    });
    source.unreachable.add(dtk);
    const down = await new InTreeModuleLists({ source }).load({
      driverToolkitImage: dtk,
      kernel,
      platform: AMD64,
    });
    expect(down).to.deep.equal({
      known: false,
      why: `cannot read driver-toolkit image ${dtk}: connect ECONNREFUSED`,
      transient: true,
    });
  });

  it('picks the target architecture of a -multi driver-toolkit', async () => {
    const { fixture, source, dtk } = await setup({ architectures: ['amd64', 'arm64'], format: 'docker' });
    const kernel = fixture.architectures[1]!.driverToolkit.kernelVersion;
    const list = await new InTreeModuleLists({ source }).load({
      driverToolkitImage: dtk,
      kernel,
      platform: { os: 'linux', architecture: 'arm64' },
    });
    expect(list.known).to.equal(true);
  });
});
