import { expect } from 'chai';

import { ImageError } from '../../src/image/source.ts';
import { KubeApiError } from '../../src/platform/kube/client.ts';
import { UsageError } from '../../src/cli/io.ts';

describe('platform: coded errors', () => {
  it('name each error after its own class, keep its code and extra fields, and stay instances of Error', () => {
    const usage = new UsageError('--kernel: required');
    expect(usage).to.be.instanceOf(Error).and.instanceOf(UsageError);
    expect(usage.name).to.equal('UsageError');
    expect(usage.code).to.equal('ERR_USAGE');
    expect(String(usage)).to.equal('UsageError: --kernel: required');

    const api = new KubeApiError(409, 'conflict', 'Conflict');
    expect([api.name, api.code, api.status, api.reason]).to.deep.equal([
      'KubeApiError',
      'KUBE_API_ERROR',
      409,
      'Conflict',
    ]);
  });

  it('carry the underlying failure as cause only when there is one', () => {
    const reset = new Error('ECONNRESET');
    const unreachable = new ImageError('UNREACHABLE', 'registry.example: connection reset', { cause: reset });
    expect(unreachable.cause).to.equal(reset);
    expect(unreachable.definite).to.equal(false);
    const missing = new ImageError('NOT_FOUND', 'no such tag', { definite: true });
    expect(missing).to.not.have.property('cause');
    expect(missing.definite).to.equal(true);
  });
});
