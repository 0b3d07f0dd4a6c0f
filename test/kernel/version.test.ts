import { expect } from 'chai';
import { KernelError } from '../../src/kernel/errors.ts';
import { normalizeKernel, parseKernelVersion } from '../../src/kernel/version.ts';

describe('kernel/version', () => {
  const good: [
    string,
    { normalized: string; x: string; y: string; z: string; xyz: string; pieces: number },
  ][] = [
    [
      '5.14.0-284.30.1.el9_2.x86_64',
      { normalized: '5.14.0-284.30.1.el9_2.x86_64', x: '5', y: '14', z: '0', xyz: '5.14.0', pieces: 8 },
    ],
    [
      '5.14.0-284.el9.x86_64',
      { normalized: '5.14.0-284.el9.x86_64', x: '5', y: '14', z: '0', xyz: '5.14.0', pieces: 6 },
    ],
    ['6.1.0', { normalized: '6.1.0', x: '6', y: '1', z: '0', xyz: '6.1.0', pieces: 3 }],
    [
      '4.18.0-372.rt7.168.el8_6.x86_64+rt',
      { normalized: '4.18.0-372.rt7.168.el8_6.x86_64_rt', x: '4', y: '18', z: '0', xyz: '4.18.0', pieces: 8 },
    ],
    ['5-14-0', { normalized: '5-14-0', x: '5', y: '14', z: '0', xyz: '5.14.0', pieces: 3 }],
    [
      '  5.14.0-1.el9.x86_64\n',
      { normalized: '5.14.0-1.el9.x86_64', x: '5', y: '14', z: '0', xyz: '5.14.0', pieces: 6 },
    ],
  ];
  for (const [input, expected] of good) {
    it(`parses ${JSON.stringify(input)}`, () => {
      const result = parseKernelVersion(input);
      if (!result.ok) throw result.error;
      expect(result.data.raw).to.equal(input.trim());
      expect(result.data.normalized).to.equal(expected.normalized);
      expect([result.data.x, result.data.y, result.data.z, result.data.xyz]).to.deep.equal([
        expected.x,
        expected.y,
        expected.z,
        expected.xyz,
      ]);
      expect(result.data.components).to.have.length(expected.pieces);
    });
  }

  const bad: [string, RegExp][] = [
    ['', /is empty/],
    ['   ', /is empty/],
    ['tesdt', /expected at least three components \(major\.minor\.patch\), got 1/],
    ['5.14', /"5\.14": expected at least three components .* got 2/],
    ['5..14', /component 2 of major\.minor\.patch is empty/],
    ['.5.14', /component 1 of major\.minor\.patch is empty/],
  ];
  for (const [input, message] of bad) {
    it(`rejects ${JSON.stringify(input)} with INVALID_KERNEL instead of crashing`, () => {
      const result = parseKernelVersion(input);
      expect(result.ok).to.equal(false);
      if (result.ok) return;
      expect(result.error).to.be.instanceOf(KernelError);
      expect(result.error.code).to.equal('INVALID_KERNEL');
      expect(result.error.definite).to.equal(true);
      expect(result.error.message).to.match(message);
    });
  }

  it('normalises characters outside [A-Za-z0-9._-] to _ as KMM does', () => {
    expect(normalizeKernel('5.14.0+rt/x y')).to.equal('5.14.0_rt_x_y');
    expect(normalizeKernel('5.14.0-1.el9.x86_64')).to.equal('5.14.0-1.el9.x86_64');
  });
});
