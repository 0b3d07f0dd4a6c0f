import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { stringify } from 'yaml';
import { runCli } from '../support/cli.ts';
import { makeCertificates } from './harness.ts';

// `kmm-preflight webhook` refuses bad input before it serves anything: exit 2 and a message naming what to fix.
// (The running command is exercised as a separate process by test/e2e/webhook.test.ts.)

describe('kmm-preflight webhook: usage errors', function () {
  this.timeout(20_000);
  let dir: string;
  let kubeconfig: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kmm-webhook-cli-'));
    kubeconfig = join(dir, 'kubeconfig');
    // Never contacted: every case below fails before the cache starts.
    await writeFile(
      kubeconfig,
      stringify({
        apiVersion: 'v1',
        kind: 'Config',
        clusters: [
          { name: 'c', cluster: { server: 'https://127.0.0.1:1', 'insecure-skip-tls-verify': true } },
        ],
        users: [{ name: 'u', user: { token: 'unused' } }],
        contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
        'current-context': 'x',
      }),
    );
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  const base = (): string[] => [
    'webhook',
    '--kubeconfig',
    kubeconfig,
    '--tls-key-file',
    join(dir, 'tls.key'),
  ];

  it('requires the certificate flags', async () => {
    const run = await runCli(['webhook', '--tls-key-file', 'k']);
    expect(run.code).to.equal(2);
    expect(run.stderr).to.contain("required option '--tls-cert-file <file>' not specified");
  });

  it('rejects an unknown policy, failure mode, port or window', async () => {
    const cases: [string[], string][] = [
      [['--module-policy', 'block'], 'Allowed choices are deny, warn'],
      [['--failure-mode', 'ignore'], 'Allowed choices are deny, allow'],
      [['--port', '70000'], '"70000" is not a port number'],
      [['--active-window-hours', '-1'], '"-1" is not a non-negative number'],
    ];
    for (const [flags, message] of cases) {
      const run = await runCli([...base(), '--tls-cert-file', 'c', ...flags]);
      expect(run.code, flags.join(' ')).to.equal(2);
      expect(run.stderr, flags.join(' ')).to.contain(message);
    }
  });

  const serveArgs = ['--port', '0', '--health-port', '0', '--bind-address', '127.0.0.1'];

  it('names the certificate file first when neither file can be read', async () => {
    const certFile = join(dir, 'missing.crt');
    const run = await runCli([...base(), '--tls-cert-file', certFile, ...serveArgs]);
    expect(run.code).to.equal(2);
    expect(run.stderr).to.equal(
      `kmm-preflight: cannot read the certificate file ${certFile}: ` +
        `ENOENT: no such file or directory, open '${certFile}'\n`,
    );
  });

  it('names the key file when only the key cannot be read', async () => {
    const { certFile } = await makeCertificates(join(dir, 'certs'));
    const keyFile = join(dir, 'tls.key');
    const run = await runCli([...base(), '--tls-cert-file', certFile, ...serveArgs]);
    expect(run.code).to.equal(2);
    expect(run.stderr).to.equal(
      `kmm-preflight: cannot read the private key file ${keyFile}: ` +
        `ENOENT: no such file or directory, open '${keyFile}'\n`,
    );
  });

  it('names a kubeconfig it cannot load', async () => {
    const run = await runCli([
      'webhook',
      '--tls-cert-file',
      'c',
      '--tls-key-file',
      'k',
      '--kubeconfig',
      join(dir, 'nope'),
    ]);
    expect(run.code).to.equal(2);
    expect(run.stderr).to.contain('cannot load the Kubernetes configuration');
  });
});
