import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { Module } from '../api/module.ts';
import type { PreflightValidationOCP } from '../api/preflight.ts';
import { parseMirrorFlag, withMirrors, type MirrorRule } from '../image/mirrors.ts';
import { RegistryClient } from '../image/registry/client.ts';
import type { ImageSource } from '../image/source.ts';
import { ImageStageCache } from '../image/stage/cache.ts';
import { RegexpCache } from '../kernel/regexp.ts';
import { createKubeClient, loadKubeConfig, type KubeClient } from '../platform/kube/client.ts';
import {
  Informer,
  type InformerHooks,
  type KubeObject,
  type ResourceDescriptor,
} from '../platform/kube/informer.ts';
import type { Job } from '../buildsign/kube-types.ts';
import { kubeLeaseStore, LeaderElector, systemClock } from '../platform/kube/leader-election.ts';
import { createRunnerMetrics, type RunnerMetrics } from '../platform/metrics.ts';
import { OpsServer } from '../platform/ops-server.ts';
import { createPreflightDeps } from '../preflight/deps.ts';
import { validateModule } from '../preflight/engine.ts';
import { ReleaseCache } from '../release/cache.ts';
import { InTreeModuleLists } from '../release/in-tree-modules.ts';
import { resolveRelease } from '../release/resolve.ts';
import { readCaFiles } from './ca-files.ts';
import { ClusterCredentials, readClusterMirrorRules } from './cluster-inputs.ts';
import { JOB_LABEL_SELECTOR, JOB_RESOURCE, moduleOfJob, owningResource } from './jobs/job-watch.ts';
import { createBuildSign } from './jobs/wiring.ts';
import type { RunnerConfig } from './config.ts';
import { KernelCache, type ReleaseResolver } from './kernels.ts';
import {
  kubeEventSink,
  kubePreflightResources,
  MODULE_RESOURCE,
  PREFLIGHT_RESOURCE,
} from './kube-resources.ts';
import { TaskPool } from './pool.ts';
import { Reconciler } from './reconciler.ts';
import { shutDown } from './shutdown.ts';
import { WorkQueue } from './work-queue.ts';
import { errorMessage } from '../platform/errors.ts';

/**
 * The runner process: informers on PreflightValidationOCP and Module, a work queue, reconcile workers, the ops
 * server, and (optionally) leader election. Only the leader reconciles; a standby keeps its caches warm and is
 * ready, so failover costs the lease duration and no relist.
 */

export interface RunnerHandle {
  /** Resolves with the exit code: 0 after stop(), 1 when leadership was lost. */
  readonly done: Promise<number>;
  /**
   * Stop taking work, write the results not written yet and release the Lease, all within --shutdown-timeout.
   * Idempotent.
   */
  stop(): void;
  readonly opsAddress: { readonly host: string; readonly port: number };
}

const RECONCILE_WORKERS = 2;
/** Module events are coalesced this long before every resource is reconciled. */
const MODULE_EVENT_DEBOUNCE_MS = 300;

