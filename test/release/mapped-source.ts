import { Transform } from 'node:stream';

import { ART_REPOSITORY, type ReleaseFixture } from '../../src/fixtures/release.ts';
import { OciLayoutSource } from '../../src/image/oci-layout/source.ts';
import { ImageError, type Descriptor, type ImageSource, type ResolvedImage } from '../../src/image/source.ts';

export const RELEASE_REPO = 'quay.io/openshift-release-dev/ocp-release';

/**
 * A registry double backed by real OCI layouts: registry references are served from the layout images they are
 * mapped to (what a push would have done); it counts resolutions and the bytes of every blob read.
 */
export class MappedSource implements ImageSource {
  readonly layouts = new OciLayoutSource();
  readonly map = new Map<string, string>();
  readonly resolved: string[] = [];
  blobBytes = 0;
  blobsOpened: string[] = [];
  unreachable = new Set<string>();

  async resolve(reference: string, options: Parameters<ImageSource['resolve']>[1]) {
    this.resolved.push(reference);
    if (this.unreachable.has(reference))
      throw new ImageError('UNREACHABLE', `${reference}: connect ECONNREFUSED`);
    const layout = this.map.get(reference);
    if (layout === undefined) throw new ImageError('NOT_FOUND', `${reference}: manifest unknown`);
    return this.layouts.resolve(layout, options);
  }

  async openBlob(image: ResolvedImage, descriptor: Descriptor) {
    this.blobsOpened.push(descriptor.digest);
    const stream = await this.layouts.openBlob(image, descriptor);
    const count = new Transform({
      transform: (chunk: Buffer, _encoding, done) => {
        this.blobBytes += chunk.length;
        done(null, chunk);
      },
    });
    return stream.pipe(count);
  }

  /** Serves a fixture as a registry would: the release by tag and digest, its driver-toolkit by digest. */
  publish(fixture: ReleaseFixture, releaseRepo = RELEASE_REPO, dtkRepo = ART_REPOSITORY): void {
    this.map.set(`${releaseRepo}:${fixture.releaseTag}`, fixture.releaseLayoutReference);
    this.map.set(`${releaseRepo}@${fixture.releaseDigest}`, fixture.releaseLayoutReference);
    this.map.set(`${dtkRepo}@${fixture.driverToolkitDigest}`, fixture.driverToolkitLayoutReference);
  }
}
