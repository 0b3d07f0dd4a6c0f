import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';

import { expect } from 'chai';

import { RegistryClient, type RegistryClientOptions } from '../../../src/image/registry/client.ts';
import { RegistryCredentials } from '../../../src/image/registry/credentials.ts';
import { MediaType } from '../../../src/image/registry/media-types.ts';
import { ImageError } from '../../../src/image/source.ts';
import { createTestCertificates, type TestCertificates } from '../../support/registry.ts';

/**
 * The client against small HTTP servers on 127.0.0.1 that play a registry's part exactly as each case needs
 * (auth, redirects, faults). The real registry is exercised by test/e2e/registry.test.ts.
 */

type Handler = (req: IncomingMessage, res: ServerResponse, server: TestServer) => void;

interface TestServer {
  readonly host: string;
  readonly requests: Array<{ method: string; url: string; authorization?: string; range?: string }>;
  close(): Promise<void>;
}

async function startServer(handler: Handler, tls?: { key: string; cert: string }): Promise<TestServer> {
  const requests: TestServer['requests'] = [];
  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    requests.push({
      method: req.method ?? '',
      url: req.url ?? '',
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
      ...(req.headers.range ? { range: req.headers.range } : {}),
    });
    handler(req, res, test);
  };
  const server: Server = tls ? createHttpsServer(tls, listener) : createServer(listener);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const test: TestServer = {
    host: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return test;
}

const sha = (bytes: Buffer): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux' }));
const layer = Buffer.from('layer-bytes-'.repeat(5000));
const manifestBody = (withMediaType = true): Buffer =>
  Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      ...(withMediaType ? { mediaType: MediaType.ociManifest } : {}),
      config: { mediaType: MediaType.ociConfig, digest: sha(config), size: config.length },
      layers: [{ mediaType: MediaType.ociLayerGzip, digest: sha(layer), size: layer.length }],
    }),
  );
const manifest = manifestBody();

