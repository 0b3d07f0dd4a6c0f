import { Writable } from 'node:stream';
import { expect } from 'chai';
import { createLogger, REDACTED } from '../../src/platform/logger.ts';

/** Real log lines, written by pino to a stream, parsed back: no credential may appear in any of them. */
function capture(): { lines: () => Record<string, unknown>[]; text: () => string; stream: Writable } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      chunks.push(chunk.toString('utf8'));
      callback();
    },
  });
  const text = (): string => chunks.join('');
  const lines = (): Record<string, unknown>[] =>
    text()
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { lines, text, stream };
}

const SECRETS = [
  'sEcReT-bearer-0001',
  'c2VjcmV0OnBhc3N3b3Jk',
  'hunter2-password',
  'tok-identity-0003',
  'eyJhdXRocyI6e319-dockerconfig',
  'registry-token-0004',
  'url-password-0005',
  'bindings-token-0006',
  'error-bearer-0007',
];

describe('platform: logger redaction', () => {
  it('never writes a credential, whatever object or text carries it, and keeps the rest of the line', () => {
    const out = capture();
    const logger = createLogger({ level: 'debug', destination: out.stream, base: { component: 'test' } });
    logger.info({ headers: { authorization: `Bearer ${SECRETS[0]}` }, registry: 'quay.io' }, 'a request');
    logger.info({ request: { headers: { Authorization: `Basic ${SECRETS[1]}` } } }, 'nested, capitalised');
    logger.warn({ credentials: { username: 'robot', password: SECRETS[2] } }, 'credentials object');
    logger.debug({ dockerConfig: { auths: { 'quay.io': { auth: SECRETS[1], identitytoken: SECRETS[3] } } } });
    logger.info({
      secret: { type: 'kubernetes.io/dockerconfigjson', data: { '.dockerconfigjson': SECRETS[4] } },
    });
    logger.info({ '.dockerconfigjson': SECRETS[4], Token: SECRETS[5] }, 'top-level keys');
    logger.info({ a: { b: { c: { d: { token: SECRETS[5] } } } } }, 'deeply nested');
    logger.info({ list: [{ password: SECRETS[2] }] }, 'in an array');
    logger.warn(`GET https://robot:${SECRETS[6]}@registry.example/v2/ failed`);
    logger.warn({ err: `401 from the registry; sent Authorization: Bearer ${SECRETS[0]}` }, 'text field');
    logger.child({ scope: 'watch' }).child({ token: SECRETS[7] }).info('child bindings');
    const cause = new Error(`upstream said: Authorization: Bearer ${SECRETS[0]}`);
    const failure = Object.assign(new Error(`request with Bearer ${SECRETS[8]} refused`, { cause }), {
      config: { headers: { Authorization: `Bearer ${SECRETS[8]}` } },
    });
    logger.error(failure);
    logger.error({ err: failure }, 'wrapped error');
    logger.info('%s and %s', 'format', `Bearer ${SECRETS[0]}`);

    const text = out.text();
    for (const secret of SECRETS) expect(text, `secret ${secret} leaked`).to.not.include(secret);
    const lines = out.lines();
    expect(lines).to.have.length(14);

    // What is not a credential is kept, so the lines stay useful.
    expect(lines[0]).to.deep.include({
      level: 'info',
      component: 'test',
      msg: 'a request',
      registry: 'quay.io',
      headers: { authorization: REDACTED },
    });
    expect(lines[2]).to.deep.include({ credentials: REDACTED });
    expect(lines[3]).to.deep.include({ dockerConfig: { auths: REDACTED } });
    expect(lines[4]).to.deep.include({
      secret: { type: 'kubernetes.io/dockerconfigjson', data: REDACTED },
    });
    expect(lines[8]?.['msg']).to.equal(`GET https://${REDACTED}@registry.example/v2/ failed`);
    expect(lines[9]?.['err']).to.equal(`401 from the registry; sent Authorization: Bearer ${REDACTED}`);
    const logged = lines[11] as { msg?: string; err?: { type?: string; message?: string; stack?: string } };
    expect(logged.msg).to.equal(`request with Bearer ${REDACTED} refused`);
    expect(logged.err?.type).to.equal('Error');
    expect(logged.err?.stack).to.be.a('string').and.include('logger.test.ts');
    expect(lines[10]).to.deep.include({ scope: 'watch', token: REDACTED });
    expect(lines[12]?.['msg']).to.equal('wrapped error');
    expect((lines[12]?.['err'] as { cause?: { message?: string } }).cause?.message).to.equal(
      `upstream said: Authorization: Bearer ${REDACTED}`,
    );
    expect(lines[13]?.['msg']).to.equal(`format and Bearer ${REDACTED}`);
  });

  it('survives circular objects', () => {
    const out = capture();
    const logger = createLogger({ destination: out.stream });
    const loop: Record<string, unknown> = { name: 'loop' };
    loop['self'] = loop;
    logger.info({ loop }, 'circular');
    expect(out.lines()[0]).to.deep.include({ loop: { name: 'loop', self: '[Circular]' } });
  });
});
