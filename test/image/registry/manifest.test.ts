import { Readable } from 'node:stream';

import { expect } from 'chai';

import {
  computeDigest,
  DigestVerifier,
  parseDigest,
  verifyDigest,
} from '../../../src/image/registry/digest.ts';
import { parseManifest, selectPlatform } from '../../../src/image/registry/manifest.ts';
import { MediaType } from '../../../src/image/registry/media-types.ts';
import type { Descriptor } from '../../../src/image/source.ts';
import { ImageError } from '../../../src/image/source.ts';

const digest = (n: number): string => `sha256:${String(n).repeat(64).slice(0, 64)}`;
const entry = (
  platform: Descriptor['platform'],
  annotations?: Record<string, string>,
  n = 1,
): Descriptor => ({
  mediaType: MediaType.ociManifest,
  digest: digest(n),
  size: 10,
  ...(platform ? { platform } : {}),
  ...(annotations ? { annotations } : {}),
});
const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(ImageError);
    return (err as ImageError).code;
  }
  throw new Error('expected an ImageError');
}

describe('registry: manifest parsing', () => {
  const config = { mediaType: MediaType.ociConfig, digest: digest(2), size: 2 };

  it('takes the type from the body, else from Content-Type, else from the shape', () => {
    const body = { schemaVersion: 2, config, layers: [] };
    expect(
      parseManifest(json({ ...body, mediaType: MediaType.dockerManifest }), MediaType.ociManifest, 'x'),
    ).to.deep.include({
      kind: 'image',
    });
    const fromHeader = parseManifest(json(body), `${MediaType.dockerManifest}; charset=utf-8`, 'x');
    expect(fromHeader.kind === 'image' && fromHeader.manifest.mediaType).to.equal(MediaType.dockerManifest);
    const fromShape = parseManifest(json(body), 'application/octet-stream', 'x');
    expect(fromShape.kind === 'image' && fromShape.manifest.mediaType).to.equal(MediaType.ociManifest);
    const index = parseManifest(json({ schemaVersion: 2, manifests: [entry(undefined)] }), undefined, 'x');
    expect(index.kind === 'index' && index.mediaType).to.equal(MediaType.ociIndex);
  });

  it('refuses schema 1, unknown types, and malformed descriptors, naming the field', () => {
    expect(codeOf(() => parseManifest(json({ schemaVersion: 1, fsLayers: [] }), undefined, 'x'))).to.equal(
      'UNSUPPORTED_MEDIA_TYPE',
    );
    expect(
      codeOf(() => parseManifest(json({ mediaType: 'application/vnd.x', layers: [] }), undefined, 'x')),
    ).to.equal('UNSUPPORTED_MEDIA_TYPE');
    expect(codeOf(() => parseManifest(Buffer.from('{'), undefined, 'x'))).to.equal('INVALID_MANIFEST');
    expect(() =>
      parseManifest(
        json({ mediaType: MediaType.ociManifest, config, layers: [{ ...config, size: -1 }] }),
        undefined,
        'img',
      ),
    ).to.throw(ImageError, 'img: layers[0].size is not a non-negative integer');
    expect(() =>
      parseManifest(
        json({ mediaType: MediaType.ociManifest, config: { ...config, digest: 'md5:ab' }, layers: [] }),
        undefined,
        'img',
      ),
    ).to.throw(ImageError, 'img: config.digest: "md5:ab" is not a digest');
  });
});

