import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { ART_REPOSITORY, buildReleaseFixture } from '../../src/fixtures/release.ts';
import { runCli } from '../support/cli.ts';

// Offline: usage errors, and releases in OCI layouts whose component images are served from the layout through a
// mirror rule (as the quick start does). Registry cases run against a real registry in test/e2e/release.test.ts.
describe('kmm-preflight release (offline)', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'kmm-release-cli-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  for (const [name, argv, message] of [
    ['no release image', ['release'], /missing required argument 'release-image'/],
    [
      'a bad --mirror',
      ['release', 'quay.io/a/b:1', '--mirror', 'quay.io'],
      /--mirror 'quay.io': expected SOURCE=MIRROR/,
    ],
    [
      'a bad --arch',
      ['release', 'quay.io/a/b:1', '--arch', 'x86 64'],
      /--arch: 'x86 64' is not an architecture; expected one such as amd64/,
    ],
    ['an unknown output format', ['release', 'quay.io/a/b:1', '-o', 'yaml'], /argument 'yaml' is invalid/],
    [
      'an unreadable --auth-file',
      ['release', 'quay.io/a/b:1', '--auth-file', '/nonexistent/auth.json'],
      /--auth-file \/nonexistent\/auth.json: cannot read it \(ENOENT\)/,
    ],
    [
      'an unreadable --ca-file',
      ['release', 'quay.io/a/b:1', '--ca-file', '/nonexistent/ca.pem'],
      /--ca-file \/nonexistent\/ca.pem: cannot read it \(ENOENT\)/,
    ],
  ] as const) {
    it(`exits 2 for ${name}`, async () => {
      const run = await runCli([...argv]);
      expect(run.code).to.equal(2);
      expect(run.stderr).to.match(message);
      expect(run.stdout).to.equal('');
    });
  }

  it('exits 2 for a CA file without a certificate', async () => {
    const file = join(tmp, 'not-a-ca.pem');
    await writeFile(file, 'hello\n');
    const run = await runCli(['release', 'quay.io/a/b:1', '--ca-file', file]);
    expect(run.code).to.equal(2);
    expect(run.stderr).to.match(/no PEM certificate/);
  });

  it('resolves a release in an OCI layout, its driver-toolkit served from the layout by a mirror rule', async () => {
    const fixture = await buildReleaseFixture({ dir: join(tmp, 'multi'), architectures: ['amd64', 'arm64'] });
    const mirror = `${ART_REPOSITORY}=oci:${fixture.dir}`;
    const run = await runCli([
      'release',
      fixture.releaseLayoutReference,
      '--mirror',
      mirror,
      '--arch',
      'arm64',
      '-o',
      'json',
    ]);
    expect(run.code, run.stderr).to.equal(0);
    expect(JSON.parse(run.stdout)).to.deep.equal({
      releaseImage: fixture.releaseLayoutReference,
      digest: fixture.releaseDigest,
      version: '4.19.0',
      kernelVersion: '5.14.0-427.13.1.el9_4.aarch64',
      rtKernelVersion: null,
      rhelVersion: '9.4',
      dtkImage: fixture.driverToolkitReference,
      architecture: 'arm64',
    });
    const text = await runCli(['release', fixture.releaseLayoutReference, '--mirror', mirror, '--rt']);
    expect(text.code, text.stderr).to.equal(0);
    expect(text.stdout).to.match(/^Target kernel +5\.14\.0-427\.13\.1\.el9_4\.x86_64\+rt \(real-time\)$/m);
    expect(text.stdout).to.match(/^Version +4\.19\.0$/m);
  });

  it('prints {releaseImage, error} and exits 1 for an image that is not a release', async () => {
    const fixture = await buildReleaseFixture({ dir: join(tmp, 'not-release'), imageReferences: () => null });
    const run = await runCli(['release', fixture.releaseLayoutReference, '-o', 'json']);
    expect(run.code).to.equal(1);
    const out = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(Object.keys(out)).to.deep.equal(['releaseImage', 'error']);
    expect(out['releaseImage']).to.equal(fixture.releaseLayoutReference);
    expect(out['error']).to.match(/is not an OpenShift release image/);
  });

  it('says why in text output, with the condition reason, on stderr', async () => {
    const fixture = await buildReleaseFixture({
      dir: join(tmp, 'no-dtk'),
      imageReferences: (is) => ({ ...is, spec: { ...is.spec, tags: [] } }),
    });
    const run = await runCli(['release', fixture.releaseLayoutReference]);
    expect(run.code).to.equal(1);
    expect(run.stdout).to.equal('');
    expect(run.stderr).to.match(
      /not resolved \(NoDriverToolkitTag\): release .* lists no 'driver-toolkit' image/,
    );
  });

  it('exits 1 with the error for a release that does not exist', async () => {
    const missing = `oci:${join(tmp, 'nothing-here')}:release`;
    const run = await runCli(['release', missing, '-o', 'json']);
    expect(run.code).to.equal(1);
    expect((JSON.parse(run.stdout) as { error: string }).error).to.match(/release image .*nothing-here/);
  });
});
