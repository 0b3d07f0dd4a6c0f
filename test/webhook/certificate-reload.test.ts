import { mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { expect } from 'chai';
import { writeServingCertificates } from '../../certs/files.ts';
import {
  CertificateWatcher,
  loadCertificate,
  type CertificateLoadError,
} from '../../webhook/serving-certificate.ts';
import { fixture, makeCertificates, startTestWebhook, type TestWebhook } from './harness.ts';

/** Fingerprint of the certificate a fresh TLS handshake gets, and the local port of the socket used. */
function servedCertificate(
  port: number,
  ca: string,
  agent?: HttpsAgent,
): Promise<{ fingerprint: string; localPort: number; status: number }> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({});
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path: '/validate',
        method: 'POST',
        ca,
        ...(agent === undefined ? { agent: false } : { agent }),
        headers: { 'content-type': 'application/json' },
      },
      (res) => {
        const socket = res.socket as TLSSocket;
        const result = {
          fingerprint: socket.getPeerCertificate().fingerprint256,
          localPort: socket.localPort ?? 0,
          status: res.statusCode ?? 0,
        };
        res.resume();
        res.on('end', () => resolve(result));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function waitFor<T>(
  probe: () => Promise<T>,
  done: (value: T) => boolean,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (done(value) || Date.now() > deadline) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('webhook serving certificate: hot reload from disk', function () {
  this.timeout(30_000);

  it('serves a certificate written over the files, without dropping a keep-alive connection', async () => {
    const certificates = await makeCertificates();
    const webhook = await startTestWebhook({ certificates });
    const agent = new HttpsAgent({ keepAlive: true, maxSockets: 1 });
    try {
      const ca = await readFile(certificates.caCertFile, 'utf8');
      const before = await servedCertificate(webhook.port, ca, agent);
      const oldFingerprint = webhook.server.certificate.fingerprint256;
      expect(before.fingerprint).to.equal(oldFingerprint);
      const reloads = /kmm_preflight_webhook_certificate_reloads_total\{result="success"\} (\d+)/;
      // Loading the first certificate is not a reload.
      expect(reloads.exec(await webhook.registry.metrics())?.[1]).to.equal('0');

      // Same CA (kept in <dir>/ca), new leaf: renamed into place as `kmm-preflight certs` does.
      await makeCertificates(certificates.dir);
      const fresh = await waitFor(
        () => servedCertificate(webhook.port, ca),
        (served) => served.fingerprint !== oldFingerprint,
      );
      expect(fresh.fingerprint).not.to.equal(oldFingerprint);
      expect(fresh.fingerprint).to.equal(webhook.server.certificate.fingerprint256);

      // The connection opened before the swap is still the one in use, and still answers.
      const reused = await servedCertificate(webhook.port, ca, agent);
      expect(reused.localPort).to.equal(before.localPort);
      expect(reused.fingerprint).to.equal(oldFingerprint);
      expect(reused.status).to.equal(400);
      expect(reloads.exec(await webhook.registry.metrics())?.[1]).to.equal('1');
    } finally {
      agent.destroy();
      await webhook.close();
      await rm(certificates.dir, { recursive: true, force: true });
    }
  });

  it("follows kubelet's atomic ..data symlink swap of a mounted Secret", async () => {
    const mount = await mkdtemp(join(tmpdir(), 'kmm-webhook-mount-'));
    const caDir = join(mount, 'ca-store');
    const publish = async (version: string): Promise<void> => {
      const dir = join(mount, `..${version}`);
      await writeServingCertificates({
        outDir: dir,
        caDir,
        dnsNames: ['localhost'],
        ipAddresses: ['127.0.0.1'],
        days: 1,
      });
      await symlink(`..${version}`, join(mount, '..data_tmp'));
      await rename(join(mount, '..data_tmp'), join(mount, '..data'));
    };
    await publish('2026_11_23_09_00_00.1');
    for (const file of ['tls.crt', 'tls.key', 'ca.crt'])
      await symlink(join('..data', file), join(mount, file));
    const certificates = {
      dir: mount,
      certFile: join(mount, 'tls.crt'),
      keyFile: join(mount, 'tls.key'),
      caCertFile: join(mount, 'ca.crt'),
    };
    const webhook: TestWebhook = await startTestWebhook({ certificates });
    try {
      const ca = await readFile(certificates.caCertFile, 'utf8');
      const oldFingerprint = webhook.server.certificate.fingerprint256;
      await publish('2026_11_23_10_00_00.2');
      const served = await waitFor(
        () => servedCertificate(webhook.port, ca),
        (s) => s.fingerprint !== oldFingerprint,
      );
      expect(served.fingerprint).to.equal(webhook.server.certificate.fingerprint256);
      expect(served.fingerprint).not.to.equal(oldFingerprint);
      const { status } = await webhook.post(await fixture('preflight-create.json'));
      expect(status).to.equal(200);
    } finally {
      await webhook.close();
      await rm(mount, { recursive: true, force: true });
    }
  });

  it('keeps the current certificate when the new files do not match, then takes the fixed pair', async () => {
    const certificates = await makeCertificates();
    const webhook = await startTestWebhook({ certificates });
    try {
      const original = webhook.server.certificate.fingerprint256;
      const other = await makeCertificates();
      // Only the certificate is replaced: its key is not the one on disk.
      await writeFile(certificates.certFile, await readFile(other.certFile));
      await webhook.server.reloadCertificate();
      expect(webhook.server.certificate.fingerprint256).to.equal(original);
      expect(webhook.logs()).to.contain('serving certificate changed but cannot be used');
      expect(webhook.logs()).to.contain('ERR_KEY_MISMATCH');
      await writeFile(certificates.keyFile, await readFile(other.keyFile));
      await webhook.server.reloadCertificate();
      expect(webhook.server.certificate.fingerprint256).not.to.equal(original);
      const served = await servedCertificate(webhook.port, await readFile(other.caCertFile, 'utf8'));
      expect(served.fingerprint).to.equal(webhook.server.certificate.fingerprint256);
      await rm(other.dir, { recursive: true, force: true });
    } finally {
      await webhook.close();
      await rm(certificates.dir, { recursive: true, force: true });
    }
  });

  it('keeps the current certificate, and reports once, when serving the new one fails', async () => {
    const certificates = await makeCertificates();
    try {
      const initial = await loadCertificate(certificates.certFile, certificates.keyFile);
      const errors: CertificateLoadError[] = [];
      const watcher = new CertificateWatcher({
        certFile: certificates.certFile,
        keyFile: certificates.keyFile,
        initial,
        onChange: () => {
          throw new Error('unsupported key type');
        },
        onError: (err) => errors.push(err),
      });
      await makeCertificates(certificates.dir);
      await watcher.reload();
      await watcher.reload();
      expect(watcher.current.fingerprint256).to.equal(initial.fingerprint256);
      expect(errors.map((e) => e.code)).to.deep.equal(['ERR_CERT_PARSE']);
      expect(errors[0]?.message).to.contain('the new certificate cannot be served: unsupported key type');
    } finally {
      await rm(certificates.dir, { recursive: true, force: true });
    }
  });

  it('refuses to start on unusable files, naming them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'kmm-webhook-bad-'));
    try {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'tls.crt'), 'not a certificate');
      await writeFile(join(dir, 'tls.key'), 'not a key');
      const error = await startTestWebhook({
        certificates: {
          dir,
          certFile: join(dir, 'tls.crt'),
          keyFile: join(dir, 'tls.key'),
          caCertFile: join(dir, 'tls.crt'),
        },
      }).then(
        () => undefined,
        (err: unknown) => err as Error & { code?: string },
      );
      expect(error?.code).to.equal('ERR_CERT_PARSE');
      expect(error?.message).to.contain(join(dir, 'tls.crt'));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
