import { expect } from 'chai';
import {
  formatReference,
  manifestReference,
  parseImageReference,
  referenceDigest,
  referenceRegistry,
  referenceRepository,
  referenceTag,
} from '../../src/image/reference.ts';
import type { ImageReference } from '../../src/image/reference.ts';
import { ImageError } from '../../src/image/source.ts';

const SHA = `sha256:${'a'.repeat(64)}`;

function parse(text: string): ImageReference {
  const result = parseImageReference(text);
  if (!result.ok) throw result.error;
  return result.data;
}

describe('image/reference', () => {
  const good: [
    string,
    { registry: string; repository: string; tag?: string; digest?: string; normalized: string },
  ][] = [
    [
      'busybox',
      {
        registry: 'docker.io',
        repository: 'library/busybox',
        normalized: 'docker.io/library/busybox:latest',
      },
    ],
    [
      'busybox:1.36',
      {
        registry: 'docker.io',
        repository: 'library/busybox',
        tag: '1.36',
        normalized: 'docker.io/library/busybox:1.36',
      },
    ],
    ['org/img', { registry: 'docker.io', repository: 'org/img', normalized: 'docker.io/org/img:latest' }],
    [
      'docker.io/busybox',
      {
        registry: 'docker.io',
        repository: 'library/busybox',
        normalized: 'docker.io/library/busybox:latest',
      },
    ],
    [
      'index.docker.io/org/img:v1',
      { registry: 'docker.io', repository: 'org/img', tag: 'v1', normalized: 'docker.io/org/img:v1' },
    ],
    [
      'quay.io/org/team/kmod:5.14.0-284.el9.x86_64',
      {
        registry: 'quay.io',
        repository: 'org/team/kmod',
        tag: '5.14.0-284.el9.x86_64',
        normalized: 'quay.io/org/team/kmod:5.14.0-284.el9.x86_64',
      },
    ],
    ['localhost/kmod', { registry: 'localhost', repository: 'kmod', normalized: 'localhost/kmod:latest' }],
    [
      'localhost:5000/kmod:v1',
      { registry: 'localhost:5000', repository: 'kmod', tag: 'v1', normalized: 'localhost:5000/kmod:v1' },
    ],
    [
      '127.0.0.1:39211/a/b',
      { registry: '127.0.0.1:39211', repository: 'a/b', normalized: '127.0.0.1:39211/a/b:latest' },
    ],
    [
      '[::1]:5000/kmod:v1',
      { registry: '[::1]:5000', repository: 'kmod', tag: 'v1', normalized: '[::1]:5000/kmod:v1' },
    ],
    ['Registry/kmod', { registry: 'Registry', repository: 'kmod', normalized: 'Registry/kmod:latest' }],
    [
      `quay.io/a/b@${SHA}`,
      { registry: 'quay.io', repository: 'a/b', digest: SHA, normalized: `quay.io/a/b@${SHA}` },
    ],
    [
      `quay.io/a/b:v1@${SHA}`,
      { registry: 'quay.io', repository: 'a/b', tag: 'v1', digest: SHA, normalized: `quay.io/a/b:v1@${SHA}` },
    ],
    [
      `registry.example.com:443/a.b/c_d/e__f/g--h:T_1.x-y@${SHA}`,
      {
        registry: 'registry.example.com:443',
        repository: 'a.b/c_d/e__f/g--h',
        tag: 'T_1.x-y',
        digest: SHA,
        normalized: `registry.example.com:443/a.b/c_d/e__f/g--h:T_1.x-y@${SHA}`,
      },
    ],
    [
      'docker://quay.io/a/b:1',
      { registry: 'quay.io', repository: 'a/b', tag: '1', normalized: 'quay.io/a/b:1' },
    ],
  ];
  for (const [text, expected] of good) {
    it(`parses ${text}`, () => {
      const reference = parse(text);
      expect(reference).to.deep.equal({ kind: 'registry', ...expected });
      expect(formatReference(reference)).to.equal(expected.normalized);
    });
  }

  const bad: [string, RegExp][] = [
    ['', /is empty/],
    [' quay.io/a/b', /whitespace/],
    ['quay.io/a/b:', /the tag after ":" is empty/],
    ['quay.io/a/b:-x', /tag "-x" is invalid/],
    [`quay.io/a/b:${'x'.repeat(129)}`, /tag "x+" is invalid .*at most 128/],
    ['quay.io/A/b', /repository "A\/b" must be lowercase/],
    ['quay.io/a//b', /empty component/],
    ['quay.io/a/b/', /empty component/],
    ['quay.io/', /repository path after the registry is empty/],
    ['quay.io/a/-b', /repository component "-b" is invalid/],
    ['quay.io/a/b..c', /repository component "b\.\.c" is invalid/],
    ['quay.io/a/b@sha256:abc', /sha256 needs 64 lowercase hexadecimal/],
    [`quay.io/a/b@sha256:${'A'.repeat(64)}`, /sha256 needs 64 lowercase hexadecimal/],
    ['quay.io/a/b@md5', /expected <algorithm>:<hex>/],
    ['quay.io:99999/a', /registry port "99999"/],
    ['quay.io:x/a', /registry port "x"/],
    ['bad_host.io/a', /registry host "bad_host.io" is invalid/],
    ['-bad.io/a', /registry host "-bad.io" is invalid/],
    [':tag', /repository name is empty/],
    [`${'a'.repeat(64)}`, /image ID, not a repository name/],
    [`quay.io/${'a'.repeat(260)}`, /longer than 255/],
    ['oci:', /needs a layout directory/],
    ['oci:/dir:', /tag after the directory is empty/],
  ];
  for (const [text, message] of bad) {
    it(`rejects ${JSON.stringify(text.length > 40 ? `${text.slice(0, 40)}…` : text)} saying what is wrong`, () => {
      const result = parseImageReference(text);
      expect(result.ok).to.equal(false);
      if (result.ok) return;
      expect(result.error).to.be.instanceOf(ImageError);
      expect(result.error.code).to.equal('INVALID_REFERENCE');
      expect(result.error.definite).to.equal(true);
      expect(result.error.message).to.contain(`invalid image reference "${text}"`).and.match(message);
    });
  }

  it('parses oci:<dir>[:<tag>] as an OCI layout (the directory ends at the first ":")', () => {
    expect(parse('oci:/var/images/kmod')).to.deep.equal({
      kind: 'oci-layout',
      directory: '/var/images/kmod',
      normalized: 'oci:/var/images/kmod',
    });
    expect(parse('oci:./layout:5.14.0-284.el9.x86_64')).to.deep.equal({
      kind: 'oci-layout',
      directory: './layout',
      tag: '5.14.0-284.el9.x86_64',
      normalized: 'oci:./layout:5.14.0-284.el9.x86_64',
    });
  });

  it('parses oci:<dir>@<digest>, what a mirror rule makes of a digest reference, and checks the digest', () => {
    expect(parse(`oci:/mirror/art-dev@${SHA}`)).to.deep.equal({
      kind: 'oci-layout',
      directory: '/mirror/art-dev',
      digest: SHA,
      normalized: `oci:/mirror/art-dev@${SHA}`,
    });
    const short = parseImageReference('oci:/mirror@sha256:abc');
    expect(short.ok).to.equal(false);
    if (!short.ok) expect(short.error.message).to.match(/digest "sha256:abc"/);
  });

  it('accessors work on both kinds', () => {
    const registry = parse(`quay.io/a/b@${SHA}`);
    const layout = parse('oci:/l:t');
    expect([
      referenceRegistry(registry),
      referenceRepository(registry),
      referenceTag(registry),
      referenceDigest(registry),
    ]).to.deep.equal(['quay.io', 'a/b', undefined, SHA]);
    expect([
      referenceRegistry(layout),
      referenceRepository(layout),
      referenceTag(layout),
      referenceDigest(layout),
    ]).to.deep.equal([undefined, '/l', 't', undefined]);
    expect(referenceTag(parse('busybox'))).to.equal('latest');
    expect(referenceTag(parse('oci:/l'))).to.equal(undefined);
  });

  it('asks the registry for the digest when pinned, else the tag (latest by default)', () => {
    const pinned = parse(`quay.io/a/b:v1@${SHA}`);
    const tagged = parse('quay.io/a/b:v1');
    const bare = parse('quay.io/a/b');
    if (pinned.kind !== 'registry' || tagged.kind !== 'registry' || bare.kind !== 'registry')
      throw new Error('kind');
    expect([manifestReference(pinned), manifestReference(tagged), manifestReference(bare)]).to.deep.equal([
      SHA,
      'v1',
      'latest',
    ]);
  });

  it('formatReference round-trips: parsing the normalised form gives the same reference', () => {
    for (const [text] of good) {
      const reference = parse(text);
      expect(parse(reference.normalized), text).to.deep.equal(
        reference.kind === 'registry' && reference.tag === undefined && reference.digest === undefined
          ? { ...reference, tag: 'latest' }
          : reference,
      );
    }
  });
});
