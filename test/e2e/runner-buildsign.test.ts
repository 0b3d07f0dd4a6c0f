import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { PreflightValidationOCP } from '../../src/api/preflight.ts';
import { JobLabel } from '../../src/buildsign/identity.ts';
import type { Job } from '../../src/buildsign/kube-types.ts';
import { buildReleaseFixture } from '../../src/fixtures/release.ts';
import { createKubeClient, loadKubeConfig, type KubeClient } from '../../src/platform/kube/client.ts';
import { KubeJobStore } from '../../src/runner/jobs/kube-job-store.ts';
import type { TestCluster } from '../support/cluster.ts';
import { pushLayout, startRegistry, type TestRegistry } from '../support/registry.ts';
import { finishJobPod } from '../buildsign/e2e-support.ts';
import { pushModuleImage } from '../support/module-images.ts';
import { privateCluster, startRunnerProcess, type RunnerProcess } from '../runner/e2e-support.ts';
import { waitFor } from '../support/wait.ts';

/**
 * The runner (`kmm-preflight runner`, its own process) running Build Jobs on the real API server and its
 * controller-manager. The registry speaks TLS with the suite's CA, given to the runner by --ca-file only. The
 * loopback cluster has no kubelet: the test ends a Job's Pod by writing its status, as the kubelet would.
 */

const crdDir = resolve(import.meta.dirname, '../../manifests/crds');
const crdFiles = ['module.yaml', 'preflightvalidationocp.yaml'];
const run = randomBytes(3).toString('hex');
const NS = `rbs-${run}`;
const MODULE = 'kmm_ci_a';
const RESOURCE = `rbs-${run}`;
const KANIKO = 'registry.example:5000/kaniko/executor:e2e';

interface ModuleEntry {
  namespace: string;
  name: string;
  verificationStatus: string;
  verificationStage: string;
  statusReason?: string;
}

