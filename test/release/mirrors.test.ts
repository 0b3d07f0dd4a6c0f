import { expect } from 'chai';
import { Readable } from 'node:stream';
import {
  MirrorRuleError,
  mirrorCandidates,
  mirrorRulesFromImageContentSourcePolicies,
  mirrorRulesFromImageDigestMirrorSets,
  mirrorRulesFromImageTagMirrorSets,
  parseMirrorFlag,
  withMirrors,
  type MirrorRule,
} from '../../src/image/mirrors.ts';
import { ImageError, type ImageSource, type ResolvedImage } from '../../src/image/source.ts';

const DIGEST = `sha256:${'c'.repeat(64)}`;
const ART = 'quay.io/openshift-release-dev/ocp-v4.0-art-dev';

function rule(source: string, mirrors: string[], extra: Partial<MirrorRule> = {}): MirrorRule {
  return { source, mirrors, pullType: 'any', ...extra };
}

describe('mirror rules: matching', () => {
  it('tries the mirrors of the matching source in order, then the source', () => {
    const rules = [rule('quay.io/openshift-release-dev', ['m1.example:5000/ocp', 'm2.example/ocp'])];
    expect(mirrorCandidates(`${ART}@${DIGEST}`, rules)).to.deep.equal([
      `m1.example:5000/ocp/ocp-v4.0-art-dev@${DIGEST}`,
      `m2.example/ocp/ocp-v4.0-art-dev@${DIGEST}`,
      `${ART}@${DIGEST}`,
    ]);
  });

  it('matches only on a path-component boundary', () => {
    const rules = [rule('quay.io/openshift', ['mirror/x']), rule('registry', ['mirror/y'])];
    expect(mirrorCandidates(`quay.io/openshift-release-dev/x@${DIGEST}`, rules)).to.deep.equal([
      `quay.io/openshift-release-dev/x@${DIGEST}`,
    ]);
    expect(mirrorCandidates('quay.io/openshift:4.19', rules)).to.deep.equal([
      'mirror/x:4.19',
      'quay.io/openshift:4.19',
    ]);
    expect(mirrorCandidates('quay.io/openshift', rules)).to.deep.equal(['mirror/x', 'quay.io/openshift']);
    expect(mirrorCandidates('registry:5000/a:1', rules), 'a host does not match host:port').to.deep.equal([
      'registry:5000/a:1',
    ]);
  });

  it('uses the most specific source, merging the mirrors of rules with that same source in order', () => {
    const rules = [
      rule('quay.io', ['all.example']),
      rule(ART, ['exact-a.example/art']),
      rule('quay.io/openshift-release-dev', ['org.example/ocp']),
      rule(ART, ['exact-b.example/art', 'exact-a.example/art']),
    ];
    expect(mirrorCandidates(`${ART}@${DIGEST}`, rules)).to.deep.equal([
      `exact-a.example/art@${DIGEST}`,
      `exact-b.example/art@${DIGEST}`,
      `${ART}@${DIGEST}`,
    ]);
  });

  it('applies digest-only mirrors to digest pulls and tag-only mirrors to tag pulls', () => {
    const rules = [
      rule('quay.io/a', ['digests.example/a'], { pullType: 'digest' }),
      rule('quay.io/a', ['tags.example/a'], { pullType: 'tag' }),
    ];
    expect(mirrorCandidates(`quay.io/a/b@${DIGEST}`, rules)).to.deep.equal([
      `digests.example/a/b@${DIGEST}`,
      `quay.io/a/b@${DIGEST}`,
    ]);
    expect(mirrorCandidates('quay.io/a/b:4.19', rules)).to.deep.equal([
      'tags.example/a/b:4.19',
      'quay.io/a/b:4.19',
    ]);
  });

  it('never falls back to a source marked NeverContactSource', () => {
    const rules = [rule('quay.io/a', ['m.example/a'], { pullType: 'digest', neverContactSource: true })];
    expect(mirrorCandidates(`quay.io/a/b@${DIGEST}`, rules)).to.deep.equal([`m.example/a/b@${DIGEST}`]);
    expect(
      mirrorCandidates('quay.io/a/b:tag', rules),
      'a tag pull has no mirror and may not use the source',
    ).to.deep.equal([]);
  });

  it('leaves unmatched references alone', () => {
    expect(mirrorCandidates('docker.io/library/busybox:1', [rule('quay.io', ['m'])])).to.deep.equal([
      'docker.io/library/busybox:1',
    ]);
    expect(mirrorCandidates('docker.io/library/busybox:1', [])).to.deep.equal([
      'docker.io/library/busybox:1',
    ]);
  });
});

