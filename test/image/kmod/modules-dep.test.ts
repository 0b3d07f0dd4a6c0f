import { expect } from 'chai';
import { readFile } from 'node:fs/promises';

import {
  resolveDependencies,
  type ImageModuleTree,
  type InTreeModules,
  type ModuleFileFacts,
} from '../../../src/image/kmod/dependencies.ts';
import { KmodError } from '../../../src/image/kmod/errors.ts';
import { modulesDepTextFromIndex } from '../../../src/image/kmod/modules-dep-bin.ts';
import { parseModulesDep } from '../../../src/image/kmod/modules-dep.ts';

const KERNEL = '5.14.0-284.el9.x86_64';
const location = { kernel: KERNEL, root: 'opt' };

function tree(paths: string[]): ImageModuleTree {
  return {
    has: (p) => paths.includes(p),
    pathOf: (name) =>
      paths.find(
        (p) =>
          p
            .replace(/^.*\//, '')
            .replace(/\.ko.*$/, '')
            .replaceAll('-', '_') === name,
      ),
  };
}

describe('kmod: modules.dep', () => {
  it('parses relative paths, compressed names and dependency lists', () => {
    const dep = parseModulesDep(
      [
        'extra/kmm_ci_a.ko: extra/kmm_ci_b.ko.xz kernel/drivers/nvme/host/nvme-core.ko.xz',
        'extra/kmm_ci_b.ko.xz:',
        '',
      ].join('\n'),
      location,
    );
    expect(dep.entries.get('extra/kmm_ci_a.ko')).to.deep.equal([
      'extra/kmm_ci_b.ko.xz',
      'kernel/drivers/nvme/host/nvme-core.ko.xz',
    ]);
    expect(dep.entries.get('extra/kmm_ci_b.ko.xz')).to.deep.equal([]);
    expect(dep.byName.get('kmm_ci_b')).to.equal('extra/kmm_ci_b.ko.xz');
  });

  it('accepts the absolute paths older depmod wrote, with or without the -b base directory', () => {
    const dep = parseModulesDep(
      `/lib/modules/${KERNEL}/extra/a.ko: /opt/lib/modules/${KERNEL}/extra/b.ko\n`,
      location,
    );
    expect([...dep.entries]).to.deep.equal([['extra/a.ko', ['extra/b.ko']]]);
  });

  it('folds - and _ when looking modules up by name, and keeps the first line for a name', () => {
    const dep = parseModulesDep('updates/my-mod.ko:\nextra/my_mod.ko:\n', location);
    expect(dep.byName.get('my_mod')).to.equal('updates/my-mod.ko');
  });

  it('skips blank and malformed lines', () => {
    const dep = parseModulesDep('\n# comment\nno colon here\nextra/a.ko:\n', location);
    expect([...dep.entries.keys()]).to.deep.equal(['extra/a.ko']);
  });
});

describe('kmod: dependency resolution', () => {
  const dep = parseModulesDep('extra/a.ko: extra/b.ko.xz\nextra/b.ko.xz:\n', location);
  const kernelDirectory = `/opt/lib/modules/${KERNEL}/`;
  const a = (depends: string[]): ModuleFileFacts => ({ name: 'a', path: 'extra/a.ko', depends });
  /** An in-tree list that counts how often it is asked. */
  function inTreeList(list: InTreeModules): { asked: number; load: () => Promise<InTreeModules> } {
    const counter = {
      asked: 0,
      load: () => {
        counter.asked++;
        return Promise.resolve(list);
      },
    };
    return counter;
  }
  const nvme: InTreeModules = { known: true, names: new Set(['nvme_core', 'nvme']) };

  it('finds a dependency modules.dep lists and the image holds, without asking for the in-tree list', async () => {
    const list = inTreeList(nvme);
    const report = await resolveDependencies(a(['b']), dep, tree(['extra/a.ko', 'extra/b.ko.xz']), {
      kernel: KERNEL,
      kernelDirectory,
      inTreeModules: list.load,
    });
    expect(report).to.deep.equal({ found: ['b'], inTree: [], assumedInTree: [], missing: [] });
    expect(list.asked).to.equal(0);
  });

  it('names a listed dependency that is missing, and the other file the image holds instead', async () => {
    const report = await resolveDependencies(a(['b']), dep, tree(['extra/a.ko', 'extra/b.ko']), {
      kernel: KERNEL,
      kernelDirectory,
    });
    expect(report.missing).to.deep.equal([
      { name: 'b', reason: 'a needs b: modules.dep lists extra/b.ko.xz but the image holds extra/b.ko' },
    ]);
    const gone = await resolveDependencies(a([]), dep, tree(['extra/a.ko']), {
      kernel: KERNEL,
      kernelDirectory,
    });
    expect(gone.missing[0]?.reason).to.equal(
      'a needs b: modules.dep lists extra/b.ko.xz, which is not in the image',
    );
  });

  it('takes a depends= name the image lacks as in-tree when the kernel has it, and names one it has not', async () => {
    const list = inTreeList(nvme);
    const report = await resolveDependencies(
      a(['b', 'nvme-core', 'typo_dep']),
      dep,
      tree(['extra/a.ko', 'extra/b.ko.xz']),
      { kernel: KERNEL, kernelDirectory, inTreeModules: list.load },
    );
    expect(report).to.deep.equal({
      found: ['b'],
      inTree: ['nvme_core'],
      assumedInTree: [],
      missing: [
        {
          name: 'typo_dep',
          reason: `a depends on typo_dep, which is neither in the image under ${kernelDirectory} nor an in-tree module of ${KERNEL}`,
        },
      ],
    });
    expect(list.asked).to.equal(1);
  });

  it('assumes in-tree, and says why, what it cannot check: no list, or a list that could not be read', async () => {
    const none = await resolveDependencies(a(['nvme-core']), null, tree(['extra/a.ko']), {
      kernel: KERNEL,
      kernelDirectory,
    });
    expect(none).to.deep.include({ found: [], inTree: [], assumedInTree: ['nvme_core'], missing: [] });
    expect(none.inTreeUnknown).to.deep.equal({
      why: 'no in-tree module list for the kernel (no release driver-toolkit given)',
      transient: false,
    });
    const unreachable = await resolveDependencies(a(['nvme-core']), null, tree(['extra/a.ko']), {
      kernel: KERNEL,
      kernelDirectory,
      inTreeModules: inTreeList({ known: false, why: 'registry unreachable', transient: true }).load,
    });
    expect(unreachable.assumedInTree).to.deep.equal(['nvme_core']);
    expect(unreachable.inTreeUnknown).to.deep.equal({ why: 'registry unreachable', transient: true });
  });

  it('without modules.dep, takes depends= names the image holds as found', async () => {
    const report = await resolveDependencies(a(['b']), null, tree(['extra/a.ko', 'extra/b.ko']), {
      kernel: KERNEL,
      kernelDirectory,
    });
    expect(report).to.deep.equal({ found: ['b'], inTree: [], assumedInTree: [], missing: [] });
  });
});

describe('kmod: modules.dep.bin', () => {
  const fixture = new URL('./fixtures/depmod-kmod30-modules.dep.bin', import.meta.url);

  it('lists the lines of an index written by depmod (kmod 30), compressed names included', async () => {
    const text = modulesDepTextFromIndex(await readFile(fixture));
    expect(text).to.equal('extra/kmm_ci_a.ko:\nextra/kmm-ci-b.ko.xz:\n');
    expect(parseModulesDep(text, location).byName.get('kmm_ci_b')).to.equal('extra/kmm-ci-b.ko.xz');
  });

  it('rejects a file that is not an index, a truncated one, and one whose nodes loop', async () => {
    const bytes = await readFile(fixture);
    expect(() => modulesDepTextFromIndex(Buffer.from('extra/a.ko:\n'))).to.throw(KmodError, /bad magic/);
    expect(() => modulesDepTextFromIndex(bytes.subarray(0, 40))).to.throw(KmodError, /truncated/);
    const loop = Buffer.alloc(20);
    loop.writeUInt32BE(0xb007f457, 0);
    loop.writeUInt32BE(0x00020001, 4);
    loop.writeUInt32BE(0x20000000 | 12, 8); // root: a children node at 12
    loop.set([0x61, 0x61], 12); // one child, 'a'
    loop.writeUInt32BE(0x20000000 | 12, 14); // ... which is the root again
    expect(() => modulesDepTextFromIndex(loop)).to.throw(KmodError, /cycle/);
  });
});