describe('e2e: runner runs Build Jobs (TLS registry trusted through --ca-file)', function () {
  this.timeout(600_000);
  let dir: string;
  let cluster: TestCluster;
  let client: KubeClient;
  let store: KubeJobStore;
  let registry: TestRegistry;
  let releaseImage: string;
  let kernel: string;
  const runners: RunnerProcess[] = [];

  const startRunner = (): RunnerProcess => {
    const caFile = registry.certificates?.caFile;
    if (caFile === undefined) throw new Error('the registry has no CA');
    const runner = startRunnerProcess([
      '--kubeconfig',
      cluster.kubeconfig,
      '--namespaces',
      NS,
      '--resource-selector',
      `kmm-preflight-e2e=${RESOURCE}`,
      '--ca-file',
      caFile,
      '--pull-secret',
      '',
      '--ops-address',
      '127.0.0.1:0',
      // A failed Job stays failed for the test's duration (the retry would run it again).
      '--retry-interval',
      '10m',
      '--status-batch-delay',
      '300ms',
      '--kaniko-image',
      KANIKO,
      '--job-backoff-limit',
      '0',
    ]);
    runners.push(runner);
    return runner;
  };

  const moduleDoc = (name: string, image: string, build: boolean, sign = false): string =>
    JSON.stringify({
      apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
      kind: 'Module',
      metadata: { name, namespace: NS },
      spec: {
        selector: { 'kmm-preflight-e2e': 'runner-buildsign' },
        moduleLoader: {
          container: {
            modprobe: { moduleName: MODULE },
            kernelMappings: [{ regexp: '^.+$', containerImage: image }],
            ...(build ? { build: { dockerfileConfigMap: { name: 'dockerfile' } } } : {}),
            ...(sign
              ? {
                  sign: {
                    keySecret: { name: 'signing-key' },
                    certSecret: { name: 'signing-cert' },
                    filesToSign: [`/opt/lib/modules/${kernel}/extra/${MODULE}.ko`],
                  },
                }
              : {}),
          },
        },
      },
    });

  const getPreflight = async (): Promise<PreflightValidationOCP> =>
    JSON.parse(await cluster.kubectl(['get', 'pfvo', RESOURCE, '-o', 'json'])) as PreflightValidationOCP;
  const entryWhen = async (name: string, holds: (e: ModuleEntry) => boolean, timeoutMs = 120_000) => {
    let last: ModuleEntry | undefined;
    try {
      return await waitFor(
        `the entry of ${name} to settle`,
        async () => {
          last = (await getPreflight()).status?.modules?.find((m) => m.name === name);
          return last !== undefined && holds(last) ? last : undefined;
        },
        timeoutMs,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; last seen: ${JSON.stringify(last)}`, { cause: err });
    }
  };
  const jobsOf = async (module: string): Promise<Job[]> =>
    (await store.listJobs(NS, { [JobLabel.managedBy]: 'kmm-preflight', [JobLabel.module]: module })).filter(
      (job) => job.metadata.deletionTimestamp === undefined,
    );
  const oneJobOf = (module: string): Promise<Job> =>
    waitFor(`the build Job of ${module}`, async () => {
      const jobs = await jobsOf(module);
      return jobs.length === 1 ? jobs[0] : undefined;
    });

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'rbs-'));
    cluster = await privateCluster(dir);
    const kc = loadKubeConfig(cluster.kubeconfig);
    client = createKubeClient(kc);
    store = new KubeJobStore(client, kc);
    await cluster.kubectl(['apply', ...crdFiles.flatMap((f) => ['-f', join(crdDir, f)])]);
    await waitFor('CRDs established', async () =>
      (await cluster.kubectl(['get', 'pfvo', '-o', 'name']).catch(() => undefined)) === undefined
        ? undefined
        : true,
    );
    registry = await startRegistry('tls');
    const fixture = await buildReleaseFixture({
      dir: join(dir, 'release'),
      componentRepository: `${registry.host}/rbs-ocp/ocp-v4.0-art-dev`,
    });
    const amd64 = fixture.architectures[0];
    if (amd64 === undefined) throw new Error('fixture has no architecture');
    kernel = amd64.driverToolkit.kernelVersion;
    await pushLayout(fixture.driverToolkitLayoutReference, 'rbs-ocp/ocp-v4.0-art-dev:dtk', registry);
    await pushLayout(fixture.releaseLayoutReference, `rbs-ocp/ocp-release:${fixture.releaseTag}`, registry);
    releaseImage = `${registry.host}/rbs-ocp/ocp-release:${fixture.releaseTag}`;
    await pushModuleImage(registry, 'rbs-kmods/good', kernel, { moduleName: MODULE, kernel });

    await cluster.kubectl(['create', 'namespace', NS]);
    await cluster.kubectl(
      ['apply', '-n', NS, '-f', '-'],
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'dockerfile' },
        data: { dockerfile: 'FROM ${DTK_AUTO}\nRUN make\n' },
      }),
    );
    for (const [name, key] of [
      ['signing-key', 'key'],
      ['signing-cert', 'cert'],
    ] as const) {
      await cluster.kubectl(
        ['apply', '-n', NS, '-f', '-'],
        JSON.stringify({
          apiVersion: 'v1',
          kind: 'Secret',
          metadata: { name },
          stringData: { [key]: 'not-a-real-one' },
        }),
      );
    }
    const absent = (name: string): string => `${registry.host}/rbs-kmods/${name}:\${KERNEL_FULL_VERSION}`;
    for (const doc of [
      moduleDoc('present', `${registry.host}/rbs-kmods/good:\${KERNEL_FULL_VERSION}`, false),
      moduleDoc('build-ok', absent('built'), true),
      moduleDoc('build-fails', absent('broken'), true),
      moduleDoc('deleted', absent('deleted'), true),
      moduleDoc('build-sign', absent('signed'), true, true),
    ]) {
      await cluster.kubectl(['apply', '-f', '-'], doc);
    }
    await cluster.kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
        kind: 'PreflightValidationOCP',
        metadata: { name: RESOURCE, labels: { 'kmm-preflight-e2e': RESOURCE } },
        spec: { releaseImage },
      }),
    );
  });

  after(async () => {
    for (const runner of runners) await runner.kill('SIGKILL');
    if (cluster !== undefined) {
      await cluster
        .kubectl(['delete', 'pfvo', RESOURCE, '--ignore-not-found', '--wait=false'])
        .catch(() => undefined);
      await cluster
        .kubectl(['delete', 'namespace', NS, '--ignore-not-found', '--wait=false'])
        .catch(() => undefined);
    }
    await registry?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('verifies an image on the TLS registry with only --ca-file, and starts one build Job per Module', async () => {
    const runner = startRunner();
    const present = await entryWhen('present', (e) => e.verificationStage !== 'Image');
    expect(present, present.statusReason).to.include({
      verificationStatus: 'True',
      verificationStage: 'Done',
    });

    const job = await oneJobOf('build-ok');
    expect(job.metadata.ownerReferences?.[0]).to.include({ kind: 'PreflightValidationOCP', name: RESOURCE });
    const container = job.spec.template.spec.containers[0];
    expect(container?.image).to.equal(KANIKO);
    expect(container?.args).to.include('--no-push');
    const dtk = (await getPreflight()).status?.dtkImage;
    expect(dtk, 'the release resolved its driver-toolkit').to.be.a('string');
    expect(container?.args, 'DTK_AUTO is the release driver-toolkit').to.include(
      `--build-arg=DTK_AUTO=${dtk}`,
    );
    const running = await entryWhen('build-ok', (e) => e.verificationStage === 'Build');
    expect(running.statusReason).to.contain(job.metadata.name);
    await oneJobOf('build-fails');
    expect(runner.other, 'only JSON log lines').to.deep.equal([]);
  });

  it('restarted while the Jobs run, the runner adopts them: no duplicate, and the adopted Job decides', async () => {
    const before = await oneJobOf('build-ok');
    await runners[0]?.kill('SIGKILL');
    const runner = startRunner();
    await runner.waitForLog((l) => l.msg === 'serving /healthz /readyz /metrics');

    await finishJobPod(client, store, KANIKO, NS, before.metadata.name, 'Succeeded', '');
    const built = await entryWhen('build-ok', (e) => e.verificationStatus === 'True');
    expect(built.verificationStage).to.equal('Done');
    expect(built.statusReason).to.contain('not pushed');
    const after = await jobsOf('build-ok');
    expect(after.map((j) => j.metadata.uid)).to.deep.equal([before.metadata.uid]);
  });

  it("a failed build Job is False at Build with its Pod's termination message", async () => {
    const job = await oneJobOf('build-fails');
    const message = 'error building image: RUN make: exit status 2 (missing kernel headers)';
    await finishJobPod(client, store, KANIKO, NS, job.metadata.name, 'Failed', message);
    const failed = await entryWhen('build-fails', (e) => e.statusReason?.includes('exit status 2') === true);
    expect(failed).to.include({ verificationStatus: 'False', verificationStage: 'Build' });
    expect(failed.statusReason).to.contain(message);
    expect(await jobsOf('build-fails'), 'not rerun before the retry interval').to.have.length(1);
  });

  it('build plus sign without pushBuiltImage: a clear failure at once, and no Job', async () => {
    const refused = await entryWhen('build-sign', (e) => e.statusReason?.includes('pushBuiltImage') === true);
    // Reported at Sign, the stage that cannot work; Build never starts.
    expect(refused).to.include({ verificationStatus: 'False', verificationStage: 'Sign' });
    expect(refused.statusReason).to.contain('set spec.pushBuiltImage: true');
    expect(await jobsOf('build-sign')).to.have.length(0);
  });

  it("a deleted Module's entry goes and its Job with it", async () => {
    await oneJobOf('deleted');
    await cluster.kubectl(['delete', 'module', '-n', NS, 'deleted', '--wait=false']);
    await waitFor('the entry of the deleted Module to go', async () =>
      (await getPreflight()).status?.modules?.some((m) => m.name === 'deleted') === true ? undefined : true,
    );
    await waitFor('its Job to go', async () => ((await jobsOf('deleted')).length === 0 ? true : undefined));
    expect(await jobsOf('build-fails'), "other Modules' Jobs stay").to.have.length(1);
  });

  it('pushBuiltImage set on the resource: a pushing Job replaces the old one; what it pushed verifies the module', async () => {
    const before = await oneJobOf('build-ok');
    await cluster.kubectl([
      'patch',
      'pfvo',
      RESOURCE,
      '--type=merge',
      '-p',
      '{"spec":{"pushBuiltImage":true}}',
    ]);
    const job = await waitFor('a pushing build Job for build-ok', async () => {
      const jobs = await jobsOf('build-ok');
      return jobs.length === 1 && jobs[0]?.metadata.uid !== before.metadata.uid ? jobs[0] : undefined;
    });
    const args = job.spec.template.spec.containers[0]?.args ?? [];
    const destination = `${registry.host}/rbs-kmods/built:${kernel}`;
    expect(args).to.include(`--destination=${destination}`);
    expect(args).to.not.include('--no-push');
    // Kaniko's part: the built image lands in the registry, the digest file is left empty.
    await pushModuleImage(registry, 'rbs-kmods/built', kernel, { moduleName: MODULE, kernel });
    await finishJobPod(client, store, KANIKO, NS, job.metadata.name, 'Succeeded', '');
    // The next pass starts at the Image stage, which now finds the pushed image: that is the verdict.
    const verified = await entryWhen(
      'build-ok',
      (e) => e.verificationStatus === 'True' && e.statusReason?.includes('not pushed') === false,
    );
    expect(verified.verificationStage).to.equal('Done');
    expect(verified.statusReason).to.contain(`built for ${kernel}`);
  });

  it('the PreflightValidationOCP deleted: the garbage collector removes its Jobs', async () => {
    const uid = (await getPreflight()).metadata.uid;
    if (uid === undefined) throw new Error('resource without uid');
    const owned = async (): Promise<Job[]> => store.listJobs(NS, { [JobLabel.ownerUid]: uid });
    expect((await owned()).length).to.be.greaterThan(0);
    await cluster.kubectl(['delete', 'pfvo', RESOURCE, '--wait=false']);
    await waitFor(
      'the Jobs to be collected',
      async () => ((await owned()).length === 0 ? true : undefined),
      180_000,
    );
  });
});
