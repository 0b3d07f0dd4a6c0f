import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync, zstdDecompressSync } from 'node:zlib';

import { expect } from 'chai';
import { extract } from 'tar-stream';

import { ImageError } from '../../../src/image/source.ts';
import { MediaType } from '../../../src/image/registry/media-types.ts';
import { OciLayoutSource, parseLayoutReference } from '../../../src/image/oci-layout/source.ts';
import {
  buildLayer,
  buildTar,
  opaqueWhiteout,
  whiteout,
  type TarEntrySpec,
} from '../../../src/image/oci-layout/tar-layer.ts';
import { writeImage, writeImageManifest, writeIndex } from '../../../src/image/oci-layout/writer.ts';
import { readAll, rejection } from '../../support/image-assertions.ts';

const amd64 = { os: 'linux', architecture: 'amd64' };
const arm64 = { os: 'linux', architecture: 'arm64' };

async function listTar(
  tar: Buffer,
): Promise<Array<{ name: string; type: string; linkname?: string | null }>> {
  const entries: Array<{ name: string; type: string; linkname?: string | null }> = [];
  const ex = extract();
  ex.end(tar);
  for await (const entry of ex) {
    entries.push({
      name: entry.header.name,
      type: entry.header.type ?? 'file',
      linkname: entry.header.linkname,
    });
    entry.resume();
  }
  return entries;
}

describe('OCI layout: tar layers', () => {
  it('writes names verbatim, with whiteouts, opaque markers, links and ./ and / prefixes', async () => {
    const entries: TarEntrySpec[] = [
      { type: 'directory', name: './lib/modules/' },
      { type: 'file', name: '/lib/modules/a.ko', content: 'ELF' },
      { type: 'symlink', name: 'lib/modules/b.ko', target: 'a.ko' },
      { type: 'link', name: 'lib/modules/c.ko', target: 'lib/modules/a.ko' },
      whiteout('opt/lib/modules/old'),
      opaqueWhiteout('opt/extra/'),
    ];
    const listed = await listTar(await buildTar(entries));
    expect(listed.map((e) => [e.name, e.type])).to.deep.equal([
      ['./lib/modules/', 'directory'],
      ['/lib/modules/a.ko', 'file'],
      ['lib/modules/b.ko', 'symlink'],
      ['lib/modules/c.ko', 'link'],
      ['opt/lib/modules/.wh.old', 'file'],
      ['opt/extra/.wh..wh..opq', 'file'],
    ]);
    expect(listed[2]?.linkname).to.equal('a.ko');
    expect(whiteout('top')).to.deep.equal({ type: 'file', name: '.wh.top' });
  });

  it('compresses with gzip, zstd or not at all, with the matching media type and diff id', async () => {
    const entries: TarEntrySpec[] = [{ type: 'file', name: 'x', content: 'x'.repeat(1000) }];
    const tar = await buildTar(entries);
    const gzip = await buildLayer(entries);
    const zstd = await buildLayer(entries, { compression: 'zstd' });
    const plain = await buildLayer(entries, { compression: 'none' });
    const docker = await buildLayer(entries, { format: 'docker' });
    expect(gzip.mediaType).to.equal(MediaType.ociLayerGzip);
    expect(gunzipSync(gzip.data).equals(tar)).to.be.true;
    expect(zstd.mediaType).to.equal(MediaType.ociLayerZstd);
    expect(zstdDecompressSync(zstd.data).equals(tar)).to.be.true;
    expect(plain.data.equals(tar)).to.be.true;
    expect(docker.mediaType).to.equal(MediaType.dockerLayerGzip);
    expect(new Set([gzip.diffId, zstd.diffId, plain.diffId, docker.diffId]).size).to.equal(1);
    await buildLayer(entries, { format: 'docker', compression: 'zstd' }).then(
      () => expect.fail('docker has no zstd type'),
      (err: Error) => expect(err.message).to.match(/no zstd/),
    );
  });
});

describe('OCI layout: references', () => {
  it('ends the directory at the first colon, as skopeo does, and resolves relative directories', () => {
    expect(parseLayoutReference('oci:/a/b:v1', '/x')).to.deep.equal({ dir: '/a/b', tag: 'v1' });
    expect(parseLayoutReference('oci:rel', '/x')).to.deep.equal({ dir: '/x/rel' });
    for (const bad of ['oci:', 'oci::v1', 'oci:/a:', 'docker://x']) {
      expect(() => parseLayoutReference(bad, '/x'), bad)
        .to.throw(ImageError)
        .with.property('code', 'INVALID_REFERENCE');
    }
  });
});

