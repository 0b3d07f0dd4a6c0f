import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { KubeConfig } from '@kubernetes/client-node';
import { expect } from 'chai';
import { createKubeClient } from '../../src/platform/kube/client.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { KubeJobStore } from '../../src/runner/jobs/kube-job-store.ts';

/** The Job store's pod-log read against a real HTTP server answering with a chosen status. */
describe('runner/jobs: KubeJobStore pod log tail', () => {
  let server: Server;
  let status = 200;
  let store: KubeJobStore;
  const lines: Array<Record<string, unknown>> = [];

  before(async () => {
    server = createServer((_req, res) => {
      res.writeHead(status, { 'content-type': status === 200 ? 'text/plain' : 'application/json' });
      res.end(
        status === 200
          ? 'make: *** [all] Error 2\n'
          : JSON.stringify({
              kind: 'Status',
              code: status,
              message: `pods "p" is ${status === 403 ? 'forbidden' : 'gone'}`,
            }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [{ name: 'test', server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: 'test', token: 'secret-token' }],
      contexts: [{ name: 'test', cluster: 'test', user: 'test' }],
      currentContext: 'test',
    });
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) {
          lines.push(JSON.parse(line) as Record<string, unknown>);
        }
        done();
      },
    });
    store = new KubeJobStore(createKubeClient(kc), kc, createLogger({ level: 'debug', destination: sink }));
  });

  after(() => {
    server.closeAllConnections();
    server.close();
  });

  beforeEach(() => (lines.length = 0));

  it('returns the tail the API server serves', async () => {
    status = 200;
    expect(await store.podLogTail('ns', 'p', 'kaniko')).to.equal('make: *** [all] Error 2\n');
    expect(lines).to.deep.equal([]);
  });

  it('says at warn level that RBAC refused pods/log, and still answers without the log', async () => {
    status = 403;
    expect(await store.podLogTail('ns', 'p', 'kaniko')).to.equal(undefined);
    const warned = lines.filter((line) => line['level'] === 'warn');
    expect(warned).to.have.length(1);
    expect(warned[0]).to.include({ namespace: 'ns', pod: 'p', container: 'kaniko', code: 403 });
    expect(String(warned[0]?.['msg'])).to.contain('pods/log');
  });

  it('keeps an unavailable log (no kubelet, pod collected) at debug level', async () => {
    status = 404;
    expect(await store.podLogTail('ns', 'p', 'kaniko')).to.equal(undefined);
    expect(lines.map((line) => line['level'])).to.deep.equal(['debug']);
  });
});
