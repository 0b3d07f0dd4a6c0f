import { fork, type ChildProcess } from 'node:child_process';
import type { EventEmitter } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:https';
import { createRequire } from 'node:module';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { writeServingCertificates } from '../certs/files.ts';
import type { Module } from '../src/api/module.ts';
import type { PreflightValidationOCP } from '../src/api/preflight.ts';
import { createLogger } from '../src/platform/logger.ts';
import { RuleDecider } from '../webhook/admission-decider.ts';
import { WebhookMetrics } from '../webhook/metrics.ts';
import { WebhookServer } from '../webhook/server.ts';

/**
 * Admission latency under load: loopback HTTPS keep-alive at 1000 requests/s of Module UPDATE reviews with 20 kernel
 * mappings (an active preflight in the cache, so the upgrade-window rule resolves old and new Module too), against a
 * bare Node HTTPS server that drains the body and returns a fixed AdmissionReview, in the same run with the same
 * certificate. Each server runs in its own process (this file, forked with --serve) so the load generator does not
 * share its event loop, and reports its RSS. Targets: zero errors, p99 under 2 ms and within 1.5x the bare p99.
 */

/** The part of autocannon's API used here (the package ships no type declarations). */
interface AutocannonResult {
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
}
type AutocannonInstance = EventEmitter & PromiseLike<AutocannonResult>;
type Autocannon = (options: Record<string, unknown>) => AutocannonInstance;
const autocannon = createRequire(import.meta.url)('autocannon') as Autocannon;

const RATE = 1000;
const CONNECTIONS = 10;
const WARMUP_SECONDS = 3;
/** Seconds per run; each server runs ROUNDS times, alternating with the other. */
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 5);
const ROUNDS = 3;
const TARGET_KERNEL = '5.14.0-427.13.1.el9_4.x86_64';

type ServeMode = 'webhook' | 'bare';

function mappings(count: number): Record<string, unknown>[] {
  return Array.from({ length: count }, (_, i) =>
    i % 2 === 0
      ? { literal: `5.14.0-${300 + i}.el9.x86_64`, containerImage: `quay.io/acme/kmod:${300 + i}` }
      : {
          regexp: `^5\\.14\\.0-${300 + i}\\.[0-9.]+\\.el9_[0-9]+\\.x86_64$`,
          containerImage: 'quay.io/acme/kmod:${KERNEL_FULL_VERSION}',
        },
  );
}

function moduleObject(generation: number, kernelMappings: Record<string, unknown>[]): Module {
  return {
    apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
    kind: 'Module',
    metadata: {
      name: 'bench-kmod',
      namespace: 'drivers',
      generation,
      creationTimestamp: '2026-11-20T10:00:00Z',
    },
    spec: {
      selector: { 'node-role.kubernetes.io/worker': '' },
      moduleLoader: { container: { modprobe: { moduleName: 'bench_kmod' }, kernelMappings } },
    },
  };
}

function updateReview(): unknown {
  const old = [...mappings(19), { regexp: '^5\\.14\\.0-427\\..*$', containerImage: 'quay.io/acme/kmod:427' }];
  const changed = [
    ...mappings(19),
    { regexp: '^5\\.14\\.0-427\\..*$', containerImage: 'quay.io/acme/kmod:427-v2' },
  ];
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: '0df28fbd-5f5f-11e8-9c2d-fa7ae01bbebc',
      kind: { group: 'kmm.sigs.x-k8s.io', version: 'v1beta1', kind: 'Module' },
      resource: { group: 'kmm.sigs.x-k8s.io', version: 'v1beta1', resource: 'modules' },
      name: 'bench-kmod',
      namespace: 'drivers',
      operation: 'UPDATE',
      userInfo: { username: 'admin' },
      object: moduleObject(2, changed),
      oldObject: moduleObject(1, old),
      dryRun: false,
    },
  };
}

