import { expect } from 'chai';
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';

import {
  buildKernelModule,
  createModuleSigningKey,
  type FakeModuleOptions,
  type ModuleSigningKey,
} from '../../../src/fixtures/kmod.ts';
import {
  buildLayer,
  opaqueWhiteout,
  whiteout,
  type TarEntrySpec,
} from '../../../src/image/oci-layout/tar-layer.ts';
import { ImageError, type ImageSource, type ResolvedImage } from '../../../src/image/source.ts';
import { ImageStageCache } from '../../../src/image/stage/cache.ts';
import type {
  ImageVerifyRequest,
  InTreeModules,
  InTreeModuleSource,
} from '../../../src/image/stage/types.ts';
import { verifyModuleImage } from '../../../src/image/stage/verify.ts';
import { MemoryImageSource } from '../layers/memory-source.ts';

const K = '5.14.0-284.25.1.el9_2.x86_64';
const OLD = '5.14.0-162.6.1.el9_1.x86_64';
const DIR = `opt/lib/modules/${K}`;

async function ko(
  path: string,
  options: Partial<FakeModuleOptions> & { compression?: FakeModuleOptions['compression'] } = {},
): Promise<TarEntrySpec> {
  const name = path.replace(/^.*\//, '').replace(/\.ko.*$/, '');
  return { type: 'file', name: path, content: await buildKernelModule({ name, kernel: K, ...options }) };
}
const modulesDep = (text: string, dir = DIR): TarEntrySpec => ({
  type: 'file',
  name: `${dir}/modules.dep`,
  content: text,
});
const filler = (name: string): TarEntrySpec => ({ type: 'file', name, content: 'z'.repeat(4096) });

async function setup(...layers: TarEntrySpec[][]): Promise<{ source: MemoryImageSource; ref: string }> {
  const source = new MemoryImageSource();
  source.add('registry.test/kmod:v1', await Promise.all(layers.map((l) => buildLayer(l))));
  return { source, ref: 'registry.test/kmod:v1' };
}

function request(
  ref: string,
  extra: Partial<ImageVerifyRequest> & { moduleName?: string } = {},
): ImageVerifyRequest {
  const { moduleName = 'kmm_ci_a', ...rest } = extra;
  return { reference: ref, kernel: K, modprobe: { moduleName, ...(extra.modprobe ?? {}) }, ...rest };
}

describe('image stage: verifyModuleImage', () => {
  let key: ModuleSigningKey;
  before(() => {
    key = createModuleSigningKey();
  });

  it('verifies a module in the top layer with its depmod index, without reading the layers below', async () => {
    const { source, ref } = await setup(
      [filler('usr/bin/big')],
      [filler('usr/lib/other')],
      [await ko(`${DIR}/extra/kmm_ci_a.ko`, { signWith: key }), modulesDep('extra/kmm_ci_a.ko:\n')],
    );
    const verdict = await verifyModuleImage({ source }, request(ref, { requireSignature: true }));
    expect(verdict).to.include({
      verified: true,
      definite: true,
      depmod: true,
      signed: true,
      path: `/${DIR}/extra/kmm_ci_a.ko`,
    });
    expect(verdict.vermagic).to.match(new RegExp(`^${K} `));
    expect(verdict.digest).to.match(/^sha256:/);
    expect(verdict.reason).to.match(
      /^verified: kmm_ci_a at .* signed by kmm-preflight test module signing key/,
    );
    expect(source.opened, 'only the top layer').to.have.length(1);
  });

  it('reports an image that does not exist as a definite answer', async () => {
    const source = new MemoryImageSource();
    const verdict = await verifyModuleImage({ source }, request('registry.test/none:v1'));
    expect(verdict).to.include({ verified: false, definite: true, errorCode: 'NOT_FOUND', depmod: null });
    expect(verdict.reason).to.match(/^image registry.test\/none:v1 does not exist/);
  });

  it('names the kernel directories the image has when the module is not for the target kernel', async () => {
    const { ref, source } = await setup([
      await ko(`opt/lib/modules/${OLD}/kmm_ci_a.ko`, { kernel: OLD }),
      modulesDep('kmm_ci_a.ko:\n', `opt/lib/modules/${OLD}`),
    ]);
    const verdict = await verifyModuleImage({ source }, request(ref));
    expect(verdict.verified).to.equal(false);
    expect(verdict.kernelDirectories).to.deep.equal([OLD]);
    expect(verdict.reason).to.include(`module kmm_ci_a is not at /${DIR}/kmm_ci_a.ko`);
    expect(verdict.reason).to.include(`the image has modules for: ${OLD}`);
  });

  it('rejects a module whose vermagic names another kernel', async () => {
    const { ref, source } = await setup([
      await ko(`${DIR}/kmm_ci_a.ko`, { kernel: OLD }),
      modulesDep('kmm_ci_a.ko:\n'),
    ]);
    const verdict = await verifyModuleImage({ source }, request(ref));
    expect(verdict.verified).to.equal(false);
    expect(verdict.reason).to.include(`was built for ${OLD}, not ${K}`);
  });

  it('requires a signature when a sign section applies, and reports an unsigned module otherwise', async () => {
    const { ref, source } = await setup([await ko(`${DIR}/kmm_ci_a.ko`), modulesDep('kmm_ci_a.ko:\n')]);
    const unsigned = await verifyModuleImage({ source }, request(ref));
    expect(unsigned).to.include({ verified: true, signed: false });
    const required = await verifyModuleImage({ source }, request(ref, { requireSignature: true }));
    expect(required.verified).to.equal(false);
    expect(required.reason).to.include(`is not signed, but a sign section applies to kernel ${K}`);
  });

  it('fails without a depmod index and gives the Dockerfile fix', async () => {
    const { ref, source } = await setup([await ko(`${DIR}/kmm_ci_a.ko`)]);
    const verdict = await verifyModuleImage({ source }, request(ref));
    expect(verdict).to.include({ verified: false, depmod: false, path: `/${DIR}/kmm_ci_a.ko` });
    expect(verdict.reason).to.include('RUN depmod -b /opt ${KERNEL_FULL_VERSION}');
  });

  it('reads the binary index when modules.dep is missing, and rejects a corrupt one', async () => {
    // Written by Debian kmod 30's depmod over extra/kmm_ci_a.ko and extra/kmm-ci-b.ko.xz.
    const depmodBin = await readFile(
      new URL('../kmod/fixtures/depmod-kmod30-modules.dep.bin', import.meta.url),
    );
    const { ref, source } = await setup([
      await ko(`${DIR}/extra/kmm_ci_a.ko`),
      { type: 'file', name: `${DIR}/modules.dep.bin`, content: depmodBin },
    ]);
    const verdict = await verifyModuleImage({ source }, request(ref));
    expect(verdict).to.include({ verified: true, depmod: true });
    expect(verdict.notes.join()).to.include("read depmod's binary index modules.dep.bin instead");
    const corrupt = await setup([
      await ko(`${DIR}/extra/kmm_ci_a.ko`),
      { type: 'file', name: `${DIR}/modules.dep.bin`, content: depmodBin.subarray(0, 40) },
    ]);
    const rejected = await verifyModuleImage({ source: corrupt.source }, request(corrupt.ref));
    expect(rejected.verified).to.equal(false);
    expect(rejected.reason).to.include(
      'modules.dep.bin is not a usable depmod index (modules.dep.bin is truncated)',
    );
  });

  it('names both paths when modules.dep names a .ko.xz but the image holds the .ko', async () => {
    const { ref, source } = await setup([
      await ko(`${DIR}/extra/kmm_ci_a.ko`),
      modulesDep('extra/kmm_ci_a.ko.xz:\n'),
    ]);
    const verdict = await verifyModuleImage({ source }, request(ref));
    expect(verdict.verified).to.equal(false);
    expect(verdict.reason).to.include(
      `modules.dep names /${DIR}/extra/kmm_ci_a.ko.xz but the image holds /${DIR}/extra/kmm_ci_a.ko`,
    );
  });

  it('verifies a compressed module modules.dep names, with - and _ folded', async () => {
    const { ref, source } = await setup([
      await ko(`${DIR}/updates/kmm-ci-a.ko.xz`, { compression: 'xz', signWith: key }),
      modulesDep('updates/kmm-ci-a.ko.xz:\n'),
    ]);
    const verdict = await verifyModuleImage({ source }, request(ref, { requireSignature: true }));
    expect(verdict).to.include({ verified: true, signed: true, path: `/${DIR}/updates/kmm-ci-a.ko.xz` });
  });

  it('finds a dependency in the image, and names one modules.dep lists that is missing', async () => {
    const good = await setup([
      await ko(`${DIR}/extra/kmm_ci_a.ko`, { depends: ['kmm_ci_b'] }),
      await ko(`${DIR}/extra/kmm_ci_b.ko`),
      modulesDep('extra/kmm_ci_a.ko: extra/kmm_ci_b.ko\nextra/kmm_ci_b.ko:\n'),
    ]);
    const found = await verifyModuleImage({ source: good.source }, request(good.ref));
    expect(found.verified).to.equal(true);
    expect(found.dependencies).to.deep.equal({
      found: ['kmm_ci_b'],
      missing: [],
      inTree: [],
      assumedInTree: [],
    });

    const bad = await setup(
      [await ko(`${DIR}/extra/kmm_ci_b.ko`)],
      [
        whiteout(`${DIR}/extra/kmm_ci_b.ko`),
        await ko(`${DIR}/extra/kmm_ci_a.ko`, { depends: ['kmm_ci_b'] }),
        modulesDep('extra/kmm_ci_a.ko: extra/kmm_ci_b.ko\nextra/kmm_ci_b.ko:\n'),
      ],
    );
    const missing = await verifyModuleImage({ source: bad.source }, request(bad.ref));
    expect(missing.verified).to.equal(false);
    expect(missing.dependencies).to.deep.equal({
      found: [],
      missing: ['kmm_ci_b'],
      inTree: [],
      assumedInTree: [],
    });
    expect(missing.reason).to.include(
      'kmm_ci_a needs kmm_ci_b: modules.dep lists extra/kmm_ci_b.ko, which is not in the image',
    );
  });

  describe('dependencies outside the image', () => {
    const outside = async (): Promise<{ source: MemoryImageSource; ref: string }> =>
      setup([
        await ko(`${DIR}/kmm_ci_a.ko`, { depends: ['nvme-core', 'typo_dep'] }),
        modulesDep('kmm_ci_a.ko:\n'),
      ]);
    function inTree(names: string[]): InTreeModuleSource & { asked: number } {
      const source = {
        description: 'driver-toolkit image registry.test/dtk@sha256:1',
        asked: 0,
        load: (): Promise<InTreeModules> => {
          source.asked++;
          return Promise.resolve({ known: true, names: new Set(names) });
        },
      };
      return source;
    }

    it('verifies in-tree ones and names one that is neither in the image nor in-tree', async () => {
      const { ref, source } = await outside();
      const list = inTree(['nvme_core', 'nvme']);
      const verdict = await verifyModuleImage({ source }, request(ref, { inTreeModules: list }));
      expect(verdict.verified).to.equal(false);
      expect(verdict.dependencies).to.deep.equal({
        found: [],
        missing: ['typo_dep'],
        inTree: ['nvme_core'],
        assumedInTree: [],
      });
      expect(verdict.reason).to.equal(
        `kmm_ci_a depends on typo_dep, which is neither in the image under /${DIR}/ nor an in-tree module of ${K}`,
      );
      const good = await verifyModuleImage(
        { source },
        request(ref, { inTreeModules: inTree(['nvme_core', 'typo_dep']) }),
      );
      expect(good.verified, good.reason).to.equal(true);
      expect(good.reason).to.match(/with in-tree nvme_core, typo_dep\)$/);
      expect(list.asked).to.equal(1);
    });

    it('does not read the in-tree list when every dependency is in the image', async () => {
      const { ref, source } = await setup([
        await ko(`${DIR}/extra/kmm_ci_a.ko`, { depends: ['kmm_ci_b'] }),
        await ko(`${DIR}/extra/kmm_ci_b.ko`),
        modulesDep('extra/kmm_ci_a.ko: extra/kmm_ci_b.ko\nextra/kmm_ci_b.ko:\n'),
      ]);
      const list = inTree([]);
      const verdict = await verifyModuleImage({ source }, request(ref, { inTreeModules: list }));
      expect(verdict.verified, verdict.reason).to.equal(true);
      expect(list.asked).to.equal(0);
    });

    it('without an in-tree list, assumes them in-tree and says so', async () => {
      const { ref, source } = await outside();
      const verdict = await verifyModuleImage({ source }, request(ref));
      expect(verdict.verified).to.equal(true);
      expect(verdict.dependencies).to.deep.equal({
        found: [],
        missing: [],
        inTree: [],
        assumedInTree: ['nvme_core', 'typo_dep'],
      });
      expect(verdict.reason).to.include(
        `note: kmm_ci_a depends on nvme_core, typo_dep, not in the image: assumed to be in-tree modules of ${K}, ` +
          'unverified (no in-tree module list for the kernel (no release driver-toolkit given))',
      );
    });

    it('does not keep a verdict drawn while the in-tree list could not be read', async () => {
      const { ref, source } = await outside();
      const cache = new ImageStageCache();
      let reachable = false;
      const flaky: InTreeModuleSource = {
        description: 'driver-toolkit image registry.test/dtk@sha256:1',
        load: () =>
          Promise.resolve(
            reachable
              ? { known: true, names: new Set(['nvme_core']) }
              : { known: false, why: 'registry.test unreachable', transient: true },
          ),
      };
      const first = await verifyModuleImage({ source, cache }, request(ref, { inTreeModules: flaky }));
      expect(first).to.include({ verified: true, definite: false });
      reachable = true;
      const second = await verifyModuleImage({ source, cache }, request(ref, { inTreeModules: flaky }));
      expect(second).to.include({ verified: false, definite: true });
      expect(second.dependencies?.missing).to.deep.equal(['typo_dep']);
    });
  });

  it('checks every module of modulesLoadingOrder', async () => {
    const { ref, source } = await setup([await ko(`${DIR}/kmm_ci_a.ko`), modulesDep('kmm_ci_a.ko:\n')]);
    const verdict = await verifyModuleImage(
      { source },
      {
        reference: ref,
        kernel: K,
        modprobe: { moduleName: 'kmm_ci_a', modulesLoadingOrder: ['kmm_ci_a', 'kmm_ci_b'] },
      },
    );
    expect(verdict.verified).to.equal(false);
    expect(verdict.modules.map((m) => [m.name, m.problem === null])).to.deep.equal([
      ['kmm_ci_a', true],
      ['kmm_ci_b', false],
    ]);
  });

  it('does not see a module deleted by a whiteout or hidden by an opaque directory in a later layer', async () => {
    for (const hide of [whiteout(`${DIR}/kmm_ci_a.ko`), opaqueWhiteout(DIR)]) {
      const { ref, source } = await setup(
        [await ko(`${DIR}/kmm_ci_a.ko`), modulesDep('kmm_ci_a.ko:\n')],
        [hide],
      );
      const verdict = await verifyModuleImage({ source }, request(ref));
      expect(verdict.verified, hide.name).to.equal(false);
      expect(verdict.reason).to.include('module kmm_ci_a is not at');
    }
  });

  it('follows a symlinked kernel directory to the module', async () => {
    const { ref, source } = await setup(
      [await ko(`usr/lib/modules/${K}/kmm_ci_a.ko`), modulesDep('kmm_ci_a.ko:\n', `usr/lib/modules/${K}`)],
      [{ type: 'symlink', name: DIR, target: `/usr/lib/modules/${K}` }],
    );
    const verdict = await verifyModuleImage({ source }, request(ref));
    expect(verdict).to.include({ verified: true, path: `/${DIR}/kmm_ci_a.ko` });
  });

  it('rejects a file at the module path that is not a kernel module', async () => {
    const { ref, source } = await setup([
      { type: 'file', name: `${DIR}/kmm_ci_a.ko`, content: 'not an elf' },
      modulesDep('kmm_ci_a.ko:\n'),
    ]);
    const verdict = await verifyModuleImage({ source }, request(ref));
    expect(verdict.verified).to.equal(false);
    expect(verdict.reason).to.include('is not a loadable kernel module: not an ELF file');
  });

  it('checks firmwarePath: files present, an empty directory (a warning), no directory (a failure)', async () => {
    const base = [await ko(`${DIR}/kmm_ci_a.ko`), modulesDep('kmm_ci_a.ko:\n')];
    const withFirmware = await setup([...base, { type: 'file', name: 'firmware/fw.bin', content: 'fw' }]);
    const emptyDir = await setup([...base, { type: 'directory', name: 'firmware' }]);
    const none = await setup(base);
    const check = (s: { source: MemoryImageSource; ref: string }) =>
      verifyModuleImage(
        { source: s.source },
        request(s.ref, { modprobe: { moduleName: 'kmm_ci_a', firmwarePath: '/firmware' } }),
      );
    expect((await check(withFirmware)).verified).to.equal(true);
    const empty = await check(emptyDir);
    expect(empty.verified).to.equal(true);
    expect(empty.reason).to.include('warning: firmwarePath /firmware is empty');
    const absent = await check(none);
    expect(absent.verified).to.equal(false);
    expect(absent.reason).to.include('firmwarePath /firmware does not exist in the image');
  });

  it('shares one resolution and one read of each layer between many concurrent checks of one image', async () => {
    const { ref, source } = await setup(
      [filler('usr/bin/big')],
      [
        await ko(`${DIR}/kmm_ci_a.ko`),
        await ko(`${DIR}/kmm_ci_b.ko`),
        modulesDep('kmm_ci_a.ko:\nkmm_ci_b.ko:\n'),
      ],
    );
    const cache = new ImageStageCache();
    const verdicts = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        verifyModuleImage({ source, cache }, request(ref, { moduleName: i % 2 ? 'kmm_ci_a' : 'kmm_ci_b' })),
      ),
    );
    expect(verdicts.every((v) => v.verified)).to.equal(true);
    expect(source.resolves).to.equal(1);
    expect(source.opened).to.have.length(1);
    const top = (await source.resolve(ref)).manifest.layers[1]!;
    const record = cache.layers.get(top.digest);
    expect([...(record?.contents.keys() ?? [])], 'module bytes are not kept, their facts are').to.deep.equal([
      `${DIR}/modules.dep`,
    ]);
  });

  it('re-resolves a tag after the TTL (tags move) and answers an unchanged digest from the verdict cache', async () => {
    const { ref, source } = await setup([await ko(`${DIR}/kmm_ci_a.ko`), modulesDep('kmm_ci_a.ko:\n')]);
    let now = 1_000_000;
    const cache = new ImageStageCache({ resolveTtlMs: 10_000, now: () => now });
    await verifyModuleImage({ source, cache }, request(ref));
    now += 5_000;
    await verifyModuleImage({ source, cache }, request(ref));
    expect(source.resolves, 'within the TTL').to.equal(1);
    now += 10_000;
    const again = await verifyModuleImage({ source, cache }, request(ref));
    expect(source.resolves, 'after the TTL').to.equal(2);
    expect(again.verified).to.equal(true);
    expect(source.opened, 'same digest: no layer read again').to.have.length(1);
  });

  it('turns a hostile layer into a definite verdict naming the limit', async () => {
    const entries = Array.from({ length: 60 }, (_, i): TarEntrySpec => ({
      type: 'file',
      name: `junk/${i}`,
      content: '',
    }));
    const { ref, source } = await setup([await ko(`${DIR}/kmm_ci_a.ko`), ...entries]);
    const verdict = await verifyModuleImage({ source, limits: { maxEntriesPerLayer: 50 } }, request(ref));
    expect(verdict).to.include({ verified: false, definite: true, errorCode: 'LIMIT_EXCEEDED' });
    expect(verdict.reason).to.match(
      /^cannot read registry.test\/kmod:v1: layer sha256:\w+ has more than 50 tar entries/,
    );
  });

  it('names the module over the module size limit (stored or decompressed), not the image', async () => {
    const big = await setup([
      await ko(`${DIR}/extra/kmm_ci_a.ko`, { textSize: 300_000 }),
      modulesDep('extra/kmm_ci_a.ko:\n'),
    ]);
    const stored = await verifyModuleImage(
      { source: big.source, limits: { maxFileBytes: 200_000 } },
      request(big.ref),
    );
    expect(stored).to.include({ verified: false, definite: true, errorCode: null });
    expect(stored.reason).to.match(
      /^\/opt\/lib\/modules\/[^/]+\/extra\/kmm_ci_a\.ko is not a loadable kernel module: kmm_ci_a\.ko is 30\d{4} bytes, over the 200000-byte module size limit$/,
    );
    const zstd = await setup([
      await ko(`${DIR}/extra/kmm_ci_a.ko.zst`, { compression: 'zstd', textSize: 300_000 }),
      modulesDep('extra/kmm_ci_a.ko.zst:\n'),
    ]);
    const inflated = await verifyModuleImage(
      { source: zstd.source, limits: { maxFileBytes: 200_000 } },
      request(zstd.ref),
    );
    expect(inflated).to.include({ verified: false, definite: true, errorCode: null });
    expect(inflated.path).to.equal(`/${DIR}/extra/kmm_ci_a.ko.zst`);
    expect(inflated.reason).to.match(
      /kmm_ci_a\.ko\.zst decompresses to more than 200000 bytes \(module size limit\)$/,
    );
  });

  it('names the architecture a module is built for when it is not the nodes', async () => {
    const source = new MemoryImageSource();
    const layer = await buildLayer([await ko(`${DIR}/kmm_ci_a.ko`), modulesDep('kmm_ci_a.ko:\n')]);
    source.add('registry.test/kmod:arm', [layer]);
    const verdict = await verifyModuleImage(
      { source },
      request('registry.test/kmod:arm', { platform: { os: 'linux', architecture: 'arm64' } }),
    );
    expect(verdict.reason).to.equal(
      `/${DIR}/kmm_ci_a.ko is built for amd64 (ELF machine 62), but the nodes are arm64`,
    );
  });

  it('reports an unreachable registry as not definite and does not cache it', async () => {
    const { ref, source } = await setup([await ko(`${DIR}/kmm_ci_a.ko`), modulesDep('kmm_ci_a.ko:\n')]);
    let failures = 1;
    const flaky: ImageSource = {
      resolve: (reference, options) => source.resolve(reference, options),
      openBlob: (image: ResolvedImage, descriptor, options): Promise<Readable> => {
        if (failures-- > 0) {
          return Promise.reject(
            new ImageError('UNREACHABLE', 'registry.test unreachable after 4 tries (ECONNRESET)'),
          );
        }
        return source.openBlob(image, descriptor, options);
      },
    };
    const cache = new ImageStageCache();
    const first = await verifyModuleImage({ source: flaky, cache }, request(ref));
    expect(first).to.include({ verified: false, definite: false, errorCode: 'UNREACHABLE' });
    expect(first.reason).to.match(/^registry unreachable for registry.test\/kmod:v1: .*after 4 tries/);
    const second = await verifyModuleImage({ source: flaky, cache }, request(ref));
    expect(second.verified).to.equal(true);
  });
});
