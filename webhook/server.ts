import { createServer, type Server } from 'node:https';
import type { SecureContextOptions } from 'node:tls';
import type { Logger } from 'pino';
import { createAdmissionApp, type AdmissionDecider } from './app.ts';
import type { WebhookMetrics } from './metrics.ts';
import { CertificateWatcher, loadCertificate, type LoadedCertificate } from './serving-certificate.ts';
import { listenOn, type ListeningAddress } from '../src/platform/listen.ts';

/**
 * How often Node looks for connections past the header or request timeout. Its default, 30 s, lets a slow client
 * hold a connection for up to twice the header timeout; each check walks the open connections, cheap at our scale.
 */
export const CONNECTIONS_CHECK_INTERVAL_MS = 1_000;

/** The server's HTTP timeouts; tests pass short ones. */
export interface ServerTimeouts {
  readonly keepAliveMs: number;
  readonly headersMs: number;
  readonly requestMs: number;
}

export const DEFAULT_TIMEOUTS: ServerTimeouts = {
  /**
   * Longer than the API server's idle-connection reuse (Go's transport closes idle connections after 90 s), so the
   * client, not the server, always closes an idle keep-alive connection: no request races a server-side close.
   */
  keepAliveMs: 120_000,
  /** Headers arrive at once from the API server; a connection that trickles them is not the API server. */
  headersMs: 30_000,
  /** The API server gives up after at most 30 s (timeoutSeconds); no request needs longer. */
  requestMs: 60_000,
};

const TLS_OPTIONS = { minVersion: 'TLSv1.2' } as const satisfies SecureContextOptions;

export interface WebhookServerOptions {
  readonly decider: AdmissionDecider;
  readonly metrics: WebhookMetrics;
  readonly logger: Logger;
  readonly certFile: string;
  readonly keyFile: string;
  /** Fallback poll of the certificate files (default 10 s); directory notifications usually come first. */
  readonly certificatePollIntervalMs?: number;
  /** Default: DEFAULT_TIMEOUTS. */
  readonly timeouts?: ServerTimeouts;
}

export type WebhookServerAddress = ListeningAddress;

/**
 * The admission webhook's HTTPS server: TLS 1.2 minimum, certificate and key hot-reloaded from disk with
 * `setSecureContext` (new handshakes get the new certificate, established connections carry on), timeouts tuned for
 * the API server's keep-alive client.
 */
export class WebhookServer {
  readonly #server: Server;
  readonly #watcher: CertificateWatcher;
  readonly #logger: Logger;

  private constructor(server: Server, watcher: CertificateWatcher, logger: Logger) {
    this.#server = server;
    this.#watcher = watcher;
    this.#logger = logger;
  }

  /** Loads the certificate (throws CertificateLoadError when unusable) and builds the server; call listen() next. */
  static async create(options: WebhookServerOptions): Promise<WebhookServer> {
    const { logger, metrics } = options;
    const initial = await loadCertificate(options.certFile, options.keyFile);
    metrics.certificateLoaded(initial.notAfter);
    const app = createAdmissionApp({ decider: options.decider, metrics, logger });
    const timeouts = options.timeouts ?? DEFAULT_TIMEOUTS;
    const server = createServer(
      {
        ...TLS_OPTIONS,
        cert: initial.cert,
        key: initial.key,
        keepAliveTimeout: timeouts.keepAliveMs,
        headersTimeout: timeouts.headersMs,
        requestTimeout: timeouts.requestMs,
        connectionsCheckingInterval: Math.min(CONNECTIONS_CHECK_INTERVAL_MS, timeouts.headersMs),
      },
      app,
    );
    // Handshake failures (scanners, clients distrusting the CA) are routine: log them quietly, never crash.
    server.on('tlsClientError', (err: Error & { code?: string }) => {
      logger.debug({ code: err.code }, 'TLS handshake failed');
    });
    const watcher = new CertificateWatcher({
      certFile: options.certFile,
      keyFile: options.keyFile,
      initial,
      ...(options.certificatePollIntervalMs === undefined
        ? {}
        : { pollIntervalMs: options.certificatePollIntervalMs }),
      onChange: (certificate) => {
        server.setSecureContext({ ...TLS_OPTIONS, cert: certificate.cert, key: certificate.key });
        metrics.certificateReloaded(certificate.notAfter);
        logger.info(
          { fingerprint256: certificate.fingerprint256, notAfter: certificate.notAfter.toISOString() },
          'serving certificate reloaded',
        );
      },
      onError: (err) => {
        metrics.certificateReloadFailed();
        logger.error(
          { code: err.code, error: err.message },
          'serving certificate changed but cannot be used; keeping the current one',
        );
      },
    });
    logger.info(
      {
        fingerprint256: initial.fingerprint256,
        notAfter: initial.notAfter.toISOString(),
        san: initial.subjectAltName,
      },
      'serving certificate loaded',
    );
    return new WebhookServer(server, watcher, logger);
  }

  /** The certificate being served. */
  get certificate(): LoadedCertificate {
    return this.#watcher.current;
  }

  get listening(): boolean {
    return this.#server.listening;
  }

  async listen(port: number, host: string): Promise<WebhookServerAddress> {
    const address = await listenOn(this.#server, port, host);
    this.#watcher.start();
    this.#logger.info(address, 'admission webhook listening');
    return address;
  }

  /** Re-reads the certificate files now (the watcher also does this on its own when they change). */
  async reloadCertificate(): Promise<void> {
    await this.#watcher.reload();
  }

  /**
   * Stops accepting connections, lets requests in flight finish for up to `graceMs`, then closes what is left.
   * Idle keep-alive connections are closed at once.
   */
  async close(graceMs = 10_000): Promise<void> {
    this.#watcher.stop();
    if (!this.#server.listening) return;
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeIdleConnections();
    const deadline = setTimeout(() => this.#server.closeAllConnections(), graceMs);
    await closed;
    clearTimeout(deadline);
  }
}