/** Serves the image above at repository `app`, tag `v1`. */
function serveImage(req: IncomingMessage, res: ServerResponse): boolean {
  if (req.url === '/v2/app/manifests/v1' || req.url === `/v2/app/manifests/${sha(manifest)}`) {
    res.writeHead(200, { 'content-type': MediaType.ociManifest, 'docker-content-digest': sha(manifest) });
    res.end(manifest);
    return true;
  }
  if (req.url === `/v2/app/blobs/${sha(config)}`) {
    res.end(config);
    return true;
  }
  if (req.url === `/v2/app/blobs/${sha(layer)}`) {
    const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (range?.[1] !== undefined) {
      const start = Number(range[1]);
      res.writeHead(206, { 'content-range': `bytes ${start}-${layer.length - 1}/${layer.length}` });
      res.end(layer.subarray(start));
    } else {
      res.end(layer);
    }
    return true;
  }
  return false;
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function rejection(promise: Promise<unknown>): Promise<ImageError> {
  try {
    await promise;
  } catch (err) {
    expect(err).to.be.instanceOf(ImageError);
    return err as ImageError;
  }
  throw new Error('expected a rejection');
}

const amd64 = { platform: { os: 'linux', architecture: 'amd64' } };

describe('registry client (local HTTP servers)', () => {
  const servers: TestServer[] = [];
  const clients: RegistryClient[] = [];
  let delays: number[];

  async function server(handler: Handler): Promise<TestServer> {
    const started = await startServer(handler);
    servers.push(started);
    return started;
  }

  function client(registry: TestServer, options: RegistryClientOptions = {}): RegistryClient {
    const made = new RegistryClient({
      plainHttpRegistries: [registry.host],
      sleep: (ms) => {
        delays.push(ms);
        return Promise.resolve();
      },
      random: () => 0.5,
      ...options,
    });
    clients.push(made);
    return made;
  }

  beforeEach(() => {
    delays = [];
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close()));
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  it('resolves a tag, verifies the manifest and streams the layer', async () => {
    const registry = await server((req, res) => {
      if (!serveImage(req, res)) res.writeHead(404).end();
    });
    const c = client(registry);
    const image = await c.resolve(`${registry.host}/app:v1`, amd64);
    expect(image.digest).to.equal(sha(manifest));
    expect(image.reference).to.equal(`${registry.host}/app:v1`);
    expect(image.platform).to.deep.equal({ os: 'linux', architecture: 'amd64' });
    expect((await readAll(await c.openBlob(image, image.manifest.layers[0]!))).equals(layer)).to.be.true;
    expect(registry.requests.find((r) => r.url.includes('/manifests/'))).to.exist;
    const stats = c.stats()[registry.host];
    expect(stats?.requests).to.equal(3);
    expect(stats?.bytesReceived).to.equal(manifest.length + config.length + layer.length);
  });

  it('sends every manifest type in Accept and takes the type from Content-Type when the body has none', async () => {
    const bare = manifestBody(false);
    let accept = '';
    const registry = await server((req, res) => {
      if (req.url === '/v2/app/manifests/v1') {
        accept = req.headers.accept ?? '';
        res.writeHead(200, { 'content-type': MediaType.ociManifest });
        res.end(bare);
      } else if (!serveImage(req, res)) res.writeHead(404).end();
    });
    const image = await client(registry).resolve(`${registry.host}/app:v1`, amd64);
    expect(image.digest).to.equal(sha(bare));
    expect(image.manifest.mediaType).to.equal(MediaType.ociManifest);
    for (const type of [
      MediaType.ociIndex,
      MediaType.ociManifest,
      MediaType.dockerManifestList,
      MediaType.dockerManifest,
    ]) {
      expect(accept).to.contain(type);
    }
  });

  it('caches manifests fetched by digest but re-resolves tags on every call', async () => {
    const registry = await server((req, res) => {
      if (!serveImage(req, res)) res.writeHead(404).end();
    });
    const c = client(registry);
    await c.resolve(`${registry.host}/app@${sha(manifest)}`, amd64);
    await c.resolve(`${registry.host}/app@${sha(manifest)}`, amd64);
    await c.resolve(`${registry.host}/app:v1`, amd64);
    await c.resolve(`${registry.host}/app:v1`, amd64);
    const manifestRequests = registry.requests.filter((r) => r.url.includes('/manifests/')).map((r) => r.url);
    expect(manifestRequests).to.deep.equal([
      `/v2/app/manifests/${sha(manifest)}`,
      '/v2/app/manifests/v1',
      '/v2/app/manifests/v1',
    ]);
    expect(registry.requests.filter((r) => r.url.includes(sha(config)))).to.have.length(1);
  });

  it('serves a digest from the cache after its tag was resolved, but not to other credentials', async () => {
    const registry = await server((req, res) => {
      if (!serveImage(req, res)) res.writeHead(404).end();
    });
    const other = RegistryCredentials.fromDockerConfig(
      { auths: { [registry.host]: { auth: btoa('other:x') } } },
      'x',
    );
    const c = client(registry);
    await c.resolve(`${registry.host}/app:v1`, amd64);
    await c.resolve(`${registry.host}/app@${sha(manifest)}`, amd64);
    const manifestRequests = (): number =>
      registry.requests.filter((r) => r.url.includes('/manifests/')).length;
    expect(manifestRequests()).to.equal(1);
    await c.resolve(`${registry.host}/app@${sha(manifest)}`, { ...amd64, credentials: other });
    expect(manifestRequests()).to.equal(2);
  });

  it('refuses manifest bytes that do not match the digest asked for or announced', async () => {
    const registry = await server((_req, res) => {
      res.writeHead(200, {
        'content-type': MediaType.ociManifest,
        'docker-content-digest': sha(Buffer.from('other')),
      });
      res.end(manifest);
    });
    const byTag = await rejection(client(registry).resolve(`${registry.host}/app:v1`, amd64));
    expect(byTag.code).to.equal('DIGEST_MISMATCH');
    const wanted = sha(Buffer.from('wanted'));
    const byDigest = await rejection(client(registry).resolve(`${registry.host}/app@${wanted}`, amd64));
    expect(byDigest.code).to.equal('DIGEST_MISMATCH');
    expect(byDigest.message).to.contain(`asked for ${wanted}`);
  });

  it('refuses manifests over the size limit', async () => {
    const registry = await server((req, res) => {
      if (!serveImage(req, res)) res.writeHead(404).end();
    });
    const err = await rejection(
      client(registry, { maxManifestBytes: 100 }).resolve(`${registry.host}/app:v1`, amd64),
    );
    expect(err.code).to.equal('LIMIT_EXCEEDED');
  });

  it('fails a blob stream whose bytes do not match its digest, at the end', async () => {
    const registry = await server((req, res) => {
      if (req.url === `/v2/app/blobs/${sha(layer)}`) {
        const wrong = Buffer.from(layer);
        wrong.writeUInt8(0x21, 100);
        res.end(wrong);
      } else if (!serveImage(req, res)) res.writeHead(404).end();
    });
    const c = client(registry);
    const image = await c.resolve(`${registry.host}/app:v1`, amd64);
    const err = await rejection(readAll(await c.openBlob(image, image.manifest.layers[0]!)));
    expect(err.code).to.equal('DIGEST_MISMATCH');
  });

  it('maps 404, 401 and 403 to definite errors with the registry message', async () => {
    const registry = await server((req, res) => {
      const [status, code] = req.url?.includes('missing')
        ? [404, 'MANIFEST_UNKNOWN']
        : req.url?.includes('private')
          ? [403, 'DENIED']
          : [401, 'UNAUTHORIZED'];
      res.writeHead(status, status === 401 ? { 'www-authenticate': 'Basic realm="r"' } : {});
      res.end(JSON.stringify({ errors: [{ code, message: 'told by the registry' }] }));
    });
    const c = client(registry, {
      credentials: RegistryCredentials.fromDockerConfig(
        { auths: { [registry.host]: { auth: btoa('u:wrong') } } },
        'x',
      ),
    });
    const missing = await rejection(c.resolve(`${registry.host}/missing:v1`, amd64));
    expect([missing.code, missing.definite]).to.deep.equal(['NOT_FOUND', true]);
    expect(missing.message).to.contain('MANIFEST_UNKNOWN: told by the registry');
    const denied = await rejection(c.resolve(`${registry.host}/private:v1`, amd64));
    expect([denied.code, denied.definite]).to.deep.equal(['DENIED', true]);
    const unauthorized = await rejection(c.resolve(`${registry.host}/app:v1`, amd64));
    expect([unauthorized.code, unauthorized.definite]).to.deep.equal(['UNAUTHORIZED', true]);
    expect(unauthorized.message).to.contain('as u').and.not.contain('wrong');
    const anonymous = await rejection(client(registry).resolve(`${registry.host}/app:v1`, amd64));
    expect(anonymous.message).to.contain('requires credentials and none are configured');
  });

  it('sends Basic credentials to the registry and drops them on a redirect to another host', async () => {
    const storage = await server((_req, res) => {
      res.end(layer);
    });
    const registry = await server((req, res) => {
      if (req.headers.authorization !== `Basic ${btoa('user:pw')}`) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="registry"' }).end();
      } else if (req.url === `/v2/app/blobs/${sha(layer)}`) {
        res.writeHead(307, { location: `http://${storage.host}/signed/blob?sig=abc` }).end();
      } else if (!serveImage(req, res)) res.writeHead(404).end();
    });
    const c = client(registry, {
      plainHttpRegistries: [registry.host, storage.host],
      credentials: RegistryCredentials.fromDockerConfig(
        { auths: { [registry.host]: { auth: btoa('user:pw') } } },
        'x',
      ),
    });
    const image = await c.resolve(`${registry.host}/app:v1`, amd64);
    expect((await readAll(await c.openBlob(image, image.manifest.layers[0]!))).equals(layer)).to.be.true;
    expect(storage.requests).to.deep.equal([{ method: 'GET', url: '/signed/blob?sig=abc' }]);
    const authorized = registry.requests.filter((r) => r.authorization !== undefined);
    expect(authorized.length).to.be.greaterThan(0);
    // After the first 401 the client authenticates up front: one refusal in all.
    expect(registry.requests.filter((r) => r.authorization === undefined)).to.have.length(1);
  });

  it('keeps credentials on a same-origin redirect', async () => {
    const registry = await server((req, res) => {
      if (req.headers.authorization !== `Basic ${btoa('user:pw')}`) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="registry"' }).end();
      } else if (req.url === `/v2/app/blobs/${sha(layer)}`) {
        res.writeHead(302, { location: `/v2/app/blobs/moved` }).end();
      } else if (req.url === '/v2/app/blobs/moved') {
        res.end(layer);
      } else if (!serveImage(req, res)) res.writeHead(404).end();
    });
    const c = client(registry, {
      credentials: RegistryCredentials.fromDockerConfig(
        { auths: { [registry.host]: { auth: btoa('user:pw') } } },
        'x',
      ),
    });
    const image = await c.resolve(`${registry.host}/app:v1`, amd64);
    expect((await readAll(await c.openBlob(image, image.manifest.layers[0]!))).equals(layer)).to.be.true;
    expect(registry.requests.find((r) => r.url === '/v2/app/blobs/moved')?.authorization).to.equal(
      `Basic ${btoa('user:pw')}`,
    );
  });

  it('reports a token registry refusing the scope (insufficient_scope) as DENIED', async () => {
    const registry = await server((req, res, self) => {
      if (req.url?.startsWith('/token')) {
        res.end(JSON.stringify({ token: 'anonymous-token' }));
        return;
      }
      res.writeHead(401, {
        'www-authenticate': `Bearer realm="http://${self.host}/token",service="s",scope="repository:app:pull",error="insufficient_scope"`,
      });
      res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }));
    });
    const err = await rejection(client(registry).resolve(`${registry.host}/app:v1`, amd64));
    expect([err.code, err.definite]).to.deep.equal(['DENIED', true]);
    expect(err.message).to.contain(
      'anonymously: the repository does not exist or these credentials may not pull it',
    );
  });

  it('runs the Bearer token flow, shares and caches the token per scope until it expires, accepts access_token', async () => {
    let now = 1_000_000;
    const tokenRequests: string[] = [];
    const registry = await server((req, res, self) => {
      if (req.url?.startsWith('/token')) {
        tokenRequests.push(req.url);
        expect(req.headers.authorization).to.equal(`Basic ${btoa('robot:s3cret')}`);
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ access_token: 'tok-1', expires_in: 300 }));
      } else if (req.headers.authorization !== 'Bearer tok-1') {
        res.writeHead(401, {
          'www-authenticate': `Basic realm="basic", Bearer realm="http://${self.host}/token",service="test-registry",scope="repository:app:pull"`,
        });
        res.end();
      } else if (!serveImage(req, res)) res.writeHead(404).end();
    });
    const c = client(registry, {
      now: () => now,
      credentials: RegistryCredentials.fromDockerConfig(
        { auths: { [registry.host]: { auth: btoa('robot:s3cret') } } },
        'x',
      ),
    });
    // Concurrent pulls share one token fetch; later ones reuse the token without a 401 first.
    await Promise.all([1, 2, 3, 4].map(() => c.resolve(`${registry.host}/app:v1`, amd64)));
    await c.resolve(`${registry.host}/app:v1`, amd64);
    expect(tokenRequests).to.deep.equal(['/token?service=test-registry&scope=repository%3Aapp%3Apull']);
    now += 301_000;
    await c.resolve(`${registry.host}/app:v1`, amd64);
    expect(tokenRequests).to.have.length(2);
  });

  it('retries 5xx with backoff and 429 as Retry-After says, within bounds', async () => {
    let failures = 0;
    const registry = await server((req, res) => {
      if (req.url === '/v2/app/manifests/v1' && failures < 2) {
        failures++;
        res.writeHead(failures === 1 ? 503 : 429, failures === 2 ? { 'retry-after': '3' } : {}).end();
      } else if (!serveImage(req, res)) res.writeHead(404).end();
    });
    const c = client(registry, { retry: { baseDelayMs: 100 } });
    await c.resolve(`${registry.host}/app:v1`, amd64);
    expect(delays).to.deep.equal([75, 3000]);
    expect(c.stats()[registry.host]?.retries).to.equal(2);
  });

  it('gives up after maxAttempts with a non-definite UNREACHABLE, and does not wait for a huge Retry-After', async () => {
    const registry = await server((req, res) => {
      res.writeHead(req.url?.includes('throttled') ? 429 : 500, { 'retry-after': '3600' }).end();
    });
    const c = client(registry, { retry: { maxAttempts: 3 } });
    const err = await rejection(c.resolve(`${registry.host}/app:v1`, amd64));
    expect([err.code, err.definite]).to.deep.equal(['UNREACHABLE', false]);
    expect(err.message).to.contain('answered 500 after 1 try');
    expect(delays).to.deep.equal([]);
    const registry2 = await server((_req, res) => {
      res.writeHead(502).end();
    });
    const err2 = await rejection(
      client(registry2, { retry: { maxAttempts: 3 } }).resolve(`${registry2.host}/app:v1`, amd64),
    );
    expect(err2.message).to.contain('answered 502 after 3 tries');
    expect(delays).to.have.length(2);
  });

  it('stops retrying as soon as the caller aborts', async () => {
    const registry = await server((_req, res) => {
      res.writeHead(503).end();
    });
    const controller = new AbortController();
    const c = client(registry, { onRequest: () => controller.abort(new Error('shutting down')) });
    const outcome = await c.resolve(`${registry.host}/app:v1`, { ...amd64, signal: controller.signal }).then(
      () => undefined,
      (err: unknown) => err as Error,
    );
    expect(outcome?.message).to.equal('shutting down');
    expect(registry.requests).to.have.length(1);
  });

  it('resumes a blob that breaks off mid-stream with a Range request', async () => {
    let cut = false;
    const registry = await server((req, res) => {
      if (req.url === `/v2/app/blobs/${sha(layer)}` && !cut) {
        cut = true;
        res.writeHead(200, { 'content-length': String(layer.length) });
        res.write(layer.subarray(0, 20_000), () => res.socket?.destroy());
      } else if (!serveImage(req, res)) res.writeHead(404).end();
    });
    const c = client(registry);
    const image = await c.resolve(`${registry.host}/app:v1`, amd64);
    expect((await readAll(await c.openBlob(image, image.manifest.layers[0]!))).equals(layer)).to.be.true;
    const blobRequests = registry.requests.filter((r) => r.url.includes(sha(layer)));
    expect(blobRequests).to.have.length(2);
    expect(blobRequests[1]?.range).to.match(/^bytes=\d+-$/);
    expect(c.stats()[registry.host]?.retries).to.equal(1);
  });

  it('skips repeated bytes when the server ignores Range, and resumes after a stall', async () => {
    let calls = 0;
    const registry = await server((req, res) => {
      if (req.url === `/v2/app/blobs/${sha(layer)}`) {
        calls++;
        if (calls === 1) {
          res.writeHead(200, { 'content-length': String(layer.length) });
          res.write(layer.subarray(0, 10_000)); // then silence: the body timeout must fire
          return;
        }
        res.end(layer); // 200 with everything, Range ignored
      } else if (!serveImage(req, res)) res.writeHead(404).end();
    });
    const c = client(registry, { bodyTimeoutMs: 300 });
    const image = await c.resolve(`${registry.host}/app:v1`, amd64);
    expect((await readAll(await c.openBlob(image, image.manifest.layers[0]!))).equals(layer)).to.be.true;
    expect(calls).to.equal(2);
  });

  it('stops resuming after maxAttempts and fails the stream, never ending it cleanly', async () => {
    const registry = await server((req, res) => {
      if (req.url === `/v2/app/blobs/${sha(layer)}`) {
        res.writeHead(200, { 'content-length': String(layer.length) });
        res.write(layer.subarray(0, 1000), () => res.socket?.destroy());
      } else if (!serveImage(req, res)) res.writeHead(404).end();
    });
    const c = client(registry, { retry: { maxAttempts: 3 } });
    const image = await c.resolve(`${registry.host}/app:v1`, amd64);
    const err = await rejection(readAll(await c.openBlob(image, image.manifest.layers[0]!)));
    expect(err.code).to.equal('UNREACHABLE');
    expect(err.message).to.contain('broke off 3 times');
  });

  it('bounds concurrent exchanges per host', async () => {
    let active = 0;
    let peak = 0;
    const registry = await server((req, res) => {
      active++;
      peak = Math.max(peak, active);
      setTimeout(() => {
        active--;
        if (!serveImage(req, res)) res.writeHead(404).end();
      }, 20);
    });
    const c = client(registry, { maxConcurrencyPerHost: 2 });
    await Promise.all(Array.from({ length: 6 }, () => c.resolve(`${registry.host}/app:v1`, amd64)));
    expect(peak).to.equal(2);
  });

  describe('over TLS', () => {
    let dir: string;
    let certs: TestCertificates;
    let https: TestServer;
    before(async function () {
      this.timeout(60_000);
      dir = await mkdtemp(join(tmpdir(), 'kmm-client-tls-'));
      certs = await createTestCertificates(dir);
    });
    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });
    beforeEach(async () => {
      https = await startServer(
        (_req, res) => {
          res
            .writeHead(401, { 'www-authenticate': 'Bearer realm="http://127.0.0.1:9/token",service="x"' })
            .end();
        },
        { key: await readFile(certs.keyFile, 'utf8'), cert: await readFile(certs.certFile, 'utf8') },
      );
      servers.push(https);
    });

    it('trusts an extra CA and refuses to send credentials to a token realm that is not https', async () => {
      const c = client(https, { plainHttpRegistries: [], caCertificates: [certs.caCert] });
      const err = await rejection(c.resolve(`${https.host}/app:v1`, amd64));
      expect(err.code).to.equal('UNAUTHORIZED');
      expect(err.message).to.contain('token realm http://127.0.0.1:9 is not https');
    });

    it('explains an untrusted certificate as a definite failure, and insecureSkipTLSVerify gets past it', async () => {
      const c = client(https, { plainHttpRegistries: [] });
      const err = await rejection(c.resolve(`${https.host}/app:v1`, amd64));
      expect([err.code, err.definite]).to.deep.equal(['UNREACHABLE', true]);
      expect(err.message).to.contain('trust its CA with --ca-file');
      const skip = await rejection(
        c.resolve(`${https.host}/app:v1`, { ...amd64, tls: { insecureSkipTLSVerify: true } }),
      );
      expect(skip.message).to.contain('is not https');
    });
  });
});
