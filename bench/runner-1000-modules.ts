import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { buildReleaseFixture } from '../src/fixtures/release.ts';
import { RegistryClient } from '../src/image/registry/client.ts';
import { pushLayout, startRegistry } from '../test/support/registry.ts';
import { privateCluster, startRunnerProcess } from '../test/runner/e2e-support.ts';
import { pushModuleImage } from '../test/support/module-images.ts';
import { waitFor } from '../test/support/wait.ts';
import { runnerNodeOptions } from './support/deployment.ts';

/**
 * Issue 5's benchmark: 1000 Modules in 10 namespaces over 50 images on the local registry, one
 * PreflightValidationOCP, the runner as its own process against the real API server. Figures: wall time until
 * every entry is final, status writes, registry requests against the distinct manifests and blobs there are, peak
 * RSS of the runner, and the registry's share: the same 50 images (manifest + layers) fetched by a bare registry
 * client in this process, the time a runner cannot go below. Targets: <= 1 status write per 10 modules, each
 * manifest/blob once, peak RSS < 250 MB, wall time dominated by the registry.
 */

const NAMESPACES = 10;
const MODULES_PER_NAMESPACE = 100;
const IMAGES = 50;
const MODULE = 'kmm_bench';
const TOTAL = NAMESPACES * MODULES_PER_NAMESPACE;
const crdDir = resolve(import.meta.dirname, '../manifests/crds');

const run = randomBytes(3).toString('hex');
const namespaces = Array.from({ length: NAMESPACES }, (_, i) => `rnb-${run}-${i}`);
const resourceName = `rnb-${run}`;

