import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { buildKernelModule, createModuleSigningKey } from '../../src/fixtures/kmod.ts';
import { buildLayer } from '../../src/image/oci-layout/tar-layer.ts';
import { writeImage } from '../../src/image/oci-layout/writer.ts';
import { runCli } from '../support/cli.ts';
import { pushLayout, startRegistry, type TestRegistry } from '../support/registry.ts';
import { imageCommandArgs } from '../image/stage/image-command-args.ts';

const K = '5.14.0-284.25.1.el9_2.x86_64';
const DIR = `opt/lib/modules/${K}`;

/** `kmm-preflight image` against real registries: TLS with the suite CA and htpasswd auth, and plain HTTP. */
describe('e2e: kmm-preflight image', function () {
  this.timeout(300_000);
  let secured: TestRegistry;
  let plain: TestRegistry;
  let workDir: string;

  before(async () => {
    workDir = await mkdtemp(join(tmpdir(), 'kmm-image-cli-e2e-'));
    [secured, plain] = await Promise.all([startRegistry('tls-auth'), startRegistry('http')]);
    const module = await buildKernelModule({
      name: 'kmm_ci_a',
      kernel: K,
      signWith: createModuleSigningKey(),
    });
    await writeImage(workDir, {
      tag: 'v1',
      layers: [
        await buildLayer([
          { type: 'file', name: `${DIR}/kmm_ci_a.ko`, content: module },
          { type: 'file', name: `${DIR}/modules.dep`, content: 'kmm_ci_a.ko:\n' },
        ]),
      ],
    });
    await pushLayout(`oci:${workDir}:v1`, 'private/kmod:v1', secured);
    await pushLayout(`oci:${workDir}:v1`, 'public/kmod:v1', plain);
  });

  after(async () => {
    await secured?.stop();
    await plain?.stop();
    if (workDir) await rm(workDir, { recursive: true, force: true });
  });

  const args = (reference: string, ...extra: string[]): string[] => imageCommandArgs(reference, K, ...extra);

  it('honours REGISTRY_AUTH_FILE and --ca-file, and prints the verdict JSON', async () => {
    const run = await runCli(
      args(`${secured.host}/private/kmod:v1`, '--ca-file', secured.certificates!.caFile),
      {
        REGISTRY_AUTH_FILE: secured.authFile,
      },
    );
    expect(run.code, run.stderr + run.stdout).to.equal(0);
    const json = JSON.parse(run.stdout) as Record<string, unknown>;
    expect(json).to.include({ verified: true, signed: true, depmod: true, module: 'kmm_ci_a', kernel: K });
    expect(json.digest).to.match(/^sha256:/);
    expect(run.stdout + run.stderr).to.not.include(secured.password!);
  });

  it('uses --auth-file over REGISTRY_AUTH_FILE, and says access was denied without credentials', async () => {
    const withFile = await runCli(
      args(
        `${secured.host}/private/kmod:v1`,
        '--ca-file',
        secured.certificates!.caFile,
        '--auth-file',
        secured.authFile,
      ),
      { REGISTRY_AUTH_FILE: join(workDir, 'no-such-auth.json') },
    );
    expect(withFile.code, withFile.stderr + withFile.stdout).to.equal(0);
    const anonymous = await runCli(
      args(`${secured.host}/private/kmod:v1`, '--ca-file', secured.certificates!.caFile),
    );
    expect(anonymous.code).to.equal(1);
    expect((JSON.parse(anonymous.stdout) as { reason: string }).reason).to.match(/^access to .* denied/);
  });

  it('exits 2 when the auth file named by REGISTRY_AUTH_FILE is missing', async () => {
    const run = await runCli(args(`${secured.host}/private/kmod:v1`), {
      REGISTRY_AUTH_FILE: join(workDir, 'missing.json'),
    });
    expect(run.code).to.equal(2);
    expect(run.stderr).to.include('REGISTRY_AUTH_FILE');
  });

  it('names the fix for a certificate it cannot verify, and verifies with --insecure-skip-tls-verify', async () => {
    const env = { REGISTRY_AUTH_FILE: secured.authFile };
    const untrusted = await runCli(args(`${secured.host}/private/kmod:v1`), env);
    expect(untrusted.code, untrusted.stderr + untrusted.stdout).to.equal(1);
    const refused = JSON.parse(untrusted.stdout) as { verified: boolean; reason: string; digest: unknown };
    expect(refused).to.include({ verified: false, digest: null });
    expect(refused.reason)
      .to.match(/cannot talk to 127\.0\.0\.1:\d+ \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|\w*CERT\w*)/)
      .and.contain('--ca-file')
      .and.contain('--insecure-skip-tls-verify');
    const skipped = await runCli(args(`${secured.host}/private/kmod:v1`, '--insecure-skip-tls-verify'), env);
    expect(skipped.code, skipped.stderr + skipped.stdout).to.equal(0);
    expect(JSON.parse(skipped.stdout)).to.include({ verified: true, module: 'kmm_ci_a' });
  });

  it('reaches a plain-HTTP registry with --insecure', async () => {
    const run = await runCli(args(`${plain.host}/public/kmod:v1`, '--insecure'));
    expect(run.code, run.stderr + run.stdout).to.equal(0);
  });
});