const activePreflight: PreflightValidationOCP = {
  apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
  kind: 'PreflightValidationOCP',
  metadata: { name: 'upgrade', creationTimestamp: '2026-11-23T09:00:00Z' },
  spec: { releaseImage: 'quay.io/openshift-release-dev/ocp-release@sha256:' + 'a'.repeat(64) },
  status: {
    targetKernel: TARGET_KERNEL,
    conditions: [
      {
        type: 'KernelResolved',
        status: 'True',
        reason: 'Resolved',
        message: '',
        lastTransitionTime: '2026-11-23T09:01:00Z',
      },
    ],
  },
};

/** Child side: one server on 127.0.0.1:0; reports its port, then its RSS whenever asked. */
async function serve(mode: ServeMode, certFile: string, keyFile: string): Promise<void> {
  let port: number;
  if (mode === 'webhook') {
    const logger = createLogger({ level: 'warn' });
    const cache = { synced: () => true, listPreflights: () => [activePreflight], listModules: () => [] };
    const decider = new RuleDecider({
      cache,
      policy: { modulePolicy: 'deny', failureMode: 'deny', activeWindowMs: 0 },
      logger,
    });
    const server = await WebhookServer.create({
      decider,
      metrics: new WebhookMetrics(new Registry()),
      logger,
      certFile,
      keyFile,
    });
    ({ port } = await server.listen(0, '127.0.0.1'));
  } else {
    const answer = JSON.stringify({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: '0df28fbd-5f5f-11e8-9c2d-fa7ae01bbebc', allowed: true },
    });
    const server = createServer(
      { cert: await readFile(certFile), key: await readFile(keyFile), minVersion: 'TLSv1.2' },
      (req, res) => {
        req.resume();
        req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end(answer));
      },
    );
    server.keepAliveTimeout = 120_000;
    port = await new Promise<number>((done) =>
      server.listen(0, '127.0.0.1', () => done((server.address() as { port: number }).port)),
    );
  }
  process.send?.({ port });
  process.on('message', () => {
    const cpu = process.cpuUsage();
    process.send?.({ rss: process.memoryUsage().rss, cpuMicros: cpu.user + cpu.system });
  });
}

interface RunSamples {
  readonly latencies: number[];
  readonly errors: number;
  readonly peakRss: number;
  /** CPU time the server process used during the run. */
  readonly cpuMicros: number;
}

interface RunFigures {
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly requests: number;
  readonly errors: number;
  readonly peakRssMb: number;
  /** Server CPU per answered request: a figure that stays meaningful when the machine is busy. */
  readonly cpuMicrosPerRequest: number;
}

/** Percentiles over every run of one server (the rounds interleave the servers, so drift hits both alike). */
function summarize(runs: readonly RunSamples[]): RunFigures {
  const latencies = runs.flatMap((run) => run.latencies).sort((a, b) => a - b);
  const at = (q: number): number =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN;
  return {
    p50: at(0.5),
    p99: at(0.99),
    p999: at(0.999),
    max: latencies[latencies.length - 1] ?? NaN,
    requests: latencies.length,
    errors: runs.reduce((sum, run) => sum + run.errors, 0),
    peakRssMb: Math.max(...runs.map((run) => run.peakRss)) / 1024 / 1024,
    cpuMicrosPerRequest: runs.reduce((sum, run) => sum + run.cpuMicros, 0) / Math.max(1, latencies.length),
  };
}

