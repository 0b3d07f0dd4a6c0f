import { expect } from 'chai';

import { normalizeArchitecture, parseTargetPlatform } from '../../src/image/platform.ts';

describe('image: target platform', () => {
  it('turns kernel architecture names into the Go names indexes and module checks use', () => {
    expect(normalizeArchitecture('x86_64')).to.equal('amd64');
    expect(normalizeArchitecture('AARCH64')).to.equal('arm64');
    expect(normalizeArchitecture('ppc64le')).to.equal('ppc64le');
    expect(parseTargetPlatform('x86_64')).to.deep.equal({
      ok: true,
      platform: { os: 'linux', architecture: 'amd64' },
    });
    expect(parseTargetPlatform('aarch64/v8')).to.deep.equal({
      ok: true,
      platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
    });
  });

  it('rejects what is not an architecture, saying what is expected', () => {
    const bad = parseTargetPlatform('x86-64!');
    expect(bad.ok).to.equal(false);
    if (!bad.ok)
      expect(bad.message).to.match(/^'x86-64!' is not an architecture; expected one such as amd64/);
    expect(parseTargetPlatform('').ok).to.equal(false);
    expect(parseTargetPlatform('arm64/v8/extra').ok).to.equal(false);
  });
});