export async function startRunner(config: RunnerConfig, logger: Logger): Promise<RunnerHandle> {
  const kc = loadKubeConfig(config.kubeconfig);
  const client = createKubeClient(kc);
  const metrics = createRunnerMetrics();
  const identity = config.leaderElection.identity ?? `${hostname()}_${process.pid}`;
  logger.info(
    {
      server: kc.getCurrentCluster()?.server,
      namespaces: config.namespaces.length === 0 ? 'all' : config.namespaces,
      concurrency: config.concurrency,
      leaderElection: config.leaderElection.enabled,
      identity,
    },
    'runner starting',
  );

  const { source, registry, setMirrors, credentials } = await imageInputs(config, client, logger, metrics);
  let mirrors: MirrorRule[] = config.mirrors.map(parseMirrorFlag);
  const refreshMirrors = async (): Promise<void> => {
    const fromCluster = config.clusterMirrors ? await readClusterMirrorRules(client, logger) : [];
    mirrors = [...config.mirrors.map(parseMirrorFlag), ...fromCluster];
    setMirrors(mirrors);
  };
  await refreshMirrors();
  const mirrorTimer = setInterval(() => void refreshMirrors(), config.relistIntervalMs);
  mirrorTimer.unref();

  const platform = { os: 'linux', architecture: config.architecture };
  const buildSign = createBuildSign(client, kc, config.buildSign, logger);
  // The release's driver-toolkit, read like the release (mirrors, pull secret), lists the kernel's in-tree modules.
  const inTreeModules = new InTreeModuleLists({ source, credentials: () => credentials.cluster() });
  const engine = createPreflightDeps({
    image: { source, cache: new ImageStageCache() },
    credentials: (module, data) => credentials.forModule(module, data),
    inTreeModules: (request) => inTreeModules.source(request),
    buildSign: buildSign.port,
    regexps: new RegexpCache(),
  });
  const releaseCache = new ReleaseCache();
  const resolver: ReleaseResolver = async (spec, signal) => {
    const release = await resolveRelease(
      { source: registry, cache: releaseCache },
      {
        releaseImage: spec.releaseImage,
        useRTKernel: spec.useRTKernel === true,
        platform,
        credentials: await credentials.cluster(),
        mirrors,
        signal,
      },
    );
    return {
      state: 'resolved',
      targetKernel: release.targetKernel,
      kernelVersion: release.kernelVersion,
      dtkImage: release.dtkImage,
      releaseDigest: release.digest,
      ...(release.rtKernelVersion === null ? {} : { rtKernelVersion: release.rtKernelVersion }),
      ...(release.version === null ? {} : { releaseVersion: release.version }),
    };
  };

  const watchHooks = (resource: string): InformerHooks => ({
    onEvent: (type) => metrics.watchEvents.inc({ resource, type }),
    onRestart: (reason) => metrics.watchRestarts.inc({ resource, reason }),
  });
  const informer = <T extends KubeObject>(
    resource: ResourceDescriptor,
    namespace?: string,
    labelSelector?: string,
  ) =>
    new Informer<T>({
      client,
      resource,
      ...(namespace === undefined ? {} : { namespace }),
      ...(labelSelector === undefined ? {} : { labelSelector }),
      logger,
      relistIntervalMs: config.relistIntervalMs,
      idleTimeoutMs: config.watchIdleTimeoutMs,
      backoff: { baseMs: 500, maxMs: 10_000, jitter: 0.5 },
      hooks: watchHooks(resource.plural),
    });
  const preflights = informer<PreflightValidationOCP>(PREFLIGHT_RESOURCE, undefined, config.resourceSelector);
  const moduleInformers =
    config.namespaces.length === 0
      ? [informer<Module>(MODULE_RESOURCE)]
      : config.namespaces.map((ns) => informer<Module>(MODULE_RESOURCE, ns));
  // The Build and Sign Jobs this runner starts (in the Modules' namespaces): a change re-queues the owning resource.
  const jobInformers =
    config.namespaces.length === 0
      ? [informer<Job>(JOB_RESOURCE, undefined, JOB_LABEL_SELECTOR)]
      : config.namespaces.map((ns) => informer<Job>(JOB_RESOURCE, ns, JOB_LABEL_SELECTOR));
  const informers: Pick<Informer<KubeObject>, 'synced' | 'start' | 'stop'>[] = [
    preflights,
    ...moduleInformers,
    ...jobInformers,
  ];

  const queue = new WorkQueue({ baseMs: 500, maxMs: 60_000, jitter: 0.2 });
  const kernels = new KernelCache({
    resolve: resolver,
    backoff: { baseMs: 2_000, maxMs: config.retryIntervalMs, jitter: 0.2 },
    // A release named by tag is looked at again on the interval failed modules are: the seed's "next loop".
    recheckIntervalMs: config.retryIntervalMs,
    logger,
  });
  kernels.onSettled((name) => queue.add(name));
  const reconciler = new Reconciler({
    resources: kubePreflightResources(client),
    cached: (name) => preflights.get(name),
    modules: () => moduleInformers.flatMap((i) => i.list()),
    modulesSynced: () => moduleInformers.every((i) => i.synced),
    jobs: {
      list: () => jobInformers.flatMap((i) => i.list()),
      delete: (namespace, name, uid) => buildSign.store.deleteJob(namespace, name, uid),
    },
    validate: (request) => validateModule(engine, request),
    kernels,
    events: kubeEventSink(client, config.eventsNamespace, 'kmm-preflight-runner', logger),
    queue,
    pool: new TaskPool(config.concurrency),
    logger,
    metrics,
    now: Date.now,
    config: {
      platform,
      schedule: {
        retryIntervalMs: config.retryIntervalMs,
        backoff: { baseMs: 2_000, maxMs: config.retryIntervalMs, jitter: 0.3 },
        waitingPollMs: 30_000,
      },
      batchDelayMs: config.statusBatchDelayMs,
      validationTimeoutMs: config.validationTimeoutMs,
    },
  });

  preflights.on((event) => {
    const changed =
      event.type !== 'update' ||
      event.object.metadata.generation !== event.old.metadata.generation ||
      event.object.metadata.deletionTimestamp !== event.old.metadata.deletionTimestamp;
    if (changed) queue.add(event.object.metadata.name);
  });
  const enqueueAll = (): void => {
    for (const resource of preflights.list())
      queue.addAfter(resource.metadata.name, MODULE_EVENT_DEBOUNCE_MS);
  };
  for (const moduleInformer of moduleInformers) {
    moduleInformer.on((event) => {
      const changed =
        event.type !== 'update' ||
        event.object.metadata.generation !== event.old.metadata.generation ||
        event.object.metadata.deletionTimestamp !== event.old.metadata.deletionTimestamp;
      if (changed) enqueueAll();
    });
  }
  for (const jobInformer of jobInformers) {
    jobInformer.on((event) => {
      // Only resources this runner serves (--resource-selector): another runner's Jobs share the label.
      const owner = owningResource(event.object);
      if (owner === undefined || preflights.get(owner) === undefined) return;
      const module = moduleOfJob(event.object);
      if (module === undefined) queue.add(owner);
      else reconciler.jobChanged(owner, module);
    });
  }
  for (const i of informers) i.start();

  const ops = new OpsServer({
    registry: metrics.registry,
    livenessChecks: [{ name: 'ping', check: () => ({ ok: true }) }],
    readinessChecks: [
      {
        name: 'caches',
        check: () =>
          informers.every((i) => i.synced) ? { ok: true } : { ok: false, reason: 'caches not synced yet' },
      },
    ],
  });
  const opsAddress = await ops.listen(config.opsAddress.port, config.opsAddress.host);
  logger.info({ ops: `${opsAddress.host}:${opsAddress.port}` }, 'serving /healthz /readyz /metrics');

  const stopping = new AbortController();
  let exitCode = 0;
  const workers: Promise<void>[] = [];
  const startWorkers = (): void => {
    metrics.leader.set(1);
    for (let i = 0; i < RECONCILE_WORKERS; i += 1) workers.push(worker(queue, reconciler, logger, metrics));
    for (const resource of preflights.list()) queue.add(resource.metadata.name);
  };

  let elector: LeaderElector | undefined;
  let election: Promise<void> = Promise.resolve();
  if (config.leaderElection.enabled) {
    const namespace = config.leaderElection.namespace ?? client.podNamespace ?? 'default';
    elector = new LeaderElector(
      kubeLeaseStore(client, namespace, config.leaderElection.leaseName),
      {
        identity,
        leaseDurationSeconds: config.leaderElection.leaseDurationSeconds,
        renewDeadlineMs: config.leaderElection.renewDeadlineMs,
        retryPeriodMs: config.leaderElection.retryPeriodMs,
      },
      systemClock,
      logger,
    );
    metrics.leader.set(0);
    election = elector.run(stopping.signal, {
      onStartedLeading: startWorkers,
      onStoppedLeading: () => {
        // Another replica may be reconciling already: stop at once and let the Deployment restart this one.
        exitCode = 1;
        metrics.leader.set(0);
        stop();
      },
    });
  } else {
    startWorkers();
  }

  const depthTimer = setInterval(() => metrics.queueDepth.set(queue.length), 1_000);
  depthTimer.unref();

  let resolveDone: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (resolveDone = resolve));
  const stop = (): void => {
    if (stopping.signal.aborted) return;
    stopping.abort();
    // After a lost leadership another replica may be reconciling already: write nothing more.
    const leading = exitCode === 0;
    logger.info(
      leading ? 'stopping: no new work; writing the results not written yet' : 'stopping: leadership lost',
    );
    ops.markShuttingDown();
    queue.shutDown();
    if (leading) reconciler.stopValidating();
    else reconciler.stop();
    void shutDown(
      {
        drain: () => Promise.all(workers).then(() => undefined),
        ...(leading ? { flush: () => reconciler.flush() } : {}),
        election,
        ...(leading && elector !== undefined ? { release: () => elector.release() } : {}),
        close: async () => {
          reconciler.stop();
          for (const i of informers) i.stop();
          kernels.stop();
          clearInterval(depthTimer);
          clearInterval(mirrorTimer);
          client.close();
          await ops.close();
        },
      },
      config.shutdownTimeoutMs,
      logger,
    )
      .then(
        (report) =>
          logger.info(
            { exitCode, resourcesWritten: report.flushed, cutShortByTimeout: report.cutShort },
            'runner stopped',
          ),
        (err: unknown) => logger.error({ exitCode, err: errorMessage(err) }, 'runner stopped'),
      )
      .finally(() => resolveDone(exitCode));
  };
  return { done, stop, opsAddress };
}

