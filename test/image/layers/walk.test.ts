import { expect } from 'chai';

import { LayerCache } from '../../../src/image/layers/layer-cache.ts';
import { findFiles, LayerWalk } from '../../../src/image/layers/walk.ts';
import {
  buildLayer,
  buildTar,
  compressLayer,
  opaqueWhiteout,
  whiteout,
  type TarEntrySpec,
} from '../../../src/image/oci-layout/tar-layer.ts';
import { ImageError } from '../../../src/image/source.ts';
import { MemoryImageSource } from './memory-source.ts';

const file = (name: string, content = name): TarEntrySpec => ({ type: 'file', name, content });

async function image(...layers: TarEntrySpec[][]): Promise<{ source: MemoryImageSource; ref: string }> {
  const source = new MemoryImageSource();
  source.add('test/image', await Promise.all(layers.map((entries) => buildLayer(entries))));
  return { source, ref: 'test/image' };
}

async function find(
  layers: TarEntrySpec[][],
  wanted: string[],
): Promise<{ files: Map<string, string>; source: MemoryImageSource }> {
  const { source, ref } = await image(...layers);
  const found = await findFiles(source, await source.resolve(ref), wanted);
  return { files: new Map([...found].map(([k, v]) => [k, v.toString()])), source };
}

describe('image layers: findFiles', () => {
  it('finds a file in the top layer without opening the lower ones', async () => {
    const { files, source } = await find(
      [[file('big/lower.bin', 'x'.repeat(10_000))], [file('etc/release.json', '{"v":1}')]],
      ['/etc/release.json'],
    );
    expect(files.get('etc/release.json')).to.equal('{"v":1}');
    expect(source.opened).to.have.length(1);
  });

  it('takes the upper copy of a path and reads lower layers only when needed', async () => {
    const { files, source } = await find(
      [[file('a', 'lower'), file('b', 'only-lower')], [file('a', 'upper')]],
      ['a', 'b'],
    );
    expect(Object.fromEntries(files)).to.deep.equal({ a: 'upper', b: 'only-lower' });
    expect(source.opened).to.have.length(2);
  });

  it('normalises ./ and leading / in tar names and in wanted paths', async () => {
    const { files } = await find(
      [[file('./opt/x.ko', 'dot'), file('/etc/y', 'slash')]],
      ['opt/x.ko', './etc/y'],
    );
    expect(Object.fromEntries(files)).to.deep.equal({ 'opt/x.ko': 'dot', 'etc/y': 'slash' });
  });

  it('applies a whiteout to lower layers only, and to the whole subtree', async () => {
    const { files } = await find(
      [
        [file('opt/lib/a.ko'), file('opt/lib/sub/b.ko'), file('keep')],
        [whiteout('opt/lib/a.ko'), whiteout('opt/lib/sub'), file('opt/lib/sub/c.ko', 'same-layer')],
      ],
      ['opt/lib/a.ko', 'opt/lib/sub/b.ko', 'opt/lib/sub/c.ko', 'keep'],
    );
    expect(Object.fromEntries(files)).to.deep.equal({ 'opt/lib/sub/c.ko': 'same-layer', keep: 'keep' });
  });

  it('stops at a whiteout: a deleted path is decided without reading lower layers', async () => {
    const { files, source } = await find([[file('gone')], [file('x')], [whiteout('gone')]], ['gone']);
    expect(files.size).to.equal(0);
    expect(source.opened).to.have.length(1);
  });

  it('hides lower children of an opaque directory but keeps its own layer entries, whatever the tar order', async () => {
    const { files } = await find(
      [
        [file('opt/lib/modules/k/old.ko'), file('opt/other')],
        [file('opt/lib/modules/k/new.ko'), opaqueWhiteout('opt/lib/modules/k')],
      ],
      ['opt/lib/modules/k/old.ko', 'opt/lib/modules/k/new.ko', 'opt/other'],
    );
    expect([...files.keys()].sort()).to.deep.equal(['opt/lib/modules/k/new.ko', 'opt/other']);
  });

  it('hides what lower layers put under a path an upper layer made a file', async () => {
    const { files } = await find([[file('opt/lib/x.ko')], [file('opt/lib', 'now a file')]], ['opt/lib/x.ko']);
    expect(files.size).to.equal(0);
  });

  it('follows a symlink to a file in a lower layer, and a relative one', async () => {
    const { files, source } = await find(
      [
        [file('usr/lib/modules/k/extra/m.ko', 'real')],
        [
          { type: 'symlink', name: 'opt/lib/modules/k/m.ko', target: '/usr/lib/modules/k/extra/m.ko' },
          { type: 'symlink', name: 'opt/rel.ko', target: '../usr/lib/modules/k/extra/m.ko' },
        ],
      ],
      ['opt/lib/modules/k/m.ko', 'opt/rel.ko'],
    );
    expect(Object.fromEntries(files)).to.deep.equal({
      'opt/lib/modules/k/m.ko': 'real',
      'opt/rel.ko': 'real',
    });
    expect(source.opened, 'the link target is kept in the same pass').to.have.length(2);
  });

  it('follows a symlinked directory on the way to a file', async () => {
    const { files } = await find(
      [
        [file('usr/lib/modules/k/m.ko', 'real')],
        [{ type: 'symlink', name: 'opt/lib/modules', target: '/usr/lib/modules' }],
      ],
      ['opt/lib/modules/k/m.ko'],
    );
    expect(files.get('opt/lib/modules/k/m.ko')).to.equal('real');
  });

  it('fetches a link target that lies in an upper layer with a second read of that layer only', async () => {
    const { files, source } = await find(
      [
        [{ type: 'symlink', name: 'opt/m.ko', target: 'real/m.ko' }],
        [file('opt/real/m.ko', 'upper content')],
      ],
      ['opt/m.ko'],
    );
    expect(files.get('opt/m.ko')).to.equal('upper content');
    expect(source.opened).to.have.length(3);
  });

  it('does not report dangling links, links to directories or link loops as files', async () => {
    const { files } = await find(
      [
        [
          { type: 'symlink', name: 'dangling', target: '/nowhere' },
          { type: 'directory', name: 'dir' },
          { type: 'symlink', name: 'to-dir', target: 'dir' },
          { type: 'symlink', name: 'loop-a', target: 'loop-b' },
          { type: 'symlink', name: 'loop-b', target: 'loop-a' },
        ],
      ],
      ['dangling', 'to-dir', 'loop-a'],
    );
    expect(files.size).to.equal(0);
  });

  it('resolves hard links, also to a file not kept on the first read', async () => {
    const { files } = await find(
      [[file('usr/m.ko', 'linked'), { type: 'link', name: 'opt/m.ko', target: 'usr/m.ko' }]],
      ['opt/m.ko'],
    );
    expect(files.get('opt/m.ko')).to.equal('linked');
  });

  it('reads zstd and uncompressed layers, detected by their bytes', async () => {
    const source = new MemoryImageSource();
    const zstd = await buildLayer([file('z', 'zstd')], { compression: 'zstd' });
    const plain = await buildLayer([file('p', 'plain')], { compression: 'none' });
    const image = source.add('mixed', [zstd, plain]);
    const found = await findFiles(source, image, ['z', 'p']);
    expect(found.get('z')?.toString()).to.equal('zstd');
    expect(found.get('p')?.toString()).to.equal('plain');
  });

  it('with lastLayerOnly reads only the top layer', async () => {
    const { source, ref } = await image(
      [file('release-manifests/old')],
      [file('release-manifests/image-references', 'refs')],
    );
    const found = await findFiles(
      source,
      await source.resolve(ref),
      (p) => p.startsWith('release-manifests/'),
      {
        lastLayerOnly: true,
      },
    );
    expect([...found.keys()]).to.deep.equal(['release-manifests/image-references']);
    expect(source.opened).to.have.length(1);
  });

  it('with a predicate reads every layer and returns every matching visible file', async () => {
    const { source, ref } = await image(
      [file('m/a'), file('m/b')],
      [whiteout('m/b'), file('m/c'), file('n/d')],
    );
    const found = await findFiles(source, await source.resolve(ref), (p) => p.startsWith('m/'));
    expect([...found.keys()].sort()).to.deep.equal(['m/a', 'm/c']);
  });
});

