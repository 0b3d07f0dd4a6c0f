import { connect } from 'node:tls';
import { expect } from 'chai';
import { fixture, startTestWebhook, type ReviewBody, type TestWebhook } from './harness.ts';
import { KERNEL_427, preflight } from './objects.ts';

describe('webhook robustness: bad bodies, failures, logs, metrics, TLS', function () {
  // Starting a server generates RSA keys: slow on a loaded machine.
  this.timeout(30_000);
  let webhook: TestWebhook;
  before(async () => {
    webhook = await startTestWebhook();
  });
  after(async () => webhook.close());
  beforeEach(() => {
    webhook.cache.isSynced = true;
    webhook.cache.failure = undefined;
    webhook.cache.preflights = [];
  });

  it('answers 413 to a body over 7 MiB and keeps serving', async () => {
    const big = Buffer.alloc(7 * 1024 * 1024 + 1, 0x20);
    const { status, body } = await webhook.post(big);
    expect(status).to.equal(413);
    expect(body.message).to.contain('larger than the 7340032 byte limit');
    const { status: after } = await webhook.post(await fixture('preflight-create.json'));
    expect(after).to.equal(200);
  });

  it('accepts a body just under the limit', async () => {
    const body = await fixture('module-update.json');
    body.request.object.metadata.annotations = { filler: 'x'.repeat(6 * 1024 * 1024) };
    const { status, body: answer } = await webhook.post(body);
    expect(status).to.equal(200);
    expect(answer.response.allowed).to.equal(true);
  });

  it('answers 400 with a message to malformed JSON, a non-object, and a non-AdmissionReview', async () => {
    const cases: [unknown, string][] = [
      ['{"apiVersion": "admission.k8s.io/v1", ', 'request body is not valid JSON'],
      ['[1,2,3]', 'body: must be a JSON object'],
      ['"text"', 'request body is not valid JSON'],
      [
        { apiVersion: 'v1', kind: 'Pod' },
        'apiVersion: must be admission.k8s.io/v1 or admission.k8s.io/v1beta1, got "v1"',
      ],
      [{ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }, 'request: is required'],
      [{ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: '' } }, 'request.uid'],
      ['', 'apiVersion: must be'],
    ];
    for (const [body, message] of cases) {
      const { status, body: answer } = await webhook.post(body);
      expect(status, JSON.stringify(body)).to.equal(400);
      expect(answer.message, JSON.stringify(body)).to.contain(message);
    }
  });

  it('answers 404 off the admission path', async () => {
    const { status, body } = await webhook.post({}, '/mutate');
    expect(status).to.equal(404);
    expect(body.message).to.contain('POST /validate');
  });

  it('denies, with the uid and a clear message, when the rules fail (--failure-mode=deny)', async () => {
    webhook.cache.failure = new Error('cache exploded');
    const body = await fixture('preflight-create.json');
    const { status, body: answer } = await webhook.post(body);
    expect(status).to.equal(200);
    expect(answer.response.uid).to.equal(body.request.uid);
    expect(answer.response.allowed).to.equal(false);
    expect(answer.response.status).to.include({ code: 500, reason: 'InternalError' });
    expect(answer.response.status.message).to.equal(
      'kmm-preflight webhook could not check this preflightvalidationsocp change, denied (--failure-mode=deny): ' +
        'an internal error occurred (Error; see the webhook log)',
    );
    expect(webhook.logs()).to.contain('admission rules failed');
  });

  it('denies with 503 while the cache has not synced, but still checks what needs no cache', async () => {
    webhook.cache.isSynced = false;
    const preflightBody = await fixture('preflight-create.json');
    const { body: waiting } = await webhook.post(preflightBody);
    expect(waiting.response.status).to.include({ code: 503, reason: 'ServiceUnavailable' });
    expect(waiting.response.status.message).to.equal(
      'kmm-preflight webhook could not check this preflightvalidationsocp change, denied (--failure-mode=deny): ' +
        'the webhook has not yet loaded PreflightValidationOCP and Module objects from the API server; retry shortly',
    );
    const invalid = await fixture('module-update.json');
    invalid.request.object.spec.moduleLoader.container.kernelMappings = [{ regexp: '(' }];
    const { body: answer } = await webhook.post(invalid);
    expect(answer.response.status.code).to.equal(422);
  });

  it('allows a Module DELETE while the cache has not synced, with a warning', async () => {
    webhook.cache.isSynced = false;
    const body = await fixture('module-update.json');
    body.request.operation = 'DELETE';
    body.request.object = null;
    const { body: answer } = await webhook.post(body);
    expect(answer.response.allowed).to.equal(true);
    expect(answer.response.warnings).to.deep.equal([
      'Module drivers/kmm-ci deleted before the webhook loaded the preflights: any active one will drop it',
    ]);
  });

  it('admits with a warning when the rules fail under --failure-mode=allow', async () => {
    const open = await startTestWebhook({ policy: { failureMode: 'allow' } });
    try {
      open.cache.failure = new TypeError('boom');
      const { body: answer } = await open.post(await fixture('module-update.json'));
      expect(answer.response.allowed).to.equal(true);
      expect(answer.response.warnings).to.deep.equal([
        'modules change admitted unchecked (--failure-mode=allow): internal error TypeError, see the webhook log',
      ]);
      open.cache.failure = undefined;
      open.cache.isSynced = false;
      const { body: waiting } = await open.post(await fixture('preflight-create.json'));
      expect(waiting.response.warnings).to.deep.equal([
        'preflightvalidationsocp change admitted unchecked (--failure-mode=allow): caches not loaded yet',
      ]);
    } finally {
      await open.close();
    }
  });

  it('never logs object contents, whatever the outcome', async () => {
    const marker = 'do-not-log-9f8e7d';
    const allowed = await fixture('module-update.json');
    allowed.request.object.metadata.annotations = { note: marker };
    await webhook.post(allowed);
    const denied = await fixture('module-update.json');
    denied.request.object.spec.moduleLoader.container.kernelMappings = [{ regexp: `(${marker}` }];
    await webhook.post(denied);
    webhook.cache.failure = new Error('failing');
    await webhook.post(allowed);
    await webhook.post(`{"broken": "${marker}`);
    const logs = webhook.logs();
    expect(logs).to.contain('admission decided');
    expect(logs).not.to.contain(marker);
  });

  it('counts requests and latency by resource, operation and verdict, and exposes the certificate expiry', async () => {
    webhook.cache.preflights = [preflight('p', { kernel: KERNEL_427, complete: false })];
    const drop = await fixture('module-update.json');
    drop.request.object.spec.moduleLoader.container.kernelMappings = [
      { literal: '5.14.0-1.el9.x86_64', containerImage: 'a/b:1' },
    ];
    await webhook.post(drop);
    await webhook.post('not json');
    const text = await webhook.registry.metrics();
    expect(text).to.match(
      /kmm_preflight_webhook_requests_total\{resource="modules",operation="UPDATE",verdict="denied"\} [1-9]/,
    );
    expect(text).to.match(
      /kmm_preflight_webhook_requests_total\{resource="other",operation="other",verdict="bad_request"\} [1-9]/,
    );
    expect(text).to.match(
      /kmm_preflight_webhook_request_duration_seconds_bucket\{le="0.005",resource="modules",operation="UPDATE",verdict="denied"\} [1-9]/,
    );
    const notAfter = /kmm_preflight_webhook_certificate_not_after_seconds (\d+)/.exec(text);
    expect(Number(notAfter?.[1])).to.equal(webhook.server.certificate.notAfter.getTime() / 1000);
  });

  it('labels a review of a resource it does not know as `other`, never with the name it was sent', async () => {
    const hostile = `widgets-${'x'.repeat(200)}-${Date.now()}`;
    const seed = await fixture('module-update.json');
    const reviewOf = (resource: Record<string, string>): ReviewBody => ({
      ...seed,
      request: { ...seed.request, resource },
    });
    const hostileReview = reviewOf({ group: 'example.com', version: 'v1', resource: hostile });
    const lookalike = reviewOf({ group: 'evil.example.com', version: 'v1', resource: 'modules' });
    for (const review of [hostileReview, lookalike]) {
      const { status, body: answer } = await webhook.post(review);
      expect(status).to.equal(200);
      expect(answer.response.allowed).to.equal(true);
    }
    const text = await webhook.registry.metrics();
    expect(text).to.not.contain(hostile);
    expect(text).to.match(
      /kmm_preflight_webhook_requests_total\{resource="other",operation="UPDATE",verdict="allowed"\} [2-9]/,
    );
  });

  it('refuses TLS 1.1 and accepts TLS 1.2', async () => {
    const handshake = (maxVersion: 'TLSv1.1' | 'TLSv1.2') =>
      new Promise<string>((resolve) => {
        const socket = connect({
          host: '127.0.0.1',
          port: webhook.port,
          rejectUnauthorized: false,
          minVersion: 'TLSv1',
          maxVersion,
        });
        socket.once('secureConnect', () => {
          resolve(socket.getProtocol() ?? 'unknown');
          socket.end();
        });
        socket.once('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
      });
    expect(await handshake('TLSv1.1')).to.match(/^error /);
    expect(await handshake('TLSv1.2')).to.equal('TLSv1.2');
  });
});