/** One reconcile worker: takes keys until the queue shuts down; never throws. */
async function worker(queue: WorkQueue, reconciler: Reconciler, logger: Logger, metrics: RunnerMetrics) {
  for (;;) {
    const name = await queue.get();
    if (name === undefined) return;
    const end = metrics.reconcileDuration.startTimer();
    try {
      const result = await reconciler.reconcile(name);
      queue.forget(name);
      metrics.reconciles.inc({ result: result.requeueAfterMs === undefined ? 'success' : 'requeue' });
      if (result.requeueAfterMs !== undefined) queue.addAfter(name, result.requeueAfterMs);
    } catch (err) {
      metrics.reconciles.inc({ result: 'error' });
      logger.warn(
        {
          resource: name,
          err: errorMessage(err),
          failures: queue.failures(name) + 1,
        },
        'reconcile failed; retrying with backoff',
      );
      queue.addRateLimited(name);
    } finally {
      end();
      queue.done(name);
    }
  }
}

interface ImageInputs {
  /** Module images go through the mirrors too (a disconnected cluster mirrors them like the payload). */
  readonly source: ImageSource;
  /** The registry without mirrors: resolveRelease applies the mirror rules itself. */
  readonly registry: ImageSource;
  readonly setMirrors: (rules: readonly MirrorRule[]) => void;
  readonly credentials: ClusterCredentials;
}