describe('image layers: limits against hostile images', () => {
  async function expectLimit(
    layers: Awaited<ReturnType<typeof buildLayer>>[],
    limits: object,
    pattern: RegExp,
  ) {
    const source = new MemoryImageSource();
    const resolved = source.add('hostile', layers);
    const error = await findFiles(source, resolved, ['x'], { limits }).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(error).to.be.instanceOf(ImageError);
    expect((error as ImageError).code).to.equal('LIMIT_EXCEEDED');
    expect((error as ImageError).message).to.match(pattern);
  }

  it('limits the tar entries of a layer', async () => {
    const entries = Array.from({ length: 50 }, (_, i) => file(`f${i}`));
    await expectLimit([await buildLayer(entries)], { maxEntriesPerLayer: 20 }, /more than 20 tar entries/);
  });

  it('limits the uncompressed bytes of a layer', async () => {
    await expectLimit(
      [await buildLayer([file('big', 'y'.repeat(100_000))])],
      { maxLayerBytes: 50_000 },
      /more than 50000 uncompressed bytes/,
    );
  });

  it('limits the decompression ratio', async () => {
    const bomb = compressLayer(await buildTar([file('zeros', '\0'.repeat(2_000_000))]));
    await expectLimit(
      [bomb],
      { maxCompressionRatio: 20, ratioCheckAfterBytes: 100_000 },
      /decompresses more than 20 times/,
    );
  });

  it('limits the size of a file it reads', async () => {
    await expectLimit(
      [await buildLayer([file('x', 'z'.repeat(5000))])],
      { maxFileBytes: 1000 },
      /x in layer .* over the 1000-byte file limit/,
    );
  });

  it('rejects a layer that is not a tar', async () => {
    const source = new MemoryImageSource();
    const resolved = source.add('junk', [
      { mediaType: 'application/vnd.oci.image.layer.v1.tar', data: Buffer.alloc(2048, 7) },
    ]);
    const error = (await findFiles(source, resolved, ['x']).catch((err: unknown) => err)) as ImageError;
    expect(error.code).to.equal('UNSUPPORTED_MEDIA_TYPE');
  });
});

