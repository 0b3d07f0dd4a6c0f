import { collectDefaultMetrics, Registry } from 'prom-client';
import type { Logger } from 'pino';
import { OpsServer, type OpsServerAddress } from '../src/platform/ops-server.ts';
import { RuleDecider, type AdmissionPolicy } from './admission-decider.ts';
import type { AdmissionCache } from './cache.ts';
import { WebhookMetrics } from './metrics.ts';
import { WebhookServer, type WebhookServerAddress } from './server.ts';

export interface WebhookRunConfig {
  readonly certFile: string;
  readonly keyFile: string;
  readonly bindAddress: string;
  readonly port: number;
  readonly healthPort: number;
  readonly policy: AdmissionPolicy;
  /** Time between failing /readyz and closing the listener, so endpoints stop routing here first. */
  readonly shutdownDelayMs: number;
}

/** The cache plus how to start and stop it (the KubeAdmissionCache in production, a fixed one in tests). */
export interface RunnableAdmissionCache extends AdmissionCache {
  start(): void;
  stop(): void;
}

export interface RunningWebhook {
  readonly webhook: WebhookServerAddress;
  readonly health: OpsServerAddress;
  /** Fails readiness, waits the shutdown delay, drains the HTTPS server, stops the cache and the ops port. */
  shutdown(): Promise<void>;
}

/**
 * Starts the admission webhook: the HTTPS admission server and the plain-HTTP ops port (/healthz, /readyz ready
 * once the cache has synced and a certificate is loaded, /metrics). Throws CertificateLoadError when the
 * certificate files are unusable and listen errors (EADDRINUSE) as they are.
 */
export async function startWebhook(
  config: WebhookRunConfig,
  cache: RunnableAdmissionCache,
  logger: Logger,
): Promise<RunningWebhook> {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'kmm_preflight_webhook_' });
  const metrics = new WebhookMetrics(registry);
  const decider = new RuleDecider({ cache, policy: config.policy, logger });
  const server = await WebhookServer.create({
    decider,
    metrics,
    logger,
    certFile: config.certFile,
    keyFile: config.keyFile,
  });
  const ops = new OpsServer({
    registry,
    readinessChecks: [
      {
        name: 'informer-cache',
        check: () =>
          cache.synced()
            ? { ok: true }
            : { ok: false, reason: 'PreflightValidationOCP and Module lists not loaded yet' },
      },
      {
        name: 'serving',
        check: () =>
          server.listening
            ? { ok: true }
            : { ok: false, reason: 'the HTTPS admission server is not listening' },
      },
    ],
  });
  cache.start();
  let health: OpsServerAddress;
  let webhook: WebhookServerAddress;
  try {
    health = await ops.listen(config.healthPort, config.bindAddress);
    webhook = await server.listen(config.port, config.bindAddress);
  } catch (err) {
    cache.stop();
    await Promise.all([ops.close(), server.close(0)]);
    throw err;
  }
  logger.info({ health, webhook, policy: config.policy }, 'webhook started');
  return {
    webhook,
    health,
    shutdown: async () => {
      ops.markShuttingDown();
      if (config.shutdownDelayMs > 0)
        await new Promise((resolve) => setTimeout(resolve, config.shutdownDelayMs));
      await server.close();
      cache.stop();
      await ops.close();
      logger.info('webhook stopped');
    },
  };
}
