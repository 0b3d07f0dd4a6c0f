import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';

import { OciLayoutSource } from '../../../src/image/oci-layout/source.ts';
import { buildLayer } from '../../../src/image/oci-layout/tar-layer.ts';
import { writeImageManifest } from '../../../src/image/oci-layout/writer.ts';
import { ImageError } from '../../../src/image/source.ts';

const amd64 = { os: 'linux', architecture: 'amd64' };

describe('OCI layout: manifests named by digest', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kmm-layout-digest-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('resolves oci:<dir>@<digest> from the blobs alone, without an index.json entry', async () => {
    const layer = await buildLayer([{ type: 'file', name: 'etc/hello', content: 'hi' }]);
    const descriptor = await writeImageManifest(dir, { layers: [layer], platform: amd64 });
    const image = await new OciLayoutSource().resolve(`oci:${dir}@${descriptor.digest}`, { platform: amd64 });
    expect(image.digest).to.equal(descriptor.digest);
    expect(image.reference).to.equal(`oci:${dir}@${descriptor.digest}`);
    expect(image.manifest.layers).to.have.length(1);
  });

  it('reports a digest the layout does not hold as NOT_FOUND', async () => {
    const missing = `sha256:${'0'.repeat(64)}`;
    try {
      await new OciLayoutSource().resolve(`oci:${dir}@${missing}`, { platform: amd64 });
      expect.fail('expected an error');
    } catch (err) {
      expect(err).to.be.instanceOf(ImageError);
      expect((err as ImageError).code).to.equal('NOT_FOUND');
    }
  });
});
