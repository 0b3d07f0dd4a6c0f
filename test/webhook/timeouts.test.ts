import { expect } from 'chai';
import { connect, type TLSSocket } from 'node:tls';
import { DEFAULT_TIMEOUTS } from '../../webhook/server.ts';
import { startTestWebhook, type TestWebhook } from './harness.ts';

/** Go's http.Transport closes a connection idle this long: the API server's side of keep-alive. */
const API_SERVER_IDLE_CONNECTION_MS = 90_000;

/** What the server sent on a raw connection until it closed it, and when it closed it. */
interface Ending {
  readonly text: string;
  readonly afterMs: number;
}

/** Opens a TLS connection and, until the server closes it, writes `chunks` one every `everyMs`. */
function trickle(port: number, chunks: readonly string[], everyMs: number): Promise<Ending> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    let text = '';
    let timer: NodeJS.Timeout | undefined;
    const socket: TLSSocket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      let next = 0;
      const send = (): void => {
        if (next < chunks.length && !socket.destroyed) socket.write(chunks[next++]!);
        timer = setTimeout(send, everyMs);
      };
      send();
    });
    socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      // The server may reset after its 408; what it sent before is the answer.
      if (text === '') reject(err);
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({ text, afterMs: Date.now() - started });
    });
  });
}

describe('webhook server: header and request timeouts are enforced on time', function () {
  this.timeout(30_000);
  const timeouts = { keepAliveMs: 5_000, headersMs: 1_500, requestMs: 3_000 };
  let webhook: TestWebhook;
  before(async () => {
    webhook = await startTestWebhook({ timeouts });
  });
  after(async () => webhook.close());

  it('answers 408 to a client that trickles its headers, within about a second of the header timeout', async () => {
    // A header line every 200 ms, for longer than the whole test: only the server's timeout ends it.
    const headers = ['POST /validate HTTP/1.1\r\n', 'Host: 127.0.0.1\r\n'];
    for (let i = 0; i < 100; i++) headers.push(`X-Slow-${i}: ${i}\r\n`);
    const ending = await trickle(webhook.port, headers, 200);
    expect(ending.text).to.match(/^HTTP\/1\.1 408 /);
    expect(ending.afterMs).to.be.at.least(timeouts.headersMs - 100);
    // Node checks timeouts every CONNECTIONS_CHECK_INTERVAL_MS (1 s), not every 30 s as by default.
    expect(ending.afterMs).to.be.below(timeouts.headersMs + 2_500);
  });

  it('answers 408 to a client that trickles its body past the request timeout', async () => {
    const head =
      'POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n';
    const body = Array.from({ length: 200 }, () => ' ');
    const ending = await trickle(webhook.port, [head, ...body], 200);
    expect(ending.text).to.match(/^HTTP\/1\.1 408 /);
    expect(ending.afterMs).to.be.at.least(timeouts.requestMs - 100);
    expect(ending.afterMs).to.be.below(timeouts.requestMs + 2_500);
  });

  it('by default keeps idle connections open longer than the API server does, so the client closes them', () => {
    expect(DEFAULT_TIMEOUTS.keepAliveMs).to.be.greaterThan(API_SERVER_IDLE_CONNECTION_MS);
    expect(DEFAULT_TIMEOUTS.headersMs).to.be.at.most(DEFAULT_TIMEOUTS.requestMs);
  });
});
