import { expect } from 'chai';
import { readFile } from 'node:fs/promises';

import { resolveDependencies, type ImageModuleTree } from '../../../src/image/kmod/dependencies.ts';
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

  it('finds a dependency modules.dep lists and the image holds', () => {
    const report = resolveDependencies(
      { path: 'extra/a.ko', depends: ['b'] },
      dep,
      tree(['extra/a.ko', 'extra/b.ko.xz']),
    );
    expect(report).to.deep.equal({ found: ['b'], missing: [], outsideImage: [] });
  });

  it('names a listed dependency that is missing, and the other file the image holds instead', () => {
    const report = resolveDependencies(
      { path: 'extra/a.ko', depends: ['b'] },
      dep,
      tree(['extra/a.ko', 'extra/b.ko']),
    );
    expect(report.missing).to.deep.equal([
      { name: 'b', reason: 'modules.dep lists extra/b.ko.xz but the image holds extra/b.ko' },
    ]);
    const gone = resolveDependencies({ path: 'extra/a.ko', depends: [] }, dep, tree(['extra/a.ko']));
    expect(gone.missing[0]?.reason).to.equal('modules.dep lists extra/b.ko.xz, which is not in the image');
  });

  it('reports a depends= name neither modules.dep nor the image knows as outside the image (in-tree)', () => {
    const report = resolveDependencies(
      { path: 'extra/a.ko', depends: ['b', 'nvme-core'] },
      dep,
      tree(['extra/a.ko', 'extra/b.ko.xz']),
    );
    expect(report.outsideImage).to.deep.equal(['nvme_core']);
    expect(report.found).to.deep.equal(['b']);
  });

  it('without modules.dep, takes depends= names the image holds as found', () => {
    const report = resolveDependencies(
      { path: 'extra/a.ko', depends: ['b'] },
      null,
      tree(['extra/a.ko', 'extra/b.ko']),
    );
    expect(report).to.deep.equal({ found: ['b'], missing: [], outsideImage: [] });
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
