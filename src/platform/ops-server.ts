import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { listenOn, type ListeningAddress } from './listen.ts';
import type { Registry } from 'prom-client';
import { errorMessage } from './errors.ts';

/** One named condition of liveness or readiness; `reason` says what is missing when it fails. */
export interface HealthCheck {
  readonly name: string;
  check(): HealthCheckResult | Promise<HealthCheckResult>;
}

export type HealthCheckResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export interface OpsServerOptions {
  /** Metrics served at /metrics. */
  readonly registry: Registry;
  /** Checks behind /healthz (liveness). Keep them cheap and independent of the API server. */
  readonly livenessChecks?: readonly HealthCheck[];
  /** Checks behind /readyz (e.g. caches synced, certificate loaded). More can be added later. */
  readonly readinessChecks?: readonly HealthCheck[];
}

export type OpsServerAddress = ListeningAddress;

/**
 * The plain-HTTP operations port of a long-running command: /healthz, /readyz and /metrics, separate from any
 * serving port so probes and scrapes work whatever the TLS state. Answers follow the Kubernetes convention:
 * 200 "ok", or 503 with one `[-]name failed: reason` line per failed check (`[+]name ok` lines too with ?verbose).
 */
export class OpsServer {
  readonly #registry: Registry;
  readonly #livenessChecks: HealthCheck[];
  readonly #readinessChecks: HealthCheck[];
  readonly #server: Server;
  #shuttingDown = false;

  constructor(options: OpsServerOptions) {
    this.#registry = options.registry;
    this.#livenessChecks = [...(options.livenessChecks ?? [])];
    this.#readinessChecks = [...(options.readinessChecks ?? [])];
    this.#server = createServer((req, res) => {
      this.#handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`internal error: ${errorMessage(err)}\n`);
      });
    });
    // Probes are short requests; do not let an idle scraper pin a socket for long.
    this.#server.keepAliveTimeout = 5_000;
    this.#server.headersTimeout = 10_000;
    this.#server.requestTimeout = 30_000;
  }

  addLivenessCheck(check: HealthCheck): void {
    this.#livenessChecks.push(check);
  }

  addReadinessCheck(check: HealthCheck): void {
    this.#readinessChecks.push(check);
  }

  /** From now on /readyz fails with "shutting down", so endpoints drop this instance before it stops serving. */
  markShuttingDown(): void {
    this.#shuttingDown = true;
  }

  async listen(port: number, host = '127.0.0.1'): Promise<OpsServerAddress> {
    return listenOn(this.#server, port, host);
  }

  async close(): Promise<void> {
    if (!this.#server.listening) return;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    await closed;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://ops');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res
        .writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' })
        .end('method not allowed\n');
      return;
    }
    switch (url.pathname) {
      case '/healthz':
      case '/livez':
        return this.#answerChecks(res, this.#livenessChecks, url.searchParams.has('verbose'), false);
      case '/readyz':
        return this.#answerChecks(
          res,
          this.#readinessChecks,
          url.searchParams.has('verbose'),
          this.#shuttingDown,
        );
      case '/metrics': {
        const body = await this.#registry.metrics();
        res.writeHead(200, { 'content-type': this.#registry.contentType }).end(body);
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
    }
  }

  async #answerChecks(
    res: ServerResponse,
    checks: readonly HealthCheck[],
    verbose: boolean,
    shuttingDown: boolean,
  ): Promise<void> {
    const results = await Promise.all(
      checks.map(async (check) => ({ name: check.name, result: await runCheck(check) })),
    );
    const lines = results.map(({ name, result }) =>
      result.ok ? `[+]${name} ok` : `[-]${name} failed: ${result.reason}`,
    );
    if (shuttingDown) lines.push('[-]shutdown failed: shutting down');
    const healthy = !shuttingDown && results.every(({ result }) => result.ok);
    const body = healthy && !verbose ? 'ok\n' : `${lines.join('\n')}\n${healthy ? 'ok' : 'check failed'}\n`;
    res.writeHead(healthy ? 200 : 503, { 'content-type': 'text/plain; charset=utf-8' }).end(body);
  }
}

async function runCheck(check: HealthCheck): Promise<HealthCheckResult> {
  try {
    return await check.check();
  } catch (err) {
    return { ok: false, reason: errorMessage(err) };
  }
}
