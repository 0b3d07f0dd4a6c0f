import { expect } from 'chai';
import { expectReleaseError } from './expect-release-error.ts';
import { driverToolkitImage, parseImageReferences, parseReleaseMetadata } from '../../src/release/payload.ts';

const DTK = `quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:${'a'.repeat(64)}`;

function imageStream(tags: unknown[], overrides: Record<string, unknown> = {}): string {
  return JSON.stringify(
    {
      kind: 'ImageStream',
      apiVersion: 'image.openshift.io/v1',
      metadata: { name: '4.19.0', creationTimestamp: null },
      spec: { lookupPolicy: { local: false }, tags },
      status: { dockerImageRepository: '' },
      ...overrides,
    },
    null,
    '  ',
  );
}

function tag(name: string, image: string | undefined, kind = 'DockerImage'): unknown {
  return {
    name,
    annotations: { 'io.openshift.build.versions': 'machine-os=9.6.20260327-0' },
    ...(image === undefined ? {} : { from: { kind, name: image } }),
    generation: 2,
    importPolicy: {},
    referencePolicy: { type: 'Source' },
  };
}

describe('release payload: image-references', () => {
  it('reads the tags of an ImageStream as oc writes it and finds the driver-toolkit by digest', () => {
    const refs = parseImageReferences(
      imageStream([tag('cli', DTK.replace('a', 'b')), tag('driver-toolkit', DTK)]),
    );
    expect(refs.name).to.equal('4.19.0');
    expect([...refs.tags.keys()]).to.deep.equal(['cli', 'driver-toolkit']);
    expect(driverToolkitImage(refs, 'rel')).to.equal(DTK);
  });

  it('accepts the same document as YAML (oc decodes it with a YAML decoder)', () => {
    const yaml = [
      'kind: ImageStream',
      'apiVersion: image.openshift.io/v1',
      'metadata: {name: 4.18.3}',
      'spec:',
      '  tags:',
      '  - name: driver-toolkit',
      `    from: {kind: DockerImage, name: "${DTK}"}`,
    ].join('\n');
    expect(driverToolkitImage(parseImageReferences(yaml), 'rel')).to.equal(DTK);
  });

  it('refuses a document of another kind or apiVersion, naming what it found', () => {
    expectReleaseError(
      () => parseImageReferences(imageStream([], { kind: 'ConfigMap' })),
      'INVALID_RELEASE_MANIFESTS',
      /kind "ConfigMap" of apiVersion "image.openshift.io\/v1", expected an ImageStream/,
    );
    expectReleaseError(
      () => parseImageReferences(imageStream([], { apiVersion: 'v1' })),
      'INVALID_RELEASE_MANIFESTS',
      /apiVersion "v1"/,
    );
  });

  it('refuses content that is not JSON or YAML, or not an object', () => {
    expectReleaseError(
      () => parseImageReferences('{"kind": '),
      'INVALID_RELEASE_MANIFESTS',
      /not JSON or YAML/,
    );
    expectReleaseError(
      () => parseImageReferences('[1, 2]'),
      'INVALID_RELEASE_MANIFESTS',
      /a list, expected an object/,
    );
    expectReleaseError(
      () => parseImageReferences(''),
      'INVALID_RELEASE_MANIFESTS',
      /null, expected an object/,
    );
  });

  it('refuses spec.tags that is not a list', () => {
    expectReleaseError(
      () =>
        parseImageReferences(
          JSON.stringify({ kind: 'ImageStream', apiVersion: 'image.openshift.io/v1', spec: { tags: 'x' } }),
        ),
      'INVALID_RELEASE_MANIFESTS',
      /spec\.tags is "x", expected a list/,
    );
  });

  it('reports a payload without a driver-toolkit tag as NO_DTK_TAG with the number of images it has', () => {
    const refs = parseImageReferences(imageStream([tag('cli', DTK), tag('rhel-coreos', DTK)]));
    expectReleaseError(
      () => driverToolkitImage(refs, 'quay.io/x/rel:4.7'),
      'NO_DTK_TAG',
      /quay.io\/x\/rel:4.7 lists no 'driver-toolkit' image among its 2 images/,
    );
  });

  it('does not take driver-toolkit-10 or a differently cased tag for driver-toolkit', () => {
    const refs = parseImageReferences(
      imageStream([tag('driver-toolkit-10', DTK), tag('Driver-Toolkit', DTK)]),
    );
    expectReleaseError(() => driverToolkitImage(refs, 'rel'), 'NO_DTK_TAG', /no 'driver-toolkit'/);
  });

  it('refuses a driver-toolkit tag without a DockerImage source, naming the field', () => {
    const noFrom = parseImageReferences(imageStream([tag('cli', DTK), tag('driver-toolkit', undefined)]));
    expectReleaseError(
      () => driverToolkitImage(noFrom, 'rel'),
      'INVALID_RELEASE_MANIFESTS',
      /spec\.tags\[1\] \(driver-toolkit\)\.from names no DockerImage/,
    );
    const istag = parseImageReferences(imageStream([tag('driver-toolkit', 'dtk:latest', 'ImageStreamTag')]));
    expectReleaseError(
      () => driverToolkitImage(istag, 'rel'),
      'INVALID_RELEASE_MANIFESTS',
      /from names no DockerImage/,
    );
  });

  it('refuses a driver-toolkit reference that is not by digest', () => {
    const refs = parseImageReferences(imageStream([tag('driver-toolkit', 'quay.io/openshift/dtk:4.19')]));
    expectReleaseError(
      () => driverToolkitImage(refs, 'rel'),
      'INVALID_RELEASE_MANIFESTS',
      /'quay.io\/openshift\/dtk:4.19' is not a reference by digest/,
    );
    const shortDigest = parseImageReferences(imageStream([tag('driver-toolkit', 'quay.io/o/d@sha256:abc')]));
    expectReleaseError(
      () => driverToolkitImage(shortDigest, 'rel'),
      'INVALID_RELEASE_MANIFESTS',
      /not a reference by digest/,
    );
  });

  it('keeps the first of duplicated tag names and skips malformed entries', () => {
    const refs = parseImageReferences(
      imageStream([null, { from: {} }, tag('driver-toolkit', DTK), tag('driver-toolkit', 'x')]),
    );
    expect(driverToolkitImage(refs, 'rel')).to.equal(DTK);
  });
});

describe('release payload: release-metadata', () => {
  it('reads the version and previous releases', () => {
    const meta = parseReleaseMetadata(
      JSON.stringify({
        kind: 'cincinnati-metadata-v0',
        version: '4.13.1',
        previous: ['4.12.5', 4],
        metadata: { url: 'https://x' },
      }),
    );
    expect(meta).to.deep.equal({ version: '4.13.1', previous: ['4.12.5'] });
  });

  it('refuses another kind or an empty version', () => {
    expectReleaseError(
      () => parseReleaseMetadata('{"kind":"x","version":"4.1.0"}'),
      'INVALID_RELEASE_MANIFESTS',
      /kind "x", expected cincinnati-metadata-v0/,
    );
    expectReleaseError(
      () => parseReleaseMetadata('{"kind":"cincinnati-metadata-v0","version":" "}'),
      'INVALID_RELEASE_MANIFESTS',
      /version is " ", expected the release version/,
    );
  });
});
