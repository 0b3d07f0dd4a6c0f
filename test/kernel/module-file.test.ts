import { expect } from 'chai';
import {
  canonicalModuleName,
  createModuleFileMatcher,
  normalizeTarPath,
} from '../../src/kernel/module-file.ts';

const KERNEL = '5.14.0-284.30.1.el9_2.x86_64';

describe('kernel/module-file', () => {
  it('locates the kernel directory under dirName (default /opt), in tar form', () => {
    const matcher = createModuleFileMatcher({ kernel: KERNEL, moduleName: 'kmm_ci_a' });
    expect(matcher.modulesRoot).to.equal('opt/lib/modules/');
    expect(matcher.kernelDirectory).to.equal(`opt/lib/modules/${KERNEL}/`);
    expect(matcher.wanted).to.deep.equal([
      { name: 'kmm_ci_a', canonicalName: 'kmm_ci_a', kmmExactPath: `opt/lib/modules/${KERNEL}/kmm_ci_a.ko` },
    ]);
    for (const [dirName, root] of [
      ['/opt', 'opt/lib/modules/'],
      ['', 'opt/lib/modules/'],
      ['/usr/', 'usr/lib/modules/'],
      ['./custom//dir', 'custom/dir/lib/modules/'],
      ['/', 'lib/modules/'],
    ] as const) {
      expect(
        createModuleFileMatcher({ dirName, kernel: KERNEL, moduleName: 'm' }).modulesRoot,
        dirName,
      ).to.equal(root);
    }
  });

  it("matches KMM's exact path and flags it as exact", () => {
    const matcher = createModuleFileMatcher({ dirName: '/opt', kernel: KERNEL, moduleName: 'kmm_ci_a' });
    expect(matcher.match(`opt/lib/modules/${KERNEL}/kmm_ci_a.ko`)).to.deep.equal({
      module: 'kmm_ci_a',
      path: `opt/lib/modules/${KERNEL}/kmm_ci_a.ko`,
      compression: 'none',
      kmmExact: true,
    });
  });

  it('accepts what modprobe accepts: subdirectories, - and _ folded, .ko.xz/.ko.zst/.ko.gz', () => {
    const matcher = createModuleFileMatcher({ kernel: KERNEL, moduleName: 'kmm-ci_a' });
    const cases: [string, string][] = [
      [`opt/lib/modules/${KERNEL}/extra/kmm_ci_a.ko`, 'none'],
      [`opt/lib/modules/${KERNEL}/updates/drivers/net/kmm-ci-a.ko.xz`, 'xz'],
      [`opt/lib/modules/${KERNEL}/kmm_ci-a.ko.zst`, 'zst'],
      [`opt/lib/modules/${KERNEL}/kmm_ci_a.ko.gz`, 'gz'],
    ];
    for (const [path, compression] of cases) {
      const match = matcher.match(path);
      expect(match, path).to.deep.include({ module: 'kmm-ci_a', compression, kmmExact: false });
    }
  });

  it('rejects other kernels, other dirs, other modules, other suffixes and prefix look-alikes', () => {
    const matcher = createModuleFileMatcher({ kernel: KERNEL, moduleName: 'kmm_ci_a' });
    for (const path of [
      `opt/lib/modules/5.14.0-284.30.1.el9_2.x86_64.debug/kmm_ci_a.ko`,
      `opt/lib/modules/5.14.0-70.el9.x86_64/kmm_ci_a.ko`,
      `lib/modules/${KERNEL}/kmm_ci_a.ko`,
      `usr/opt/lib/modules/${KERNEL}/kmm_ci_a.ko`,
      `opt/lib/modules/${KERNEL}/kmm_ci_b.ko`,
      `opt/lib/modules/${KERNEL}/kmm_ci_a.ko.bz2`,
      `opt/lib/modules/${KERNEL}/kmm_ci_a.o`,
      `opt/lib/modules/${KERNEL}/xkmm_ci_a.ko`,
      `opt/lib/modules/${KERNEL}/.ko`,
      `opt/lib/modules/${KERNEL}/kmm_ci_a.ko/`,
    ]) {
      expect(matcher.match(path), path).to.equal(undefined);
    }
  });

  it('wants every module of modulesLoadingOrder (once each, - and _ folded)', () => {
    const matcher = createModuleFileMatcher({
      kernel: KERNEL,
      moduleName: 'kmm_ci_a',
      modulesLoadingOrder: ['kmm_ci_a', 'kmm-ci-b', 'kmm_ci_b'],
    });
    expect(matcher.wanted.map((w) => [w.name, w.canonicalName])).to.deep.equal([
      ['kmm_ci_a', 'kmm_ci_a'],
      ['kmm-ci-b', 'kmm_ci_b'],
    ]);
    expect(matcher.match(`opt/lib/modules/${KERNEL}/kmm_ci_b.ko`)?.module).to.equal('kmm-ci-b');
  });

  it('wants nothing when the Module loads by rawArgs only', () => {
    expect(createModuleFileMatcher({ kernel: KERNEL }).wanted).to.deep.equal([]);
    expect(createModuleFileMatcher({ kernel: KERNEL, moduleName: '' }).wanted).to.deep.equal([]);
  });

  it('tells which kernel directory a path lies in, for listing the kernels an image has', () => {
    const matcher = createModuleFileMatcher({ kernel: KERNEL, moduleName: 'm' });
    expect(matcher.kernelOf('opt/lib/modules/5.14.0-70.el9.x86_64/extra/m.ko')).to.equal(
      '5.14.0-70.el9.x86_64',
    );
    expect(matcher.kernelOf('opt/lib/modules/5.14.0-70.el9.x86_64')).to.equal('5.14.0-70.el9.x86_64');
    expect(matcher.kernelOf('opt/lib/modules/')).to.equal(undefined);
    expect(matcher.kernelOf('usr/lib/modules/6.1.0/m.ko')).to.equal(undefined);
  });

  it('normalises tar paths: leading / and ./, duplicate slashes, . segments, trailing /', () => {
    expect(normalizeTarPath('./opt/lib/modules/')).to.equal('opt/lib/modules');
    expect(normalizeTarPath('/opt//lib/./modules/x.ko')).to.equal('opt/lib/modules/x.ko');
    expect(normalizeTarPath('opt/a/../b')).to.equal('opt/b');
    expect(normalizeTarPath('../../etc/passwd')).to.equal('etc/passwd');
  });

  it('folds - to _ in module names', () => {
    expect(canonicalModuleName('nvidia-drm')).to.equal('nvidia_drm');
  });
});