describe('registry: platform selection', () => {
  const amd = entry({ os: 'linux', architecture: 'amd64' }, undefined, 1);
  const armV7 = entry({ os: 'linux', architecture: 'arm', variant: 'v7' }, undefined, 2);
  const arm64 = entry({ os: 'linux', architecture: 'arm64' }, undefined, 3);
  const arm64v8 = entry({ os: 'linux', architecture: 'arm64', variant: 'v8' }, undefined, 4);
  const attestation = entry(
    { os: 'unknown', architecture: 'unknown' },
    { 'vnd.docker.reference.type': 'attestation-manifest' },
    5,
  );
  const windows = entry({ os: 'windows', architecture: 'amd64' }, undefined, 6);

  it('matches os and architecture, with kernel spellings of the architecture', () => {
    expect(
      selectPlatform([attestation, windows, amd], { os: 'linux', architecture: 'x86_64' }, 'x'),
    ).to.equal(amd);
    expect(selectPlatform([amd, arm64, arm64v8], { os: '', architecture: 'aarch64' }, 'x')).to.equal(arm64v8);
    expect(selectPlatform([amd, arm64], { os: 'linux', architecture: 'arm64' }, 'x')).to.equal(arm64);
    expect(selectPlatform([armV7], { os: 'linux', architecture: 'arm', variant: 'v7' }, 'x')).to.equal(armV7);
  });

  it('reports NO_PLATFORM with what the index has, never picking an attestation or an entry without platform', () => {
    const err = (() => {
      try {
        selectPlatform(
          [attestation, entry(undefined), windows, armV7],
          { os: 'linux', architecture: 'amd64' },
          'img',
        );
      } catch (e) {
        return e as ImageError;
      }
      throw new Error('expected NO_PLATFORM');
    })();
    expect(err.code).to.equal('NO_PLATFORM');
    expect(err.message).to.equal('img: no image for linux/amd64 (the index has windows/amd64, linux/arm/v7)');
    expect(
      codeOf(() => selectPlatform([armV7], { os: 'linux', architecture: 'arm', variant: 'v6' }, 'x')),
    ).to.equal('NO_PLATFORM');
  });
});

describe('registry: digests', () => {
  const bytes = Buffer.from('hello registry');
  const good = computeDigest(bytes);

  it('parses and verifies digests of known algorithms only', () => {
    expect(parseDigest(good, 'x').algorithm).to.equal('sha256');
    expect(computeDigest(bytes, 'sha512')).to.match(/^sha512:[0-9a-f]{128}$/);
    for (const bad of ['sha256:ABC', 'sha256:abc', 'md5:d41d8cd98f00b204e9800998ecf8427e', 'nocolon']) {
      expect(
        codeOf(() => parseDigest(bad, 'x')),
        bad,
      ).to.equal('INVALID_MANIFEST');
    }
    verifyDigest(bytes, good, 'x');
    expect(codeOf(() => verifyDigest(Buffer.from('other'), good, 'x'))).to.equal('DIGEST_MISMATCH');
  });

  async function drain(chunks: Buffer[], expected: string, size: number | undefined): Promise<Buffer> {
    const out: Buffer[] = [];
    for await (const chunk of Readable.from(chunks).pipe(new DigestVerifier(expected, size, 'blob')))
      out.push(chunk as Buffer);
    return Buffer.concat(out);
  }

  it('passes verified bytes through and fails at the end on a wrong digest or size', async () => {
    expect((await drain([bytes.subarray(0, 5), bytes.subarray(5)], good, bytes.length)).equals(bytes)).to.be
      .true;
    for (const [chunks, size] of [
      [[Buffer.from('hello registrY')], bytes.length],
      [[bytes.subarray(0, 5)], bytes.length],
      [[bytes], bytes.length + 1],
    ] as const) {
      const err = await drain([...chunks], good, size).then(
        () => undefined,
        (e: unknown) => e as ImageError,
      );
      expect(err?.code).to.equal('DIGEST_MISMATCH');
    }
  });

  it('stops passing bytes as soon as more arrive than the descriptor declares', async () => {
    const received: Buffer[] = [];
    const verifier = new DigestVerifier(good, 4, 'blob');
    verifier.on('data', (chunk: Buffer) => received.push(chunk));
    const failed = new Promise<ImageError>((resolve) =>
      verifier.on('error', (e) => resolve(e as ImageError)),
    );
    verifier.write(bytes.subarray(0, 3));
    verifier.write(bytes.subarray(3, 8));
    expect((await failed).message).to.contain('more than the 4 bytes');
    expect(Buffer.concat(received).length).to.equal(3);
  });
});