async function imageInputs(
  config: RunnerConfig,
  client: KubeClient,
  logger: Logger,
  metrics: RunnerMetrics,
): Promise<ImageInputs> {
  const caCertificates = await readCaFiles(config.caFiles);
  const registry = new RegistryClient({
    caCertificates,
    plainHttpRegistries: config.insecureRegistries,
    logger,
    onRequest: (event) => {
      const kind = event.path.includes('/manifests/')
        ? 'manifest'
        : event.path.includes('/blobs/')
          ? 'blob'
          : 'other';
      metrics.registryRequests.inc({ kind });
    },
  });
  let bytesSeen = 0;
  const bytesTimer = setInterval(() => {
    const total = Object.values(registry.stats()).reduce((sum, s) => sum + s.bytesReceived, 0);
    if (total > bytesSeen) metrics.registryBytes.inc(total - bytesSeen);
    bytesSeen = total;
  }, 5_000);
  bytesTimer.unref();
  let mirrored: ImageSource = registry;
  const source: ImageSource = {
    resolve: (reference, options) => mirrored.resolve(reference, options),
    openBlob: (image, descriptor, options) => mirrored.openBlob(image, descriptor, options),
  };
  return {
    source,
    registry,
    setMirrors: (rules) => {
      mirrored = withMirrors(registry, rules);
    },
    credentials: new ClusterCredentials(client, logger, config.pullSecret),
  };
}
