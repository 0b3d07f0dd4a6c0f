import { expect } from 'chai';

import { ImageError, imageErrorAnswer } from '../../src/image/source.ts';

describe('image: the registry answer without the image name', () => {
  it('drops the image name the registry client starts its messages with, by tag or digest', () => {
    const ref = '127.0.0.1:5000/kmod/driver:v1';
    const byTag = new ImageError('NOT_FOUND', '127.0.0.1:5000/kmod/driver@v1: not found (MANIFEST_UNKNOWN)');
    expect(imageErrorAnswer(byTag, ref)).to.equal('not found (MANIFEST_UNKNOWN)');
    const digest = `sha256:${'a'.repeat(64)}`;
    const byDigest = new ImageError('DENIED', `127.0.0.1:5000/kmod/driver@${digest}: access denied`);
    expect(imageErrorAnswer(byDigest, `127.0.0.1:5000/kmod/driver@${digest}`)).to.equal('access denied');
  });

  it('keeps a message about something else whole', () => {
    const other = new ImageError('UNREACHABLE', 'token for quay.io (repository:x:pull): quay.io unreachable');
    expect(imageErrorAnswer(other, 'quay.io/x:1')).to.equal(other.message);
    const plain = new ImageError('NOT_FOUND', 'manifest unknown');
    expect(imageErrorAnswer(plain, 'quay.io/x:1')).to.equal('manifest unknown');
    const otherRepo = new ImageError('NOT_FOUND', '127.0.0.1:5000/other@v1: not found');
    expect(imageErrorAnswer(otherRepo, '127.0.0.1:5000/kmod/driver:v1')).to.equal(otherRepo.message);
  });
});
