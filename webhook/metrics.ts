import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/** How a review ended, as a low-cardinality metric label. */
export type ReviewOutcome = 'allowed' | 'allowed_with_warnings' | 'denied' | 'error' | 'bad_request';

export interface ReviewLabels {
  /** Resource plural (`modules`, `preflightvalidationsocp`), or `unknown` when the body was not a review. */
  readonly resource: string;
  readonly operation: string;
  readonly verdict: ReviewOutcome;
}

/** The webhook's Prometheus metrics, registered on a registry passed in (never the global one). */
export class WebhookMetrics {
  readonly #requests: Counter<'resource' | 'operation' | 'verdict'>;
  readonly #latency: Histogram<'resource' | 'operation' | 'verdict'>;
  readonly #inFlight: Gauge;
  readonly #certificateNotAfter: Gauge;
  readonly #certificateReloads: Counter<'result'>;

  constructor(registry: Registry) {
    const registers = [registry];
    this.#requests = new Counter({
      name: 'kmm_preflight_webhook_requests_total',
      help: 'Admission requests answered, by resource, operation and verdict.',
      labelNames: ['resource', 'operation', 'verdict'],
      registers,
    });
    this.#latency = new Histogram({
      name: 'kmm_preflight_webhook_request_duration_seconds',
      help: 'Time from receiving an admission request to sending its answer.',
      labelNames: ['resource', 'operation', 'verdict'],
      // Reviews are answered from memory in well under a millisecond; the top buckets catch stalls.
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.#inFlight = new Gauge({
      name: 'kmm_preflight_webhook_requests_in_flight',
      help: 'Admission requests being processed.',
      registers,
    });
    this.#certificateNotAfter = new Gauge({
      name: 'kmm_preflight_webhook_certificate_not_after_seconds',
      help: 'Expiry (Unix time) of the serving certificate in use.',
      registers,
    });
    this.#certificateReloads = new Counter({
      name: 'kmm_preflight_webhook_certificate_reloads_total',
      help: 'Serving certificate reloads from disk, by result (success, failure).',
      labelNames: ['result'],
      registers,
    });
  }

  requestStarted(): void {
    this.#inFlight.inc();
  }

  requestFinished(labels: ReviewLabels, seconds: number): void {
    this.#inFlight.dec();
    this.#requests.inc({ ...labels });
    this.#latency.observe({ ...labels }, seconds);
  }

  certificateLoaded(notAfter: Date): void {
    this.#certificateNotAfter.set(notAfter.getTime() / 1000);
    this.#certificateReloads.inc({ result: 'success' });
  }

  certificateReloadFailed(): void {
    this.#certificateReloads.inc({ result: 'failure' });
  }
}
