import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { KMM_GROUP } from '../src/api/meta.ts';
import { MODULE_PLURAL } from '../src/api/module.ts';
import { PREFLIGHT_PLURAL } from '../src/api/preflight.ts';
import { AdmissionOperations, type AdmissionRequest } from './admission-review.ts';

// Every label takes its value from a fixed set: a request body decides which member, never the text of a label,
// so hostile or fuzzed reviews cannot grow the number of series.

export const ReviewOutcomes = ['allowed', 'allowed_with_warnings', 'denied', 'error', 'bad_request'] as const;
/** How a review ended. */
export type ReviewOutcome = (typeof ReviewOutcomes)[number];

export const ResourceLabelValues = [MODULE_PLURAL, PREFLIGHT_PLURAL, 'other'] as const;
/** Our two resources (group kmm.sigs.x-k8s.io); anything else, and bodies that were not reviews, are `other`. */
export type ResourceLabel = (typeof ResourceLabelValues)[number];

export const OperationLabelValues = [...AdmissionOperations, 'other'] as const;
/** The review's operation; `other` for bodies that were not reviews. */
export type OperationLabel = (typeof OperationLabelValues)[number];

export interface ReviewLabels {
  readonly resource: ResourceLabel;
  readonly operation: OperationLabel;
  readonly verdict: ReviewOutcome;
}

/** The labels of an answered review. */
export function reviewLabels(request: AdmissionRequest, verdict: ReviewOutcome): ReviewLabels {
  const { group, resource } = request.resource;
  return {
    resource:
      group === KMM_GROUP && (resource === MODULE_PLURAL || resource === PREFLIGHT_PLURAL)
        ? resource
        : 'other',
    // parseAdmissionReview admits only AdmissionOperations; 'other' is for bodies that never became a review.
    operation: request.operation,
    verdict,
  };
}

/** The labels of a body answered 4xx before it was a review. */
export const badRequestLabels: ReviewLabels = {
  resource: 'other',
  operation: 'other',
  verdict: 'bad_request',
};

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
      help: 'Changes of the certificate files on disk after start-up, by result: success (now served) or failure.',
      labelNames: ['result'],
      registers,
    });
    // Both series exist from the start, so a rate or an alert on failures works before the first change.
    for (const result of ['success', 'failure']) this.#certificateReloads.inc({ result }, 0);
  }

  requestStarted(): void {
    this.#inFlight.inc();
  }

  requestFinished(labels: ReviewLabels, seconds: number): void {
    this.#inFlight.dec();
    this.#requests.inc({ ...labels });
    this.#latency.observe({ ...labels }, seconds);
  }

  /** The certificate read at start-up: its expiry, not a reload. */
  certificateLoaded(notAfter: Date): void {
    this.#certificateNotAfter.set(notAfter.getTime() / 1000);
  }

  /** A changed certificate now served. */
  certificateReloaded(notAfter: Date): void {
    this.certificateLoaded(notAfter);
    this.#certificateReloads.inc({ result: 'success' });
  }

  certificateReloadFailed(): void {
    this.#certificateReloads.inc({ result: 'failure' });
  }
}
