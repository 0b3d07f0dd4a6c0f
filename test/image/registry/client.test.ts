import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { spawn } from 'node:child_process';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';

import { RegistryClient, type RegistryClientOptions } from '../../../src/image/registry/client.ts';
import { RegistryCredentials } from '../../../src/image/registry/credentials.ts';
import { MediaType } from '../../../src/image/registry/media-types.ts';
import { createTestCertificates, type TestCertificates } from '../../support/registry.ts';
import { readAll, rejection } from '../../support/image-assertions.ts';

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

/** A TCP server that reads requests and never answers: each try must end by the client's headers timeout. */
async function startSilentServer(): Promise<{
  server: { host: string; close(): Promise<void> };
  requestsSeen(): number;
}> {
  let requests = 0;
  const sockets = new Set<Socket>();
  const listener = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('data', (chunk: Buffer) => {
      requests += chunk.toString('latin1').split('\r\n\r\n').length - 1;
    });
    socket.on('error', () => {}); // the client hangs up on us: expected
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  return {
    server: {
      host: `127.0.0.1:${(listener.address() as AddressInfo).port}`,
      close: () =>
        new Promise((resolve) => {
          for (const socket of sockets) socket.destroy();
          listener.close(() => resolve());
        }),
    },
    requestsSeen: () => requests,
  };
}

/**
 * A port where TCP connects never complete, made without privileges: a listener in another process whose event
 * loop is blocked (so it never accepts), with a backlog of 1 filled by two idle connections. Linux then drops
 * further SYNs instead of refusing them, so a client's connect hangs until its own timeout.
 */
async function startFullBacklogListener(): Promise<{ server: { host: string; close(): Promise<void> } }> {
  const program = `
    const server = require('node:net').createServer();
    server.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
      process.stdout.write(server.address().port + '\\n');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); // never accept
    });`;
  const child = spawn(process.execPath, ['-e', program], { stdio: ['ignore', 'pipe', 'inherit'] });
  const fillers: Socket[] = [];
  const close = async (): Promise<void> => {
    for (const socket of fillers) socket.destroy();
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
  };
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`the listener process exited (${code})`)));
      child.stdout.once('data', (text: Buffer) => resolve(Number(text.toString().trim())));
    });
    // Backlog 1 holds two completed connections on Linux; both must connect before the queue is full.
    for (let i = 0; i < 2; i++) {
      const socket = connect(port, '127.0.0.1');
      fillers.push(socket);
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error('filling the accept queue: no connect in 10 s')),
          10_000,
        );
        socket.once('connect', () => {
          clearTimeout(timer);
          resolve();
        });
        socket.once('error', reject);
      });
    }
    return { server: { host: `127.0.0.1:${port}`, close } };
  } catch (err) {
    await close();
    throw err;
  }
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