describe('mirror rules: --mirror SOURCE=MIRROR', () => {
  it('parses a rule, trimming trailing slashes, and allows an OCI layout as the mirror', () => {
    expect(parseMirrorFlag('quay.io/openshift-release-dev/=localhost:5000/ocp/')).to.deep.equal(
      rule('quay.io/openshift-release-dev', ['localhost:5000/ocp']),
    );
    expect(parseMirrorFlag(`${ART}=oci:/tmp/layout`).mirrors).to.deep.equal(['oci:/tmp/layout']);
  });

  for (const [flag, message] of [
    ['quay.io', /expected SOURCE=MIRROR/],
    ['=m.example', /expected SOURCE=MIRROR/],
    ['quay.io=', /expected SOURCE=MIRROR/],
    ['https://quay.io=m.example', /SOURCE 'https:\/\/quay.io' must not have a scheme/],
    ['quay.io/a@sha256:abc=m', /SOURCE 'quay.io\/a@sha256:abc' is not a registry or repository prefix/],
    ['oci:/dir=m', /SOURCE 'oci:\/dir': an OCI layout cannot be a source/],
    ['*.quay.io=m', /wildcard sources are not supported/],
    ['quay.io=m x', /MIRROR 'm x' is not a registry/],
  ] as const) {
    it(`refuses '${flag}'`, () => {
      expect(() => parseMirrorFlag(flag)).to.throw(MirrorRuleError, message);
    });
  }
});

describe('mirror rules: cluster objects', () => {
  it('reads ImageDigestMirrorSets as digest-only rules with their source policy', () => {
    const { rules, problems } = mirrorRulesFromImageDigestMirrorSets([
      {
        apiVersion: 'config.openshift.io/v1',
        kind: 'ImageDigestMirrorSet',
        metadata: { name: 'release' },
        spec: {
          imageDigestMirrors: [
            { source: 'quay.io/openshift-release-dev/ocp-release', mirrors: ['m.example:5000/ocp/release'] },
            {
              source: ART,
              mirrors: ['m.example:5000/ocp/art', 'm2.example/art/'],
              mirrorSourcePolicy: 'NeverContactSource',
            },
          ],
        },
      },
    ]);
    expect(problems).to.deep.equal([]);
    expect(rules).to.deep.equal([
      {
        source: 'quay.io/openshift-release-dev/ocp-release',
        mirrors: ['m.example:5000/ocp/release'],
        pullType: 'digest',
      },
      {
        source: ART,
        mirrors: ['m.example:5000/ocp/art', 'm2.example/art'],
        pullType: 'digest',
        neverContactSource: true,
      },
    ]);
  });

  it('reads ImageTagMirrorSets as tag-only rules', () => {
    const { rules } = mirrorRulesFromImageTagMirrorSets([
      { metadata: { name: 't' }, spec: { imageTagMirrors: [{ source: 'quay.io/a', mirrors: ['m/a'] }] } },
    ]);
    expect(rules).to.deep.equal([{ source: 'quay.io/a', mirrors: ['m/a'], pullType: 'tag' }]);
  });

  it('reads ImageContentSourcePolicies as digest-only rules, ignoring a source policy they cannot have', () => {
    const { rules, problems } = mirrorRulesFromImageContentSourcePolicies([
      {
        apiVersion: 'operator.openshift.io/v1alpha1',
        kind: 'ImageContentSourcePolicy',
        metadata: { name: 'icsp' },
        spec: {
          repositoryDigestMirrors: [
            { source: ART, mirrors: ['m/art'], mirrorSourcePolicy: 'NeverContactSource' },
          ],
        },
      },
    ]);
    expect(problems).to.deep.equal([]);
    expect(rules).to.deep.equal([{ source: ART, mirrors: ['m/art'], pullType: 'digest' }]);
  });

  it('skips malformed entries, naming the object and field, and keeps the good ones', () => {
    const { rules, problems } = mirrorRulesFromImageDigestMirrorSets([
      { metadata: { name: 'bad' }, spec: { imageDigestMirrors: 'x' } },
      {
        metadata: { name: 'mixed' },
        spec: {
          imageDigestMirrors: [
            { mirrors: ['m'] },
            { source: 'https://quay.io', mirrors: ['m'] },
            { source: 'quay.io/a', mirrors: ['m/a', 7, 'oci:/x'], mirrorSourcePolicy: 'Sometimes' },
            { source: 'quay.io/b', mirrors: 'm/b' },
          ],
        },
      },
      null,
    ]);
    expect(rules).to.deep.equal([{ source: 'quay.io/a', mirrors: ['m/a'], pullType: 'digest' }]);
    expect(problems).to.deep.equal([
      'ImageDigestMirrorSet bad: spec.imageDigestMirrors is not a list; object skipped',
      'ImageDigestMirrorSet mixed: spec.imageDigestMirrors[0].source is missing; entry skipped',
      "ImageDigestMirrorSet mixed: spec.imageDigestMirrors[1].source 'https://quay.io' must not have a scheme (write host[:port]/path); entry skipped",
      'ImageDigestMirrorSet mixed: spec.imageDigestMirrors[2].mirrors[1] is not a string; mirror skipped',
      "ImageDigestMirrorSet mixed: spec.imageDigestMirrors[2].mirrors[2] 'oci:/x': an OCI layout cannot be a source; mirror skipped",
      'ImageDigestMirrorSet mixed: spec.imageDigestMirrors[2].mirrorSourcePolicy "Sometimes" is not NeverContactSource or AllowContactingSource; treated as AllowContactingSource',
      'ImageDigestMirrorSet mixed: spec.imageDigestMirrors[3].mirrors is not a list; entry skipped',
    ]);
  });
});

