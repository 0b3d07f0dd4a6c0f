import { expect } from 'chai';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { UsageError } from '../../src/cli/io.ts';
import { readCaFiles } from '../../src/runner/ca-files.ts';
import { runCli } from '../support/cli.ts';

describe('runner: --ca-file', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rn-ca-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reads PEM CA files in order', async () => {
    const first = join(dir, 'a.pem');
    const second = join(dir, 'b.pem');
    await writeFile(first, rootCertificates[0] ?? '');
    await writeFile(second, rootCertificates[1] ?? '');
    expect(await readCaFiles([first, second])).to.deep.equal([rootCertificates[0], rootCertificates[1]]);
    expect(await readCaFiles([])).to.deep.equal([]);
  });

  it('a missing file or one without a PEM certificate is a usage error naming it', async () => {
    const der = join(dir, 'ca.der');
    await writeFile(der, Buffer.from([0x30, 0x82, 0x01, 0x0a]));
    const missing = join(dir, 'nope.pem');
    for (const [file, message] of [
      [der, /--ca-file \(KMM_PREFLIGHT_CA_FILES\) .*ca\.der: no PEM certificate in it/],
      [missing, /--ca-file \(KMM_PREFLIGHT_CA_FILES\) .*nope\.pem: cannot read it \(ENOENT\)/],
    ] as const) {
      let caught: unknown;
      await readCaFiles([file]).catch((err: unknown) => (caught = err));
      expect(caught).to.be.instanceOf(UsageError);
      expect((caught as Error).message).to.match(message);
    }
  });

  it('the runner command exits 2 on a bad --ca-file, before it serves anything', async () => {
    const kubeconfig = join(dir, 'kubeconfig');
    await writeFile(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        'clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]',
        'users: [{name: u, user: {token: t}}]',
        'contexts: [{name: x, context: {cluster: c, user: u}}]',
        'current-context: x',
      ].join('\n'),
    );
    const der = join(dir, 'runner-ca.der');
    await writeFile(der, Buffer.from([0x30, 0x82, 0x01, 0x0a]));
    const run = await runCli(
      [
        'runner',
        '--kubeconfig',
        kubeconfig,
        '--ca-file',
        der,
        '--ops-address',
        '127.0.0.1:0',
        '--log-level',
        'silent',
      ],
      {},
    );
    expect(run.code).to.equal(2);
    expect(run.stderr).to.contain('runner-ca.der: no PEM certificate in it');
  });
});