/** Serves the image above at `repository` (default `app`), tag `v1`. */
function serveImage(req: IncomingMessage, res: ServerResponse, repository = 'app'): boolean {
  const base = `/v2/${repository}`;
  if (req.url === `${base}/manifests/v1` || req.url === `${base}/manifests/${sha(manifest)}`) {
    res.writeHead(200, { 'content-type': MediaType.ociManifest, 'docker-content-digest': sha(manifest) });
    res.end(manifest);
    return true;
  }
  if (req.url === `${base}/blobs/${sha(config)}`) {
    res.end(config);
    return true;
  }
  if (req.url === `${base}/blobs/${sha(layer)}`) {
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

  function client(registry: { readonly host: string }, options: RegistryClientOptions = {}): RegistryClient {
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

  it('keeps one token per repository scope, reuses each until it expires, and fetches only the expired one again', async () => {
    let now = 1_000_000;
    /** Scope → tokens issued for it, in order. */
    const issued = new Map<string, string[]>();
    const lifetimeSeconds: Record<string, number> = {
      'repository:app:pull': 300,
      'repository:tools/other:pull': 400,
    };
    const registry = await server((req, res, self) => {
      const url = new URL(req.url ?? '/', 'http://registry');
      if (url.pathname === '/token') {
        const scope = url.searchParams.get('scope') ?? '';
        const tokens = issued.get(scope) ?? [];
        const token = `${scope}#${tokens.length + 1}`;
        issued.set(scope, [...tokens, token]);
        res.end(JSON.stringify({ token, expires_in: lifetimeSeconds[scope] }));
        return;
      }
      const repository = url.pathname.startsWith('/v2/tools/other/') ? 'tools/other' : 'app';
      const scope = `repository:${repository}:pull`;
      // A token is good for its own repository only, and only the latest one issued for it.
      if (req.headers.authorization !== `Bearer ${issued.get(scope)?.at(-1) ?? 'none'}`) {
        res.writeHead(401, {
          'www-authenticate': `Bearer realm="http://${self.host}/token",service="reg",scope="${scope}"`,
        });
        res.end();
      } else if (!serveImage(req, res, repository)) res.writeHead(404).end();
    });
    const c = client(registry, { now: () => now });
    const pullBoth = (): Promise<unknown> =>
      Promise.all([
        c.resolve(`${registry.host}/app:v1`, amd64),
        c.resolve(`${registry.host}/tools/other:v1`, amd64),
      ]);
    const tokenCounts = (): [number, number] => [
      issued.get('repository:app:pull')?.length ?? 0,
      issued.get('repository:tools/other:pull')?.length ?? 0,
    ];
    await pullBoth();
    await pullBoth();
    expect(tokenCounts(), 'one token per scope, reused').to.deep.equal([1, 1]);
    now += 301_000; // app's token (300 s) has expired, other's (400 s) has not
    await pullBoth();
    expect(tokenCounts(), 'only the expired scope fetched again').to.deep.equal([2, 1]);
    now += 100_000; // other's first token has expired now, app's second (fetched 100 s ago) has not
    await pullBoth();
    expect(tokenCounts(), 'again only the expired scope').to.deep.equal([2, 2]);
    // Every registry request after the first round carried the right token up front: no 401 beyond the first.
    const refusals = registry.requests.filter(
      (r) => r.url.startsWith('/v2/') && r.authorization === undefined,
    );
    expect(refusals).to.have.length(2);
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

  it('gives up on a server that accepts but never answers: headers timeout per try, TIMEOUT after N tries', async () => {
    const silent = await startSilentServer();
    try {
      const c = client(silent.server, { headersTimeoutMs: 300, retry: { maxAttempts: 3 } });
      const started = Date.now();
      const err = await rejection(c.resolve(`${silent.server.host}/app:v1`, amd64));
      expect([err.code, err.definite]).to.deep.equal(['TIMEOUT', false]);
      expect(err.message).to.contain(
        `${silent.server.host} unreachable after 3 tries (UND_ERR_HEADERS_TIMEOUT)`,
      );
      expect(silent.requestsSeen()).to.equal(3);
      expect(delays).to.have.length(2);
      // Three tries of 300 ms each, and the (injected) backoff is instant: nowhere near a default 30 s wait.
      expect(Date.now() - started).to.be.below(10_000);
    } finally {
      await silent.server.close();
    }
  });

  it('gives up on a connect that never completes: connect timeout per try, TIMEOUT after N tries', async function () {
    this.timeout(30_000);
    const blackHole = await startFullBacklogListener();
    try {
      const c = client(blackHole.server, { connectTimeoutMs: 300, retry: { maxAttempts: 3 } });
      const err = await rejection(c.resolve(`${blackHole.server.host}/app:v1`, amd64));
      expect([err.code, err.definite]).to.deep.equal(['TIMEOUT', false]);
      expect(err.message).to.contain(
        `${blackHole.server.host} unreachable after 3 tries (UND_ERR_CONNECT_TIMEOUT)`,
      );
      expect(delays).to.have.length(2);
    } finally {
      await blackHole.server.close();
    }
  });

  it('retries a manifest whose body stalls, and reports one that always stalls as TIMEOUT, not a crash', async () => {
    let stalls = 1;
    const registry = await server((req, res) => {
      if (req.url === '/v2/app/manifests/v1' && stalls > 0) {
        stalls--;
        res.writeHead(200, { 'content-type': MediaType.ociManifest, 'content-length': manifest.length });
        res.write(manifest.subarray(0, 10)); // then silence
      } else if (!serveImage(req, res)) res.writeHead(404).end();
    });
    const c = client(registry, { bodyTimeoutMs: 200, retry: { maxAttempts: 3 } });
    const image = await c.resolve(`${registry.host}/app:v1`, amd64);
    expect(image.digest).to.equal(sha(manifest));
    expect(c.stats()[registry.host]?.retries).to.equal(1);
    stalls = 100;
    const err = await rejection(c.resolve(`${registry.host}/app:v1`, amd64));
    expect([err.code, err.definite]).to.deep.equal(['TIMEOUT', false]);
    expect(err.message).to.contain('broke off 3 times').and.contain('UND_ERR_BODY_TIMEOUT');
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

    it('trades a Docker config identitytoken for an access token at an https token endpoint (OAuth2 refresh_token grant)', async () => {
      const identityToken = 'refresh-3f9a-never-logged';
      const posts: Array<{
        url: string;
        contentType?: string;
        authorization?: string;
        form: URLSearchParams;
      }> = [];
      const tokenServer = await startServer(
        (req, res) => {
          const chunks: Buffer[] = [];
          req.on('data', (chunk: Buffer) => chunks.push(chunk));
          req.on('end', () => {
            const form = new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
            posts.push({
              url: req.url ?? '',
              form,
              ...(req.headers['content-type'] ? { contentType: req.headers['content-type'] } : {}),
              ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
            });
            if (req.method !== 'POST' || form.get('refresh_token') !== identityToken) {
              res.writeHead(401, { 'content-type': 'application/json' });
              res.end(JSON.stringify({ error: 'invalid_grant' }));
              return;
            }
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(
              JSON.stringify({
                access_token: 'access-for-app',
                refresh_token: 'rotated-refresh',
                expires_in: 300,
                scope: form.get('scope'),
              }),
            );
          });
        },
        { key: await readFile(certs.keyFile, 'utf8'), cert: await readFile(certs.certFile, 'utf8') },
      );
      servers.push(tokenServer);
      const registry = await server((req, res) => {
        if (req.headers.authorization !== 'Bearer access-for-app') {
          res.writeHead(401, {
            'www-authenticate': `Bearer realm="https://${tokenServer.host}/oauth2/token",service="reg.example"`,
          });
          res.end();
        } else if (!serveImage(req, res)) res.writeHead(404).end();
      });
      // As `docker login` to a registry with identity tokens writes it: a placeholder user, no password.
      const dockerConfig = (token: string): RegistryCredentials =>
        RegistryCredentials.fromDockerConfig(
          {
            auths: {
              [registry.host]: {
                auth: btoa('00000000-0000-0000-0000-000000000000:'),
                identitytoken: token,
              },
            },
          },
          'config.json',
        );
      const c = client(registry, {
        caCertificates: [certs.caCert],
        credentials: dockerConfig(identityToken),
      });
      const image = await c.resolve(`${registry.host}/app:v1`, amd64);
      expect((await readAll(await c.openBlob(image, image.manifest.layers[0]!))).equals(layer)).to.be.true;
      await c.resolve(`${registry.host}/app:v1`, amd64);

      expect(posts, 'one exchange, its token reused').to.have.length(1);
      const post = posts[0]!;
      expect(post.url).to.equal('/oauth2/token');
      expect(post.contentType).to.equal('application/x-www-form-urlencoded');
      expect(post.authorization, 'the refresh token is the credential: no Basic header').to.be.undefined;
      expect(Object.fromEntries(post.form)).to.deep.equal({
        grant_type: 'refresh_token',
        refresh_token: identityToken,
        client_id: 'kmm-preflight',
        service: 'reg.example',
        scope: 'repository:app:pull',
      });
      const toRegistry = registry.requests.map((r) => r.authorization ?? '');
      expect(toRegistry.filter((a) => a === 'Bearer access-for-app').length).to.be.greaterThan(2);
      expect(toRegistry.join(' '), 'the identity token never reaches the registry').to.not.contain(
        identityToken,
      );

      const refused = await rejection(
        client(registry, {
          caCertificates: [certs.caCert],
          credentials: dockerConfig('revoked-refresh-token'),
        }).resolve(`${registry.host}/app:v1`, amd64),
      );
      expect([refused.code, refused.definite]).to.deep.equal(['UNAUTHORIZED', true]);
      expect(refused.message)
        .to.contain(`token service ${tokenServer.host} answered 401`)
        .and.not.contain('revoked-refresh-token');
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
