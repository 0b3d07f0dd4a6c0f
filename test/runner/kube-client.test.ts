import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';
import { expect } from 'chai';
import {
  KubeApiError,
  WatchIdleError,
  createKubeClient,
  type KubeClient,
} from '../../src/platform/kube/client.ts';
import { Informer } from '../../src/platform/kube/informer.ts';
import { createLogger } from '../../src/platform/logger.ts';

/**
 * The Kubernetes client against a real HTTP server that behaves as a half-open connection does: it answers a
 * watch with headers and then nothing. The watchdog must notice, and the informer must watch again.
 */

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

async function serve(handler: Handler): Promise<{ server: Server; client: KubeClient }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'test', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
    users: [{ name: 'test', token: 'test-token' }],
    contexts: [{ name: 'test', cluster: 'test', user: 'test' }],
    currentContext: 'test',
  });
  return { server, client: createKubeClient(kc) };
}

function stopServer(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Opens a watch and resolves with how it ended and after how long. */
function watchUntilDone(
  client: KubeClient,
  idleTimeoutMs: number,
  events: string[] = [],
): Promise<{ err: unknown; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    void client.watch(
      '/api/v1/namespaces/ns/configmaps',
      {},
      (type) => events.push(type),
      (err) => resolve({ err, ms: Date.now() - started }),
      idleTimeoutMs,
    );
  });
}

const bookmark = (rv: number): string =>
  `${JSON.stringify({ type: 'BOOKMARK', object: { metadata: { resourceVersion: String(rv) } } })}\n`;

describe('platform/kube: client watches and the silent-watch watchdog', () => {
  let server: Server | undefined;
  afterEach(async () => {
    if (server !== undefined) await stopServer(server);
    server = undefined;
  });

  it('aborts a watch that carries nothing for the idle window, and closes its connection', async () => {
    let connectionClosed = false;
    const started = await serve((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.flushHeaders();
      req.on('close', () => (connectionClosed = true));
    });
    server = started.server;
    const { err, ms } = await watchUntilDone(started.client, 200);
    expect(err).to.be.instanceOf(WatchIdleError);
    expect(ms).to.be.within(190, 3_000);
    const deadline = Date.now() + 3_000;
    while (!connectionClosed && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(connectionClosed, 'the silent connection is closed, not leaked').to.equal(true);
  });

  it('keeps a stream that sends bookmarks open past the idle window, and aborts it once they stop', async () => {
    const events: string[] = [];
    const started = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      let rv = 1;
      const timer = setInterval(() => {
        res.write(bookmark(rv));
        rv += 1;
        if (rv > 8) clearInterval(timer);
      }, 50);
      res.on('close', () => clearInterval(timer));
    });
    server = started.server;
    const { err, ms } = await watchUntilDone(started.client, 200, events);
    expect(events, 'every bookmark arrived').to.have.length(8);
    expect(err).to.be.instanceOf(WatchIdleError);
    // Eight bookmarks 50 ms apart, then the 200 ms window: well past one window from the start.
    expect(ms).to.be.at.least(550);
  });

  it('the informer restarts a silent watch and carries on from where it was', async () => {
    const watchRequests: URLSearchParams[] = [];
    const started = await serve((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      res.writeHead(200, { 'content-type': 'application/json' });
      if (url.searchParams.get('watch') !== 'true') {
        res.end(JSON.stringify({ metadata: { resourceVersion: '10' }, items: [] }));
        return;
      }
      watchRequests.push(url.searchParams);
      // The first watch goes silent; the second delivers an object.
      if (watchRequests.length === 1) res.flushHeaders();
      else
        res.write(
          `${JSON.stringify({ type: 'ADDED', object: { metadata: { name: 'a', namespace: 'ns', resourceVersion: '11' } } })}\n`,
        );
    });
    server = started.server;
    const restarts: string[] = [];
    const informer = new Informer({
      client: started.client,
      resource: { group: '', version: 'v1', plural: 'configmaps', namespaced: true },
      logger: createLogger({ level: 'silent' }),
      relistIntervalMs: 3_600_000,
      idleTimeoutMs: 200,
      backoff: { baseMs: 10, maxMs: 50, jitter: 0 },
      hooks: { onRestart: (reason) => restarts.push(reason) },
    });
    informer.start();
    try {
      const deadline = Date.now() + 5_000;
      while (informer.get('ns/a') === undefined && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 10));
      }
      expect(informer.get('ns/a'), 'the event of the second watch arrived').to.not.equal(undefined);
      expect(restarts[0], 'restarted because the first watch went silent').to.equal('silent');
      expect(watchRequests.slice(0, 2).map((q) => q.get('resourceVersion'))).to.deep.equal(['10', '10']);
    } finally {
      informer.stop();
    }
  });

  it('close() aborts a request the server never answers, and fails later ones at once', async () => {
    const started = await serve(() => undefined);
    server = started.server;
    const hanging = started.client.request('GET', '/api/v1/namespaces');
    await new Promise((r) => setTimeout(r, 50));
    const closedAt = Date.now();
    started.client.close();
    const err = await hanging.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(KubeApiError);
    expect((err as KubeApiError).status).to.equal(0);
    expect(Date.now() - closedAt).to.be.below(1_000);
    const later = await started.client.request('GET', '/api/v1/namespaces').then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(later).to.be.instanceOf(KubeApiError);
  });
});