describe('image layers: cache', () => {
  it('answers a second walk from the cache and shares one read between concurrent walks', async () => {
    const { source, ref } = await image([file('low')], [file('opt/m.ko', 'module')]);
    const resolved = await source.resolve(ref);
    const cache = new LayerCache(64 * 1024 * 1024);
    const want = (p: string): boolean => p === 'low' || p === 'opt/m.ko';
    const walks = await Promise.all(
      [1, 2, 3].map(() => new LayerWalk(source, resolved, { want, cache }).run()),
    );
    expect(source.opened).to.have.length(2);
    const again = await new LayerWalk(source, resolved, { want, cache }).run();
    expect(again.stats).to.include({ layersRead: 0, layersFromCache: 2 });
    expect(source.opened).to.have.length(2);
    const found = walks[0]?.view.lookupFile('opt/m.ko');
    expect(found?.state).to.equal('present');
  });

  it('gives every concurrent walk the files it wants when they want different files of one layer', async () => {
    const names = Array.from({ length: 8 }, (_, i) => `opt/m${i}.ko`);
    const { source, ref } = await image(names.map((n) => file(n)));
    const resolved = await source.resolve(ref);
    const cache = new LayerCache(64 * 1024 * 1024);
    const found = await Promise.all(names.map((name) => findFiles(source, resolved, [name], { cache })));
    expect(found.map((f, i) => f.get(names[i] ?? '')?.toString())).to.deep.equal(names);
    const again = await findFiles(source, resolved, names, { cache });
    expect(again.size, 'the cached record holds the union of what the reads kept').to.equal(names.length);
  });

  it('reads a cached layer again when a walk wants a file the cached record did not keep', async () => {
    const { source, ref } = await image([file('a'), file('b')]);
    const resolved = await source.resolve(ref);
    const cache = new LayerCache(64 * 1024 * 1024);
    await findFiles(source, resolved, ['a'], { cache });
    const found = await findFiles(source, resolved, ['b'], { cache });
    expect(found.get('b')?.toString()).to.equal('b');
    expect(source.opened).to.have.length(2);
    await findFiles(source, resolved, ['a', 'b'], { cache });
    expect(source.opened, 'the second read kept both').to.have.length(2);
  });
});