const fixtureDir = await mkdtemp(join(tmpdir(), 'rnb-release-'));
const cluster = await privateCluster(fixtureDir);
await cluster.kubectl([
  'apply',
  '-f',
  join(crdDir, 'module.yaml'),
  '-f',
  join(crdDir, 'preflightvalidationocp.yaml'),
]);
const registry = await startRegistry('http');
let runner: ReturnType<typeof startRunnerProcess> | undefined;
try {
  const fixture = await buildReleaseFixture({
    dir: fixtureDir,
    componentRepository: `${registry.host}/rnb-ocp/ocp-v4.0-art-dev`,
  });
  const kernel = fixture.architectures[0]?.driverToolkit.kernelVersion ?? '';
  await pushLayout(fixture.driverToolkitLayoutReference, 'rnb-ocp/ocp-v4.0-art-dev:dtk', registry);
  await pushLayout(fixture.releaseLayoutReference, `rnb-ocp/ocp-release:${fixture.releaseTag}`, registry);
  const images: string[] = [];
  for (let i = 0; i < IMAGES; i += 1) {
    images.push(
      await pushModuleImage(registry, `rnb-kmods/kmod-${i}`, kernel, { moduleName: MODULE, kernel }),
    );
  }

  for (const ns of namespaces) await cluster.kubectl(['create', 'namespace', ns]);
  for (const [n, ns] of namespaces.entries()) {
    const items = Array.from({ length: MODULES_PER_NAMESPACE }, (_, i) => ({
      apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
      kind: 'Module',
      metadata: { name: `m-${i}`, namespace: ns },
      spec: {
        selector: { 'kmm-preflight-bench': 'runner' },
        moduleLoader: {
          container: {
            modprobe: { moduleName: MODULE },
            kernelMappings: [
              { regexp: '^.+$', containerImage: images[(n * MODULES_PER_NAMESPACE + i) % IMAGES] ?? '' },
            ],
          },
        },
      },
    }));
    await cluster.kubectl(['apply', '-f', '-'], JSON.stringify({ apiVersion: 'v1', kind: 'List', items }));
  }

  const nodeOptions = await runnerNodeOptions();
  runner = startRunnerProcess(
    [
      '--kubeconfig',
      cluster.kubeconfig,
      '--namespaces',
      namespaces.join(','),
      '--resource-selector',
      `kmm-preflight-bench=${run}`,
      '--insecure-registry',
      registry.host,
      '--pull-secret',
      '',
      '--ops-address',
      '127.0.0.1:0',
    ],
    // Node runs as the Deployment runs it: the same V8 flags.
    { NODE_OPTIONS: nodeOptions },
  );
  const ops = await runner.opsAddress();
  await waitFor('runner ready', async () => ((await fetch(`http://${ops}/readyz`)).ok ? true : undefined));

  const started = performance.now();
  await cluster.kubectl(
    ['apply', '-f', '-'],
    JSON.stringify({
      apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
      kind: 'PreflightValidationOCP',
      metadata: { name: resourceName, labels: { 'kmm-preflight-bench': run } },
      spec: { releaseImage: `${registry.host}/rnb-ocp/ocp-release:${fixture.releaseTag}` },
    }),
  );
  const status = await waitFor(
    'every entry final',
    async () => {
      const out = await cluster.kubectl([
        'get',
        'pfvo',
        resourceName,
        '-o',
        'jsonpath={.status.total} {.status.verified} {.status.failed}',
      ]);
      const [total, verified, failed] = out.split(' ').map(Number);
      return total === TOTAL && (verified ?? 0) + (failed ?? 0) === TOTAL ? { verified, failed } : undefined;
    },
    600_000,
    1_000,
  );
  const wallMs = performance.now() - started;

  const metrics = await (await fetch(`http://${ops}/metrics`)).text();
  const metric = (pattern: RegExp): number => Number(pattern.exec(metrics)?.[1] ?? 0);
  const writes = metric(/^kmm_preflight_status_writes_total\{result="ok"\} (\d+)/m);
  const conflicts = metric(/^kmm_preflight_status_writes_total\{result="conflict"\} (\d+)/m);
  const manifestRequests = metric(/^kmm_preflight_registry_requests_total\{kind="manifest"\} (\d+)/m);
  const blobRequests = metric(/^kmm_preflight_registry_requests_total\{kind="blob"\} (\d+)/m);
  const reconcileSeconds = metric(/^kmm_preflight_reconcile_duration_seconds_sum (\S+)/m);
  const reconciles = metric(/^kmm_preflight_reconcile_duration_seconds_count (\d+)/m);
  const pid = runner.child.pid ?? 0;
  const peakRssKiB = Number(/VmHWM:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);

  // Distinct manifests and blobs behind the run: 50 module images (manifest + 1 layer each), the release (manifest,
  // last layer) and the driver-toolkit (manifest, its layers from the top until the JSON file).
  const distinctManifests = IMAGES + 2;

  // The registry's share: what fetching the same 50 images costs with a bare client in this process.
  const client = new RegistryClient({ plainHttpRegistries: [registry.host] });
  const platform = { os: 'linux', architecture: 'amd64' };
  const baselineStarted = performance.now();
  await Promise.all(
    images.map(async (image) => {
      const resolved = await client.resolve(image, { platform });
      for (const layer of resolved.manifest.layers) {
        const stream = await client.openBlob(resolved, layer);
        for await (const chunk of stream) void chunk;
      }
    }),
  );
  const registryMs = performance.now() - baselineStarted;

  const lines = [
    `modules: ${TOTAL} in ${NAMESPACES} namespaces over ${IMAGES} images; verified ${status.verified}, failed ${status.failed}`,
    `wall time until every entry final: ${(wallMs / 1000).toFixed(2)} s (from resource creation; runner already synced)`,
    `status writes: ${writes} (+${conflicts} conflicts) = ${(writes / (TOTAL / 10)).toFixed(2)} per 10 modules (target <= 1)`,
    `registry requests: ${manifestRequests} manifest, ${blobRequests} blob; distinct manifests ${distinctManifests} ` +
      `(${(manifestRequests / distinctManifests).toFixed(2)}x)`,
    `runner peak RSS: ${(peakRssKiB / 1024).toFixed(1)} MiB (target < 250; NODE_OPTIONS from the Deployment: ${nodeOptions || 'none'})`,
    `runner reconcile time: ${reconcileSeconds.toFixed(2)} s over ${reconciles} reconciles ` +
      `(${((reconcileSeconds * 1000) / wallMs).toFixed(3)} of wall time)`,
    `registry baseline (same 50 images, bare client, parallel): ${(registryMs / 1000).toFixed(2)} s; ` +
      `runner wall / baseline = ${(wallMs / registryMs).toFixed(1)}x`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  await runner?.kill('SIGTERM');
  await cluster
    .kubectl(['delete', 'pfvo', resourceName, '--ignore-not-found', '--wait=false'])
    .catch(() => undefined);
  for (const ns of namespaces) {
    await cluster
      .kubectl(['delete', 'namespace', ns, '--ignore-not-found', '--wait=false'])
      .catch(() => undefined);
  }
  await registry.stop();
  await rm(fixtureDir, { recursive: true, force: true });
}
