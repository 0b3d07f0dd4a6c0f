import { expect } from 'chai';
import { expectReleaseError } from './expect-release-error.ts';
import { parseDriverToolkitRelease, targetKernel } from '../../src/release/driver-toolkit.ts';

const WHERE = 'dtk@sha256:1';

function parse(fields: unknown): ReturnType<typeof parseDriverToolkitRelease> {
  return parseDriverToolkitRelease(typeof fields === 'string' ? fields : JSON.stringify(fields), WHERE);
}

describe('driver-toolkit-release.json', () => {
  it('reads the three fields the Dockerfile writes (current +rt form)', () => {
    const dtk = parse({
      KERNEL_VERSION: '5.14.0-427.13.1.el9_4.x86_64',
      RT_KERNEL_VERSION: '5.14.0-427.13.1.el9_4.x86_64+rt',
      RHEL_VERSION: '9.4',
    });
    expect(dtk).to.deep.equal({
      kernelVersion: '5.14.0-427.13.1.el9_4.x86_64',
      rtKernelVersion: '5.14.0-427.13.1.el9_4.x86_64+rt',
      rtKernelProblem: undefined,
      rhelVersion: '9.4',
    });
    expect(targetKernel(dtk, false, 'amd64', WHERE)).to.equal('5.14.0-427.13.1.el9_4.x86_64');
    expect(targetKernel(dtk, true, 'amd64', WHERE)).to.equal('5.14.0-427.13.1.el9_4.x86_64+rt');
  });

  it('reads the older rt form and ignores extra keys', () => {
    const dtk = parse({
      KERNEL_VERSION: '5.14.0-284.59.1.el9_2.x86_64',
      RT_KERNEL_VERSION: '5.14.0-284.59.1.rt14.344.el9_2.x86_64',
      RHEL_VERSION: '9.2',
      OCP_VERSION: '4.13',
      BUILD: { x: 1 },
    });
    expect(targetKernel(dtk, true, 'amd64', WHERE)).to.equal('5.14.0-284.59.1.rt14.344.el9_2.x86_64');
  });

  it('treats an empty or bare +rt RT_KERNEL_VERSION as no real-time kernel', () => {
    for (const rt of ['', '+rt', undefined, null]) {
      const dtk = parse({
        KERNEL_VERSION: '5.14.0-427.el9.aarch64',
        RT_KERNEL_VERSION: rt,
        RHEL_VERSION: '9.4',
      });
      expect(dtk.rtKernelVersion).to.equal(null);
      expect(targetKernel(dtk, false, 'arm64', WHERE)).to.equal('5.14.0-427.el9.aarch64');
      expectReleaseError(
        () => targetKernel(dtk, true, 'arm64', WHERE),
        'NO_RT_KERNEL',
        /^this release has no real-time kernel for arm64 .*standard kernel 5\.14\.0-427\.el9\.aarch64/,
      );
    }
  });

  it('fails on a malformed RT_KERNEL_VERSION only when the real-time kernel is asked for', () => {
    const dtk = parse({
      KERNEL_VERSION: '6.12.0-1.el10.x86_64',
      RT_KERNEL_VERSION: 'package kernel-rt-core is not installed+rt',
      RHEL_VERSION: '10.0',
    });
    expect(targetKernel(dtk, false, 'amd64', WHERE)).to.equal('6.12.0-1.el10.x86_64');
    expectReleaseError(
      () => targetKernel(dtk, true, 'amd64', WHERE),
      'DTK_FIELDS_INVALID',
      /RT_KERNEL_VERSION is "package kernel-rt-core is not installed\+rt", not a kernel release/,
    );
    const numeric = parse({
      KERNEL_VERSION: '6.12.0-1.el10.x86_64',
      RT_KERNEL_VERSION: 5,
      RHEL_VERSION: '10.0',
    });
    expectReleaseError(
      () => targetKernel(numeric, true, 'amd64', WHERE),
      'DTK_FIELDS_INVALID',
      /RT_KERNEL_VERSION is number 5, expected a string/,
    );
  });

  it('reports every missing or empty required field at once', () => {
    expectReleaseError(
      () => parse({ RT_KERNEL_VERSION: '' }),
      'DTK_FIELDS_INVALID',
      /KERNEL_VERSION is missing, expected a kernel release; RHEL_VERSION is missing/,
    );
    expectReleaseError(
      () => parse({ KERNEL_VERSION: '', RHEL_VERSION: '9.4' }),
      'DTK_FIELDS_INVALID',
      /in dtk@sha256:1: KERNEL_VERSION is empty, expected a kernel release$/,
    );
    expectReleaseError(
      () => parse({ KERNEL_VERSION: '5.14.0-1.el9.x86_64', RHEL_VERSION: 9.4 }),
      'DTK_FIELDS_INVALID',
      /RHEL_VERSION is number 9.4, expected a RHEL version/,
    );
  });

  it('refuses values that are not versions (a kernel with two components, text)', () => {
    expectReleaseError(
      () => parse({ KERNEL_VERSION: '5.14', RHEL_VERSION: '9.4' }),
      'DTK_FIELDS_INVALID',
      /KERNEL_VERSION is "5.14", not a kernel release/,
    );
    expectReleaseError(
      () => parse({ KERNEL_VERSION: '5.14.0-1 el9', RHEL_VERSION: 'nine' }),
      'DTK_FIELDS_INVALID',
      /KERNEL_VERSION .*; RHEL_VERSION is "nine", not a RHEL version/,
    );
  });

  it('refuses malformed JSON and non-objects', () => {
    expectReleaseError(() => parse('{ "KERNEL_VERSION": '), 'DTK_FIELDS_INVALID', /is not valid JSON/);
    expectReleaseError(
      () => parse('["5.14.0"]'),
      'DTK_FIELDS_INVALID',
      /is a list, expected an object with KERNEL_VERSION/,
    );
    expectReleaseError(() => parse(''), 'DTK_FIELDS_INVALID', /is not valid JSON/);
  });
});
