import { expect } from 'chai';

import { UsageError } from '../../src/cli/io.ts';
import { runnerConfig } from '../../src/runner/config.ts';

describe('runner config: --arch', () => {
  it('takes kernel names (x86_64, aarch64) as the Go names images and modules are compared with', () => {
    expect(runnerConfig({}, {}).architecture).to.equal('amd64');
    expect(runnerConfig({ arch: 'x86_64' }, {}).architecture).to.equal('amd64');
    expect(runnerConfig({}, { KMM_PREFLIGHT_ARCH: 'aarch64' }).architecture).to.equal('arm64');
    expect(runnerConfig({ arch: 's390x' }, {}).architecture).to.equal('s390x');
  });

  it('refuses what is not an architecture, naming the flag and its variable', () => {
    expect(() => runnerConfig({ arch: 'x86 64' }, {})).to.throw(
      UsageError,
      /^--arch \(KMM_PREFLIGHT_ARCH\): 'x86 64' is not an architecture; expected one such as amd64/,
    );
    expect(() => runnerConfig({ arch: 'arm64/v8' }, {})).to.throw(UsageError, /without a variant/);
  });
});
