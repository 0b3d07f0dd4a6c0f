import { expect } from 'chai';
import { Counter, Registry } from 'prom-client';
import { OpsServer, type OpsServerAddress } from '../../src/platform/ops-server.ts';

describe('platform ops server: /healthz, /readyz with pluggable checks, /metrics', () => {
  let ops: OpsServer;
  let address: OpsServerAddress;
  let cacheSynced: boolean;
  const registry = new Registry();
  const counter = new Counter({ name: 'ops_test_total', help: 'test counter', registers: [registry] });

  const get = async (path: string): Promise<{ status: number; text: string; type: string | null }> => {
    const res = await fetch(`http://${address.host}:${address.port}${path}`);
    return { status: res.status, text: await res.text(), type: res.headers.get('content-type') };
  };

  before(async () => {
    cacheSynced = false;
    ops = new OpsServer({
      registry,
      readinessChecks: [
        { name: 'cache', check: () => (cacheSynced ? { ok: true } : { ok: false, reason: 'not synced' }) },
      ],
    });
    address = await ops.listen(0);
  });
  after(async () => ops.close());

  it('is live without checks, and ready only when every readiness check passes', async () => {
    expect(await get('/healthz')).to.include({ status: 200, text: 'ok\n' });
    const notReady = await get('/readyz');
    expect(notReady.status).to.equal(503);
    expect(notReady.text).to.contain('[-]cache failed: not synced');
    cacheSynced = true;
    expect(await get('/readyz')).to.include({ status: 200, text: 'ok\n' });
    expect((await get('/readyz?verbose')).text).to.equal('[+]cache ok\nok\n');
  });

  it('takes checks added later, and reports a throwing check as failed', async () => {
    ops.addReadinessCheck({
      name: 'certificate',
      check: () => {
        throw new Error('no certificate loaded');
      },
    });
    ops.addLivenessCheck({ name: 'watchdog', check: async () => Promise.resolve({ ok: true }) });
    const ready = await get('/readyz');
    expect(ready.status).to.equal(503);
    expect(ready.text).to.contain('[-]certificate failed: no certificate loaded');
    expect((await get('/healthz?verbose')).text).to.equal('[+]watchdog ok\nok\n');
  });

  it('serves the registry in Prometheus text format', async () => {
    counter.inc(3);
    const metrics = await get('/metrics');
    expect(metrics.status).to.equal(200);
    expect(metrics.type).to.equal(registry.contentType);
    expect(metrics.text).to.contain('ops_test_total 3');
  });

  it('answers 404 to other paths and 405 to other methods', async () => {
    expect((await get('/nope')).status).to.equal(404);
    const res = await fetch(`http://${address.host}:${address.port}/healthz`, { method: 'POST' });
    expect(res.status).to.equal(405);
  });

  it('fails readiness once shutting down, while staying live', async () => {
    ops.markShuttingDown();
    const ready = await get('/readyz');
    expect(ready.status).to.equal(503);
    expect(ready.text).to.contain('[-]shutdown failed: shutting down');
    expect((await get('/healthz')).status).to.equal(200);
  });
});