/** An in-memory source whose images exist at the given references; others fail with the given error. */
function fakeSource(
  present: Record<string, string>,
  failures: Record<string, ImageError> = {},
): ImageSource & { asked: string[]; blobsFrom: string[] } {
  const asked: string[] = [];
  const blobsFrom: string[] = [];
  return {
    asked,
    blobsFrom,
    resolve(reference) {
      asked.push(reference);
      const digest = present[reference];
      if (digest === undefined) {
        return Promise.reject(
          failures[reference] ?? new ImageError('NOT_FOUND', `${reference}: manifest unknown`),
        );
      }
      const image: ResolvedImage = {
        reference,
        digest,
        manifest: {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'c', digest, size: 1 },
          layers: [],
        },
        platform: { os: 'linux', architecture: 'amd64' },
      };
      return Promise.resolve(image);
    },
    openBlob(image) {
      blobsFrom.push(image.reference);
      return Promise.resolve(Readable.from([]));
    },
  };
}

describe('withMirrors', () => {
  const options = { platform: { os: 'linux', architecture: 'amd64' } };
  const ref = `${ART}@${DIGEST}`;
  const rules = [rule('quay.io/openshift-release-dev', ['m1.example/ocp', 'm2.example/ocp'])];

  it('resolves from the first mirror that has the image, keeps the asked reference, and reads blobs there', async () => {
    const inner = fakeSource({ [`m2.example/ocp/ocp-v4.0-art-dev@${DIGEST}`]: DIGEST });
    const source = withMirrors(inner, rules);
    const image = await source.resolve(ref, options);
    expect(image.reference).to.equal(ref);
    expect(image.digest).to.equal(DIGEST);
    expect(inner.asked).to.deep.equal([
      `m1.example/ocp/ocp-v4.0-art-dev@${DIGEST}`,
      `m2.example/ocp/ocp-v4.0-art-dev@${DIGEST}`,
    ]);
    await source.openBlob(image, image.manifest.config);
    expect(inner.blobsFrom).to.deep.equal([`m2.example/ocp/ocp-v4.0-art-dev@${DIGEST}`]);
  });

  it('falls back to the source when no mirror has it', async () => {
    const inner = fakeSource({ [ref]: DIGEST });
    const image = await withMirrors(inner, rules).resolve(ref, options);
    expect(image.reference).to.equal(ref);
    expect(inner.asked).to.have.length(3);
  });

  it('reports every location tried when none has it, as a definite answer', async () => {
    const error = await withMirrors(fakeSource({}), rules)
      .resolve(ref, options)
      .then(
        () => expect.fail('resolved'),
        (err: unknown) => err,
      );
    expect(error).to.be.instanceOf(ImageError);
    expect((error as ImageError).code).to.equal('NOT_FOUND');
    expect((error as ImageError).definite).to.equal(true);
    expect((error as ImageError).message).to.match(
      /could not be pulled from any of 3 locations .*m1\.example.*m2\.example.*quay\.io/,
    );
  });

  it('reports a retryable failure when any location was unreachable', async () => {
    const inner = fakeSource(
      {},
      {
        [`m1.example/ocp/ocp-v4.0-art-dev@${DIGEST}`]: new ImageError('UNREACHABLE', 'connect ECONNREFUSED'),
      },
    );
    const error = (await withMirrors(inner, rules)
      .resolve(ref, options)
      .catch((err: unknown) => err)) as ImageError;
    expect(error.code).to.equal('UNREACHABLE');
    expect(error.definite).to.equal(false);
  });

  it('stops at an answer that is the same everywhere (no image for the platform)', async () => {
    const inner = fakeSource(
      {},
      {
        [`m1.example/ocp/ocp-v4.0-art-dev@${DIGEST}`]: new ImageError(
          'NO_PLATFORM',
          'no image for linux/s390x',
        ),
      },
    );
    const error = (await withMirrors(inner, rules)
      .resolve(ref, options)
      .catch((err: unknown) => err)) as ImageError;
    expect(error.code).to.equal('NO_PLATFORM');
    expect(inner.asked).to.have.length(1);
  });

  it('is the inner source itself when there are no rules', () => {
    const inner = fakeSource({});
    expect(withMirrors(inner, [])).to.equal(inner);
  });
});