async function startServer(
  mode: ServeMode,
  certFile: string,
  keyFile: string,
): Promise<{ child: ChildProcess; port: number }> {
  const child = fork(import.meta.filename, ['--serve', mode, certFile, keyFile], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const port = await new Promise<number>((done, fail) => {
    child.once('message', (message: { port?: number }) =>
      message.port === undefined ? fail(new Error('no port')) : done(message.port),
    );
    child.once('exit', (code) => fail(new Error(`${mode} server exited ${code}`)));
  });
  return { child, port };
}

async function load(port: number, body: string, seconds: number, child: ChildProcess): Promise<RunSamples> {
  const latencies: number[] = [];
  let peakRss = 0;
  let cpuFirst: number | undefined;
  let cpuLast = 0;
  const onRss = (message: { rss?: number; cpuMicros?: number }): void => {
    if (message.rss !== undefined) peakRss = Math.max(peakRss, message.rss);
    if (message.cpuMicros !== undefined) {
      cpuFirst ??= message.cpuMicros;
      cpuLast = message.cpuMicros;
    }
  };
  child.on('message', onRss);
  child.send('rss');
  const sampler = setInterval(() => child.send('rss'), 250);
  const instance = autocannon({
    url: `https://127.0.0.1:${port}/validate/module`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections: CONNECTIONS,
    overallRate: RATE,
    duration: seconds,
    servername: 'localhost',
  });
  instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
    if (statusCode === 200) latencies.push(responseTime);
  });
  const result = await instance;
  clearInterval(sampler);
  child.send('rss');
  await new Promise((done) => setTimeout(done, 100));
  child.off('message', onRss);
  return {
    latencies,
    errors: result.errors + result.timeouts + result.non2xx,
    peakRss,
    cpuMicros: cpuLast - (cpuFirst ?? cpuLast),
  };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'kmm-bench-webhook-'));
  const certs = await writeServingCertificates({
    outDir: dir,
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    days: 1,
  });
  const body = JSON.stringify(updateReview());
  const bare = await startServer('bare', certs.certFile, certs.keyFile);
  const webhook = await startServer('webhook', certs.certFile, certs.keyFile);
  try {
    console.log(
      `Module UPDATE review: ${body.length} bytes, 20 kernel mappings; ${RATE} req/s over ${CONNECTIONS} keep-alive connections, ${ROUNDS} alternating runs of ${SECONDS} s per server; ${cpus().length} CPUs, load average ${loadavg()[0]?.toFixed(1)}`,
    );
    await load(bare.port, body, WARMUP_SECONDS, bare.child);
    await load(webhook.port, body, WARMUP_SECONDS, webhook.child);
    const bareRuns: RunSamples[] = [];
    const webhookRuns: RunSamples[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      bareRuns.push(await load(bare.port, body, SECONDS, bare.child));
      webhookRuns.push(await load(webhook.port, body, SECONDS, webhook.child));
    }
    const bareFigures = summarize(bareRuns);
    const webhookFigures = summarize(webhookRuns);
    const row = (name: string, f: RunFigures): string =>
      `${name.padEnd(8)} requests ${String(f.requests).padStart(6)}  p50 ${f.p50.toFixed(3)} ms  p99 ${f.p99.toFixed(3)} ms  p99.9 ${f.p999.toFixed(3)} ms  max ${f.max.toFixed(1)} ms  errors ${f.errors}  peak RSS ${f.peakRssMb.toFixed(0)} MB  server CPU ${f.cpuMicrosPerRequest.toFixed(0)} µs/request`;
    console.log(row('bare', bareFigures));
    console.log(row('webhook', webhookFigures));
    const p99Ratio = webhookFigures.p99 / bareFigures.p99;
    console.log(
      `ratios webhook/bare: p50 ${(webhookFigures.p50 / bareFigures.p50).toFixed(2)}x  p99 ${p99Ratio.toFixed(2)}x  RSS ${(webhookFigures.peakRssMb / bareFigures.peakRssMb).toFixed(2)}x  CPU/request ${(webhookFigures.cpuMicrosPerRequest / bareFigures.cpuMicrosPerRequest).toFixed(2)}x`,
    );
    const verdict = (ok: boolean): string => (ok ? 'met' : 'MISSED');
    console.log(
      `targets: zero errors ${verdict(webhookFigures.errors === 0)}; p99 < 2 ms ${verdict(webhookFigures.p99 < 2)}; p99 within 1.5x bare ${verdict(p99Ratio <= 1.5)}`,
    );
    console.log(
      `load average after: ${loadavg()[0]?.toFixed(1)} (latency figures are only meaningful on an idle machine)`,
    );
    if (bareFigures.errors + webhookFigures.errors > 0) process.exitCode = 1;
  } finally {
    bare.child.kill();
    webhook.child.kill();
    await rm(dir, { recursive: true, force: true });
  }
}

const serveAt = process.argv.indexOf('--serve');
if (serveAt === -1) {
  await main();
} else {
  const [mode, certFile, keyFile] = process.argv.slice(serveAt + 1);
  await serve(mode as ServeMode, certFile ?? '', keyFile ?? '');
}