describe('OCI layout: source', () => {
  let dir: string;
  const source = new OciLayoutSource();
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kmm-layout-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('resolves a tagged image and streams its verified layers', async () => {
    const layer = await buildLayer([{ type: 'file', name: 'lib/modules/k/m.ko', content: 'module' }]);
    const written = await writeImage(dir, { tag: 'v1', layers: [layer] });
    const image = await source.resolve(`oci:${dir}:v1`, { platform: amd64 });
    expect(image.reference).to.equal(`oci:${dir}:v1`);
    expect(image.digest).to.equal(written.digest);
    expect(image.indexDigest).to.be.undefined;
    expect(image.platform).to.deep.equal(amd64);
    expect(image.manifest.layers).to.have.length(1);
    const blob = await readAll(await source.openBlob(image, image.manifest.layers[0]!));
    expect(blob.equals(layer.data)).to.be.true;
  });

  it('fails the stream with DIGEST_MISMATCH when a blob on disk was altered', async () => {
    const layer = await buildLayer([{ type: 'file', name: 'a', content: 'a' }]);
    await writeImage(dir, { tag: 'v1', layers: [layer] });
    const image = await source.resolve(`oci:${dir}:v1`, { platform: amd64 });
    const descriptor = image.manifest.layers[0]!;
    const tampered = Buffer.from(layer.data);
    tampered.writeUInt8(tampered.readUInt8(tampered.length - 1) ^ 1, tampered.length - 1);
    await writeFile(join(dir, 'blobs', 'sha256', descriptor.digest.slice(7)), tampered);
    const err = await rejection(readAll(await source.openBlob(image, descriptor)));
    expect(err.code).to.equal('DIGEST_MISMATCH');
  });

  it('uses the only manifest when no tag is given, and refuses to guess among several', async () => {
    const layer = await buildLayer([{ type: 'file', name: 'a' }]);
    const first = await writeImage(dir, { layers: [layer] });
    expect((await source.resolve(`oci:${dir}`, { platform: amd64 })).digest).to.equal(first.digest);
    await writeImage(dir, { tag: 'two', layers: [layer], annotations: { n: '2' } });
    const err = await rejection(source.resolve(`oci:${dir}`, { platform: amd64 }));
    expect(err.code).to.equal('INVALID_REFERENCE');
    expect(err.message).to.contain('tags: two');
    expect((await rejection(source.resolve(`oci:${dir}:nope`, { platform: amd64 }))).code).to.equal(
      'NOT_FOUND',
    );
    const missing = await rejection(source.resolve(`oci:${join(dir, 'absent')}:v1`, { platform: amd64 }));
    expect(missing.code).to.equal('NOT_FOUND');
    expect(missing.message).to.contain('not an OCI image layout');
  });

  for (const format of ['oci', 'docker'] as const) {
    it(`selects the platform from a ${format} multi-arch index and skips attestations`, async () => {
      const amdImage = await writeImageManifest(dir, {
        format,
        platform: amd64,
        layers: [await buildLayer([{ type: 'file', name: 'amd' }], { format })],
      });
      const armImage = await writeImageManifest(dir, {
        format,
        platform: { ...arm64, variant: 'v8' },
        layers: [await buildLayer([{ type: 'file', name: 'arm' }], { format })],
      });
      const attestation = {
        ...(await writeImageManifest(dir, { layers: [] })),
        platform: { os: 'unknown', architecture: 'unknown' },
        annotations: { 'vnd.docker.reference.type': 'attestation-manifest' },
      };
      const index = await writeIndex(dir, {
        tag: 'multi',
        format,
        manifests: [attestation, amdImage, armImage],
      });
      const arm = await source.resolve(`oci:${dir}:multi`, {
        platform: { os: 'linux', architecture: 'aarch64' },
      });
      expect(arm.digest).to.equal(armImage.digest);
      expect(arm.indexDigest).to.equal(index.digest);
      expect(arm.platform).to.deep.equal({ ...arm64, variant: 'v8' });
      expect((await source.resolve(`oci:${dir}:multi`, { platform: amd64 })).digest).to.equal(
        amdImage.digest,
      );
      const err = await rejection(
        source.resolve(`oci:${dir}:multi`, { platform: { os: '', architecture: 's390x' } }),
      );
      expect(err.code).to.equal('NO_PLATFORM');
      expect(err.message).to.contain('no image for linux/s390x').and.contain('linux/amd64, linux/arm64/v8');
      expect(err.definite).to.be.true;
    });
  }

  it('reads OCI manifests and indexes without mediaType in the body', async () => {
    const child = await writeImageManifest(dir, { omitMediaType: true, layers: [] });
    await writeIndex(dir, { tag: 'bare', omitMediaType: true, manifests: [child] });
    const image = await source.resolve(`oci:${dir}:bare`, { platform: amd64 });
    expect(image.digest).to.equal(child.digest);
    expect(image.manifest.mediaType).to.equal(MediaType.ociManifest);
  });

  it('reports a single-platform image built for another architecture as NO_PLATFORM', async () => {
    await writeImage(dir, { tag: 'arm', platform: arm64, layers: [] });
    const err = await rejection(source.resolve(`oci:${dir}:arm`, { platform: amd64 }));
    expect(err.code).to.equal('NO_PLATFORM');
    expect(err.message).to.contain('no image for linux/amd64').and.contain('linux/arm64');
  });

  it('refuses manifests above the size limit', async () => {
    await writeImage(dir, { tag: 'big', layers: [], annotations: { pad: 'x'.repeat(2000) } });
    const small = new OciLayoutSource({ maxManifestBytes: 1000 });
    expect((await rejection(small.resolve(`oci:${dir}:big`, { platform: amd64 }))).code).to.equal(
      'LIMIT_EXCEEDED',
    );
  });
});
