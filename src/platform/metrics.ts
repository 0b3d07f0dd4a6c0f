import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Prometheus metrics of the runner, on a registry of its own (never prom-client's global one, so tests and several
 * instances in one process do not collide). Labels are low-cardinality: no object names.
 */
export interface RunnerMetrics {
  readonly registry: Registry;
  readonly reconciles: Counter<'result'>;
  readonly reconcileDuration: Histogram;
  readonly queueDepth: Gauge;
  readonly validationsInFlight: Gauge;
  readonly moduleVerdicts: Counter<'status' | 'stage'>;
  readonly statusWrites: Counter<'result'>;
  readonly registryRequests: Counter<'kind'>;
  readonly registryBytes: Counter;
  readonly watchEvents: Counter<'resource' | 'type'>;
  readonly watchRestarts: Counter<'resource' | 'reason'>;
  readonly leader: Gauge;
}

export function createRunnerMetrics(options: { defaultMetrics?: boolean } = {}): RunnerMetrics {
  const registry = new Registry();
  if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'kmm_preflight_' });
  const registers = [registry];
  return {
    registry,
    reconciles: new Counter({
      name: 'kmm_preflight_reconcile_total',
      help: 'Reconciles of PreflightValidationOCP resources, by result (success, error, requeue).',
      labelNames: ['result'],
      registers,
    }),
    reconcileDuration: new Histogram({
      name: 'kmm_preflight_reconcile_duration_seconds',
      help: 'Time one reconcile took (reading, deciding, writing status; validations run outside it).',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    queueDepth: new Gauge({
      name: 'kmm_preflight_workqueue_depth',
      help: 'Resources waiting in the work queue.',
      registers,
    }),
    validationsInFlight: new Gauge({
      name: 'kmm_preflight_validations_in_flight',
      help: 'Module validations running now.',
      registers,
    }),
    moduleVerdicts: new Counter({
      name: 'kmm_preflight_module_verdicts_total',
      help: 'Module validation outcomes, by verificationStatus and verificationStage.',
      labelNames: ['status', 'stage'],
      registers,
    }),
    statusWrites: new Counter({
      name: 'kmm_preflight_status_writes_total',
      help: 'Writes of the /status subresource, by result (ok, conflict, error).',
      labelNames: ['result'],
      registers,
    }),
    registryRequests: new Counter({
      name: 'kmm_preflight_registry_requests_total',
      help: 'HTTP requests to container registries, by kind (manifest, blob, token, other).',
      labelNames: ['kind'],
      registers,
    }),
    registryBytes: new Counter({
      name: 'kmm_preflight_registry_bytes_total',
      help: 'Bytes received from container registries.',
      registers,
    }),
    watchEvents: new Counter({
      name: 'kmm_preflight_watch_events_total',
      help: 'Watch events received, by resource and type.',
      labelNames: ['resource', 'type'],
      registers,
    }),
    watchRestarts: new Counter({
      name: 'kmm_preflight_watch_restarts_total',
      help: 'Watch restarts, by resource and reason (error, gone, silent, relist, closed).',
      labelNames: ['resource', 'reason'],
      registers,
    }),
    leader: new Gauge({
      name: 'kmm_preflight_leader',
      help: '1 while this instance holds the leader Lease (or runs without leader election), else 0.',
      registers,
    }),
  };
}
