import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { expect } from 'chai';
import forge from 'node-forge';
import {
  CertificateError,
  createCertificateAuthority,
  issueServingCertificate,
} from '../../certs/certificates.ts';
import { writeServingCertificates } from '../../certs/files.ts';
import { runCli } from '../support/cli.ts';

describe('certs: CA and serving certificates with node-forge', function () {
  this.timeout(20_000);
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kmm-certs-'));
  });
  afterEach(async () => rm(dir, { recursive: true, force: true }));

  it('makes a CA (basicConstraints cA) that signs a serverAuth leaf with DNS and IP SANs', async () => {
    const ca = await createCertificateAuthority({ days: 10 });
    const leaf = await issueServingCertificate(ca, {
      dnsNames: ['webhook.kmm-preflight.svc', 'Webhook.Example.COM'],
      ipAddresses: ['127.0.0.1', '::1'],
      days: 5,
    });
    const caX509 = new X509Certificate(ca.certPem);
    const leafX509 = new X509Certificate(leaf.certPem);
    expect(caX509.ca).to.equal(true);
    expect(leafX509.ca).to.equal(false);
    expect(leafX509.checkIssued(caX509)).to.equal(true);
    expect(leafX509.verify(caX509.publicKey)).to.equal(true);
    expect(leafX509.subjectAltName).to.equal(
      'DNS:webhook.kmm-preflight.svc, DNS:webhook.example.com, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1',
    );
    expect(leafX509.checkIP('127.0.0.1')).to.equal('127.0.0.1');
    expect(leafX509.checkHost('webhook.kmm-preflight.svc')).to.equal('webhook.kmm-preflight.svc');
    expect(leafX509.checkPrivateKey(createPrivateKey(leaf.keyPem))).to.equal(true);
    const forgeLeaf = forge.pki.certificateFromPem(leaf.certPem);
    expect(forgeLeaf.getExtension('extKeyUsage')).to.include({ serverAuth: true });
    const days = (Date.parse(leafX509.validTo) - Date.now()) / 86_400_000;
    expect(days).to.be.within(4.9, 5.01);
  });

  it('rejects bad input with a coded error naming the value', async () => {
    const ca = await createCertificateAuthority({ days: 1 });
    const cases: [Parameters<typeof issueServingCertificate>[1], string, string][] = [
      [
        { dnsNames: [], ipAddresses: [], days: 1 },
        'ERR_CERT_NO_SUBJECT',
        'at least one DNS name or IP address',
      ],
      [{ dnsNames: ['bad_name.svc'], ipAddresses: [], days: 1 }, 'ERR_CERT_BAD_DNS_NAME', '"bad_name.svc"'],
      [{ dnsNames: [], ipAddresses: ['300.1.1.1'], days: 1 }, 'ERR_CERT_BAD_IP', '"300.1.1.1"'],
      [{ dnsNames: ['a.b'], ipAddresses: [], days: 0 }, 'ERR_CERT_BAD_DAYS', 'got 0'],
    ];
    for (const [options, code, text] of cases) {
      const err = await issueServingCertificate(ca, options).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).to.be.instanceOf(CertificateError);
      expect((err as CertificateError).code).to.equal(code);
      expect((err as CertificateError).message).to.contain(text);
    }
    const leafAsCa = await issueServingCertificate(ca, { dnsNames: ['a.b'], ipAddresses: [], days: 1 });
    const err = await issueServingCertificate(leafAsCa, {
      dnsNames: ['c.d'],
      ipAddresses: [],
      days: 1,
    }).catch((e: unknown) => e as CertificateError);
    expect((err as CertificateError).code).to.equal('ERR_CERT_BAD_CA');
  });

  it('writes ca.crt, tls.crt and a 0600 tls.key, and reuses a CA directory', async () => {
    const out = join(dir, 'out');
    const caDir = join(dir, 'ca');
    const first = await writeServingCertificates({
      outDir: out,
      caDir,
      dnsNames: ['localhost'],
      ipAddresses: [],
      days: 3,
    });
    expect((await stat(first.keyFile)).mode & 0o777).to.equal(0o600);
    expect((await stat(join(caDir, 'ca.key'))).mode & 0o777).to.equal(0o600);
    const firstCa = await readFile(first.caCertFile, 'utf8');
    const firstLeaf = await readFile(first.certFile, 'utf8');
    await writeServingCertificates({ outDir: out, caDir, dnsNames: ['localhost'], ipAddresses: [], days: 3 });
    expect(await readFile(first.caCertFile, 'utf8')).to.equal(firstCa);
    expect(await readFile(first.certFile, 'utf8')).not.to.equal(firstLeaf);
    const leaf = new X509Certificate(await readFile(first.certFile));
    expect(leaf.verify(new X509Certificate(firstCa).publicKey)).to.equal(true);
  });

  it('kmm-preflight certs writes the files and reports the SANs; no SAN is a usage error', async () => {
    const out = join(dir, 'cli');
    const run = await runCli([
      'certs',
      '--out',
      out,
      '--dns',
      'webhook.ns.svc',
      '--ip',
      '127.0.0.1',
      '--days',
      '30',
    ]);
    expect(run.code).to.equal(0);
    expect(run.stdout).to.contain('subjectAltName: DNS:webhook.ns.svc, IP Address:127.0.0.1');
    const leaf = new X509Certificate(await readFile(join(out, 'tls.crt')));
    expect(leaf.checkIssued(new X509Certificate(await readFile(join(out, 'ca.crt'))))).to.equal(true);
    const bad = await runCli(['certs', '--out', join(dir, 'none')]);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.contain('needs at least one DNS name or IP address');
    const badDays = await runCli([
      'certs',
      '--out',
      join(dir, 'none'),
      '--ip',
      '127.0.0.1',
      '--days',
      'soon',
    ]);
    expect(badDays.code).to.equal(2);
    expect(badDays.stderr).to.contain('--days');
  });

  it('kmm-preflight certs names the flag whose directory cannot be written, however the paths are spelled', async () => {
    // A regular file where a directory should be: ENOTDIR below it, even for root.
    await writeFile(join(dir, 'blocker'), '');
    const relativeDir = (path: string): string => `./${relative(process.cwd(), path)}`;
    const caBlocked = await runCli([
      'certs',
      '--out',
      join(dir, 'out-ok'),
      '--ca-dir',
      relativeDir(join(dir, 'blocker', 'ca')),
      '--dns',
      'webhook.ns.svc',
    ]);
    expect(caBlocked.code).to.equal(2);
    expect(caBlocked.stderr).to.match(
      /^kmm-preflight: --ca-dir: cannot write .*blocker\/ca\/ca\.\w+ \(ENOTDIR\)/,
    );
    // --ca-dir is a prefix of --out's spelling, not its parent: the failure is --out's.
    const outBlocked = await runCli([
      'certs',
      '--out',
      join(dir, 'blocker', 'out'),
      '--ca-dir',
      join(dir, 'blo'),
      '--dns',
      'webhook.ns.svc',
    ]);
    expect(outBlocked.code).to.equal(2);
    expect(outBlocked.stderr).to.match(/^kmm-preflight: --out: cannot write .*blocker\/out/);
  });
});
