import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { PreflightValidationOCP } from '../../src/api/preflight.ts';
import { JobLabel, MANAGED_BY } from '../../src/buildsign/identity.ts';
import type { Job } from '../../src/buildsign/kube-types.ts';
import { buildReleaseFixture, type ReleaseFixture } from '../../src/fixtures/release.ts';
import { createKubeClient, loadKubeConfig, type KubeClient } from '../../src/platform/kube/client.ts';
import { KubeJobStore } from '../../src/runner/jobs/kube-job-store.ts';
import { finishJobPod } from '../buildsign/e2e-support.ts';
import { stopCluster, type TestCluster } from '../support/cluster.ts';
import {
  pushLayout,
  startFaultProxy,
  startRegistry,
  type FaultProxy,
  type TestRegistry,
} from '../support/registry.ts';
import { privateCluster, startRunnerProcess, type RunnerProcess } from '../runner/e2e-support.ts';
import { pushModuleImage } from '../support/module-images.ts';
import { waitFor } from '../support/wait.ts';

/**
 * The runner as users run it (`kmm-preflight runner --kubeconfig ...`, its own process) against the real API
 * server and real registries: a plain-HTTP one holding a release payload, its driver-toolkit and module images
 * built by the suite; a proxy in front of it that holds a repository's manifest until the test lets it through,
 * so "mid-run" is a state the test waits for, not a race; and a TLS registry whose token service trades the
 * password in a Module's imageRepoSecret for Bearer tokens.
 */

const crdDir = resolve(import.meta.dirname, '../../manifests/crds');
const crdFiles = ['module.yaml', 'preflightvalidationocp.yaml'];
const run = randomBytes(3).toString('hex');
const nsA = `rn-${run}-a`;
const nsB = `rn-${run}-b`;
/** The namespace of the moved-tag test, watched only by its own runner. */
const nsMoved = `rn-${run}-moved`;
const MODULE = 'kmm_ci_a';
const KERNEL_TAG = '${KERNEL_FULL_VERSION}';
/**
 * Longer than the whole suite: a failed module is never validated again on the interval while the suite runs, so
 * whatever re-validates it is the change the test made.
 */
const RETRY_INTERVAL = '30m';

interface ModuleEntry {
  namespace: string;
  name: string;
  verificationStatus: string;
  verificationStage: string;
  statusReason?: string;
  observedGeneration?: number;
  lastTransitionTime?: string;
}

describe('e2e: runner against the real API server and registry', function () {
  this.timeout(600_000);
  let cluster: TestCluster;
  let client: KubeClient;
  let jobStore: KubeJobStore;
  let registry: TestRegistry;
  /** In front of `registry`: holds the manifests of chosen repositories. */
  let proxy: FaultProxy;
  let authRegistry: TestRegistry;
  let fixture: ReleaseFixture;
  let fixtureDir: string;
  let kernel: string;
  let releaseImage: string;
  /** The runner started by the first test; it lives through the API server restart. */
  let main: RunnerProcess;
  const runners: RunnerProcess[] = [];
  const resources: string[] = [];

  const runnerArgs = (...extra: string[]): string[] => [
    '--kubeconfig',
    cluster.kubeconfig,
    '--namespaces',
    `${nsA},${nsB}`,
    // The cluster is shared: serve only this suite's resources (other suites run runners too).
    '--resource-selector',
    `kmm-preflight-e2e=rn-${run}`,
    '--insecure-registry',
    registry.host,
    '--insecure-registry',
    proxy.host,
    '--ca-file',
    authRegistry.certificates?.caFile ?? '',
    '--pull-secret',
    '',
    '--ops-address',
    '127.0.0.1:0',
    '--retry-interval',
    RETRY_INTERVAL,
    '--status-batch-delay',
    '300ms',
    // Longer than the suite too: a Module created after the API server restart reaches the runner by a watch.
    '--relist-interval',
    '30m',
    '--watch-idle-timeout',
    '20s',
    // Every line a runner can write is searched for credentials.
    '--log-level',
    'debug',
    ...extra,
  ];
  const startRunner = (...extra: string[]): RunnerProcess => {
    const runner = startRunnerProcess(runnerArgs(...extra));
    runners.push(runner);
    return runner;
  };

  const moduleDoc = (
    namespace: string,
    name: string,
    image: string,
    container: Record<string, unknown> = {},
    spec: Record<string, unknown> = {},
  ): string =>
    JSON.stringify({
      apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
      kind: 'Module',
      metadata: { name, namespace },
      spec: {
        selector: { 'kmm-preflight-e2e': 'runner' },
        ...spec,
        moduleLoader: {
          container: {
            modprobe: { moduleName: MODULE },
            kernelMappings: [
              {
                regexp: '^.+$',
                containerImage: image,
                ...(image.startsWith(authRegistry.host) ? {} : { registryTLS: { insecure: true } }),
              },
            ],
            ...container,
          },
        },
      },
    });
  const apply = (doc: string): Promise<string> => cluster.kubectl(['apply', '-f', '-'], doc);
  /** `label` is the value of the label the runners select resources by (a dedicated runner's differs). */
  const createPreflight = async (name: string, image = releaseImage, label = `rn-${run}`): Promise<void> => {
    resources.push(name);
    await apply(
      JSON.stringify({
        apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
        kind: 'PreflightValidationOCP',
        metadata: { name, labels: { 'kmm-preflight-e2e': label } },
        spec: { releaseImage: image },
      }),
    );
  };
  const getPreflight = async (name: string): Promise<PreflightValidationOCP> =>
    JSON.parse(await cluster.kubectl(['get', 'pfvo', name, '-o', 'json'])) as PreflightValidationOCP;
  const entries = async (name: string): Promise<ModuleEntry[]> =>
    (await getPreflight(name)).status?.modules ?? [];
  const entry = (list: readonly ModuleEntry[], namespace: string, name: string): ModuleEntry | undefined =>
    list.find((e) => e.namespace === namespace && e.name === name);
  /** A verdict for the Module's current generation: final, or failed and retried on the interval. */
  const hasVerdict = (e: ModuleEntry | undefined): boolean => e?.observedGeneration !== undefined;
  /** Waits until `holds` is true of the resource, and says what it last saw when it times out. */
  const preflightWhen = async (
    name: string,
    what: string,
    holds: (resource: PreflightValidationOCP) => boolean,
    timeoutMs = 120_000,
  ): Promise<PreflightValidationOCP> => {
    let last: PreflightValidationOCP | undefined;
    try {
      return await waitFor(
        `${name}: ${what}`,
        async () => {
          last = await getPreflight(name);
          return holds(last) ? last : undefined;
        },
        timeoutMs,
      );
    } catch (err) {
      throw new Error(`${(err as Error).message}; last status: ${JSON.stringify(last?.status?.modules)}`, {
        cause: err,
      });
    }
  };
  /** Waits until the resource's status reflects every current module with a verdict. */
  const settled = (name: string, total: number, timeoutMs = 120_000) =>
    preflightWhen(
      name,
      `${total} settled entries`,
      ({ status }) => status?.total === total && (status.modules ?? []).filter(hasVerdict).length === total,
      timeoutMs,
    );
  /** Mid-run: every Module has its entry, and exactly those named in `pending` (`ns/name`) have no verdict yet. */
  const midRun = (name: string, total: number, pending: readonly string[]) =>
    preflightWhen(name, `every entry but ${pending.join(', ')} settled`, ({ status }) => {
      const list = status?.modules ?? [];
      const waiting = list.filter((e) => !hasVerdict(e)).map((e) => `${e.namespace}/${e.name}`);
      return list.length === total && waiting.sort().join() === [...pending].sort().join();
    });

  /** Modules now in the suite's namespaces (tests add, edit and delete them). */
  const moduleCount = async (): Promise<number> => {
    let count = 0;
    for (const ns of [nsA, nsB]) {
      const out = await cluster.kubectl(['-n', ns, 'get', 'modules', '-o', 'name']);
      count += out.split('\n').filter((line) => line.trim() !== '').length;
    }
    return count;
  };
  /** Build and Sign Jobs the runners made in the suite's namespaces, not being deleted. */
  const runnerJobs = async (): Promise<Job[]> => {
    const jobs: Job[] = [];
    for (const ns of [nsA, nsB])
      jobs.push(...(await jobStore.listJobs(ns, { [JobLabel.managedBy]: MANAGED_BY })));
    return jobs.filter((job) => job.metadata.deletionTimestamp === undefined);
  };
  const jobsOf = async (resource: string, module: string): Promise<Job[]> => {
    const uid = (await getPreflight(resource)).metadata.uid;
    return (await runnerJobs()).filter(
      (job) =>
        job.metadata.labels?.[JobLabel.ownerUid] === uid && job.metadata.labels?.[JobLabel.module] === module,
    );
  };
  /** An image reached through the proxy, which can hold its manifest and counts the requests for it. */
  const proxiedImage = (repository: string): string => `${proxy.host}/${repository}:${KERNEL_TAG}`;
  const manifestsOf = (repository: string): RegExp => new RegExp(`^/v2/${repository}/manifests/`);

  /** The credential of `authRegistry` in every form a log line could carry it, and the tokens it bought. */
  const credentialForms = (): string[] => {
    const password = authRegistry.password;
    const auth = authRegistry.dockerConfig.auths[authRegistry.host]?.auth;
    if (password === undefined || auth === undefined) throw new Error('the auth registry has no credential');
    const tokens = authRegistry.tokens ?? [];
    // A log line could carry a token whole or cut short: its signature is the part that must never show.
    const signatures = tokens.map((token) => token.slice(token.lastIndexOf('.') + 1));
    return [
      password,
      auth,
      Buffer.from(JSON.stringify(authRegistry.dockerConfig)).toString('base64'),
      ...tokens,
      ...signatures,
    ];
  };
  const expectNoCredentialIn = (runner: RunnerProcess): void => {
    const text = [...runner.lines.map((l) => JSON.stringify(l)), ...runner.other].join('\n');
    for (const secret of credentialForms())
      expect(text.includes(secret), 'a credential in a log line').to.equal(false);
    expect(text).to.not.match(/\bBearer\s+[A-Za-z0-9._~+/-]{8,}|\bBasic\s+[A-Za-z0-9+/]{8,}/);
    expect(text).to.not.match(/BEGIN .*PRIVATE KEY/);
  };

  before(async () => {
    fixtureDir = await mkdtemp(join(tmpdir(), 'rn-release-'));
    cluster = await privateCluster(fixtureDir);
    const kc = loadKubeConfig(cluster.kubeconfig);
    client = createKubeClient(kc);
    jobStore = new KubeJobStore(client, kc);
    await cluster.kubectl(['apply', ...crdFiles.flatMap((f) => ['-f', join(crdDir, f)])]);
    await waitFor('CRDs established', async () => {
      const out = await cluster.kubectl(['get', 'pfvo', '-o', 'name']).catch(() => undefined);
      return out === undefined ? undefined : true;
    });
    registry = await startRegistry('http');
    proxy = await startFaultProxy(registry, []);
    authRegistry = await startRegistry('tls-token');
    fixture = await buildReleaseFixture({
      dir: fixtureDir,
      componentRepository: `${registry.host}/rn-ocp/ocp-v4.0-art-dev`,
    });
    const amd64 = fixture.architectures[0];
    if (amd64 === undefined) throw new Error('fixture has no architecture');
    kernel = amd64.driverToolkit.kernelVersion;
    await pushLayout(fixture.driverToolkitLayoutReference, 'rn-ocp/ocp-v4.0-art-dev:dtk', registry);
    await pushLayout(fixture.releaseLayoutReference, `rn-ocp/ocp-release:${fixture.releaseTag}`, registry);
    releaseImage = `${registry.host}/rn-ocp/ocp-release:${fixture.releaseTag}`;
    const content = { moduleName: MODULE, kernel };
    for (const repository of ['rn-kmods/good', 'rn-kmods/slow-restart', 'rn-kmods/slow-kill']) {
      await pushModuleImage(registry, repository, kernel, content);
    }
    await pushModuleImage(registry, 'rn-kmods/old', kernel, {
      ...content,
      builtFor: '5.14.0-284.25.1.el9_2.x86_64',
    });
    await pushModuleImage(authRegistry, 'rn-kmods/private', kernel, content);
    for (const ns of [nsA, nsB]) await cluster.kubectl(['create', 'namespace', ns]);
    await apply(
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'kubernetes.io/dockerconfigjson',
        metadata: { name: 'registry-credentials', namespace: nsA },
        data: {
          '.dockerconfigjson': Buffer.from(JSON.stringify(authRegistry.dockerConfig)).toString('base64'),
        },
      }),
    );
    const good = `${registry.host}/rn-kmods/good:${KERNEL_TAG}`;
    const privateImage = `${authRegistry.host}/rn-kmods/private:${KERNEL_TAG}`;
    const docs = [
      moduleDoc(nsA, 'drv', good),
      // Behind the proxy, so the test can count the runner's checks of this image.
      moduleDoc(nsB, 'drv', proxiedImage('rn-kmods/fixme')),
      moduleDoc(nsA, 'old-build', `${registry.host}/rn-kmods/old:${KERNEL_TAG}`),
      moduleDoc(nsA, 'to-delete', good),
      moduleDoc(nsB, 'needs-build', `${registry.host}/rn-kmods/absent:${KERNEL_TAG}`, {
        build: { dockerfileConfigMap: { name: 'dockerfile' } },
      }),
      // The same private image with the credential (imageRepoSecret) and without it.
      moduleDoc(nsA, 'private', privateImage, {}, { imageRepoSecret: { name: 'registry-credentials' } }),
      moduleDoc(nsB, 'private', privateImage),
      JSON.stringify({
        apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
        kind: 'Module',
        metadata: { name: 'nomap', namespace: nsB },
        spec: {
          selector: {},
          moduleLoader: {
            container: {
              modprobe: { moduleName: MODULE },
              kernelMappings: [{ literal: '4.18.0-1.el8.x86_64', containerImage: good }],
            },
          },
        },
      }),
    ];
    for (const doc of docs) await apply(doc);
  });

  after(async () => {
    for (const runner of runners) await runner.kill('SIGKILL');
    if (cluster !== undefined) {
      await privateCluster(fixtureDir);
      for (const name of resources) {
        await cluster
          .kubectl(['delete', 'pfvo', name, '--ignore-not-found', '--wait=false'])
          .catch(() => undefined);
      }
      for (const ns of [nsA, nsB, nsMoved]) {
        await cluster
          .kubectl(['delete', 'namespace', ns, '--ignore-not-found', '--wait=false'])
          .catch(() => undefined);
      }
      await cluster
        .kubectl(['-n', 'default', 'delete', 'lease', `rn-${run}-lease`, '--ignore-not-found'])
        .catch(() => undefined);
    }
    await proxy?.close();
    await registry?.stop();
    await authRegistry?.stop();
    if (fixtureDir !== undefined) await rm(fixtureDir, { recursive: true, force: true });
  });

  it('validates every Module, same name in two namespaces, each to the right status', async () => {
    const tokensForThePush = authRegistry.tokens?.length ?? 0;
    main = startRunner();
    await createPreflight(`rn-${run}-one`);
    const resource = await settled(`rn-${run}-one`, 8);
    const status = resource.status;
    const list = (status?.modules ?? []) as ModuleEntry[];
    expect(status).to.include({
      targetKernel: kernel,
      kernelVersion: kernel,
      total: 8,
      verified: 3,
      failed: 5,
    });
    expect(status?.releaseVersion).to.equal(fixture.version);
    expect(status?.conditions?.find((c) => c.type === 'KernelResolved')).to.include({ status: 'True' });
    expect(status?.conditions?.find((c) => c.type === 'Complete')).to.include({
      status: 'False',
      reason: 'ModulesFailed',
    });
    expect(entry(list, nsA, 'drv')).to.include({ verificationStatus: 'True', verificationStage: 'Done' });
    expect(entry(list, nsA, 'to-delete')).to.include({ verificationStatus: 'True' });
    expect(entry(list, nsB, 'drv')).to.include({ verificationStatus: 'False', verificationStage: 'Image' });
    expect(entry(list, nsB, 'drv')?.statusReason).to.match(/not|exist|found/i);
    expect(entry(list, nsA, 'old-build')).to.include({
      verificationStatus: 'False',
      verificationStage: 'Image',
    });
    expect(entry(list, nsA, 'old-build')?.statusReason).to.contain('5.14.0-284');
    expect(entry(list, nsB, 'nomap')).to.include({
      verificationStatus: 'False',
      verificationStage: 'Done',
      statusReason: `no kernel mapping matches ${kernel}`,
    });
    expect(entry(list, nsB, 'needs-build')).to.include({
      verificationStatus: 'False',
      verificationStage: 'Build',
    });
    // The Dockerfile ConfigMap the build names does not exist: no Job, and a reason saying what to create. It
    // can appear without an edit of the Module, so this failure is retried on the interval, not final.
    expect(entry(list, nsB, 'needs-build')?.statusReason).to.contain(
      `ConfigMap ${nsB}/dockerfile (build.dockerfileConfigMap) is missing`,
    );
    // The private image verifies only through the Module's imageRepoSecret (a Bearer token bought with it).
    expect(authRegistry.tokens?.length, 'tokens issued to the runner').to.be.greaterThan(tokensForThePush);
    const withSecret = entry(list, nsA, 'private');
    expect(withSecret, withSecret?.statusReason).to.include({
      verificationStatus: 'True',
      verificationStage: 'Done',
    });
    expect(entry(list, nsB, 'private')).to.include({
      verificationStatus: 'False',
      verificationStage: 'Image',
    });
    expect(entry(list, nsB, 'private')?.statusReason).to.match(/^access to \S+ denied/);

    const ops = await main.opsAddress();
    const ready = await fetch(`http://${ops}/readyz`);
    expect(ready.status).to.equal(200);
    const metrics = await (await fetch(`http://${ops}/metrics`)).text();
    expect(metrics).to.match(/kmm_preflight_reconcile_total\{result="\w+"\} \d+/);
    expect(metrics).to.match(/kmm_preflight_module_verdicts_total\{status="True",stage="Done"\} [1-9]/);
    expect(metrics).to.match(/kmm_preflight_registry_requests_total\{kind="manifest"\} [1-9]/);
    const events = await cluster.kubectl([
      'get',
      'events',
      '-n',
      'default',
      '--field-selector',
      `involvedObject.name=rn-${run}-one`,
      '-o',
      'jsonpath={.items[*].reason}',
    ]);
    expect(events.split(' ')).to.include.members(['KernelResolved', 'ModuleVerified', 'ModuleFailed']);
    expectNoCredentialIn(main);
    expect(main.other, 'only JSON on stdout/stderr').to.deep.equal([]);
  });

  it('a failed module whose image is fixed stays failed until its Module is edited, then becomes verified', async () => {
    const name = `rn-${run}-one`;
    const fixme = manifestsOf('rn-kmods/fixme');
    const checksOfFixme = (): number => proxy.requests.filter((r) => fixme.test(r.path)).length;
    const patchParameters = (namespace: string, module: string): Promise<string> =>
      cluster.kubectl([
        '-n',
        namespace,
        'patch',
        'module',
        module,
        '--type=merge',
        '-p',
        JSON.stringify({
          spec: { moduleLoader: { container: { modprobe: { moduleName: MODULE, parameters: ['x=1'] } } } },
        }),
      ]);
    expect(entry(await entries(name), nsB, 'drv')).to.include({
      verificationStatus: 'False',
      observedGeneration: 1,
    });
    const checksBefore = checksOfFixme();
    expect(checksBefore, 'the first pass checked the image').to.be.greaterThan(0);
    await pushModuleImage(registry, 'rn-kmods/fixme', kernel, { moduleName: MODULE, kernel });

    // Another Module's edit makes the runner reconcile the resource and start what is due, before it writes
    // that Module's new verdict. The retry interval outlasts the suite, so nsB/drv is not due: not checked.
    await patchParameters(nsA, 'old-build');
    await preflightWhen(
      name,
      'nsA/old-build validated again',
      ({ status }) => entry(status?.modules ?? [], nsA, 'old-build')?.observedGeneration === 2,
    );
    expect(checksOfFixme(), 'nsB/drv not checked again without an edit').to.equal(checksBefore);
    expect(entry(await entries(name), nsB, 'drv')).to.include({
      verificationStatus: 'False',
      observedGeneration: 1,
    });

    await patchParameters(nsB, 'drv');
    const fixed = await preflightWhen(
      name,
      'nsB/drv verified',
      ({ status }) => entry(status?.modules ?? [], nsB, 'drv')?.verificationStatus === 'True',
    );
    expect(entry(fixed.status?.modules ?? [], nsB, 'drv')).to.include({
      verificationStage: 'Done',
      observedGeneration: 2,
    });
    expect(checksOfFixme(), 'the edit made the runner check the image').to.be.greaterThan(checksBefore);
  });

  it('a deleted Module loses its entry', async () => {
    await cluster.kubectl(['-n', nsA, 'delete', 'module', 'to-delete']);
    await waitFor('to-delete pruned', async () => {
      const list = await entries(`rn-${run}-one`);
      return entry(list, nsA, 'to-delete') === undefined && list.length === 7 ? true : undefined;
    });
    const resource = await getPreflight(`rn-${run}-one`);
    expect(resource.status).to.include({ total: 7, verified: 3 });
  });

  it('the API server restarted mid-run: the same runner process completes the run and its watches recover', async () => {
    const name = `rn-${run}-restart`;
    const slowManifests = manifestsOf('rn-kmods/slow-restart');
    const checksOfSlow = (): number => proxy.requests.filter((r) => slowManifests.test(r.path)).length;
    const hold = proxy.hold(slowManifests);
    await apply(moduleDoc(nsA, 'slow-restart', proxiedImage('rn-kmods/slow-restart')));
    await createPreflight(name);
    const total = await moduleCount();
    await hold.reached;
    await midRun(name, total, [`${nsA}/slow-restart`]);
    const pid = main.child.pid;
    const failuresBefore = main.lines.filter((l) => l.msg === 'watch failed; restarting').length;

    await stopCluster();
    // The validation in flight finishes while the API server is down: its result must not be lost.
    const checksHeld = checksOfSlow();
    hold.release();
    // up.sh can trip over another suite starting the shared cluster at the same moment: try again.
    await waitFor('the API server back', () => privateCluster(fixtureDir).then(() => true), 180_000, 2_000);

    const resource = await settled(name, total, 180_000);
    expect(entry(resource.status?.modules ?? [], nsA, 'slow-restart')).to.include({
      verificationStatus: 'True',
      verificationStage: 'Done',
    });
    expect(resource.status).to.include({ total, verified: 4 });
    expect(checksOfSlow(), 'the verdict reached during the outage was kept, not checked again').to.equal(
      checksHeld,
    );
    expect(main.child.pid).to.equal(pid);
    expect(main.child.exitCode, 'the runner process lives on').to.equal(null);
    expect(main.child.signalCode).to.equal(null);
    const restarts = main.lines.filter((l) => l.msg === 'watch failed; restarting').slice(failuresBefore);
    expect(
      restarts.map((l) => String(l['resource'])),
      'the Module watches saw the outage and restarted',
    ).to.include.members([`modules@${nsA}`, `modules@${nsB}`]);

    // The relist interval outlasts the suite: a Module created now reaches the runner through a watch.
    await apply(moduleDoc(nsB, 'after-restart', `${registry.host}/rn-kmods/good:${KERNEL_TAG}`));
    const picked = await preflightWhen(
      name,
      'nsB/after-restart verified',
      ({ status }) => entry(status?.modules ?? [], nsB, 'after-restart')?.verificationStatus === 'True',
    );
    expect(picked.status).to.include({ total: total + 1 });
    expect(main.child.exitCode).to.equal(null);
  });

  it('the runner killed mid-run and started again completes the run and adopts its Job: no duplicates', async () => {
    const name = `rn-${run}-kill`;
    await apply(
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'dockerfile', namespace: nsA },
        data: { dockerfile: 'FROM ${DTK_AUTO}\nRUN make\n' },
      }),
    );
    const hold = proxy.hold(manifestsOf('rn-kmods/slow-kill'));
    await apply(moduleDoc(nsA, 'slow-kill', proxiedImage('rn-kmods/slow-kill')));
    await apply(
      moduleDoc(nsA, 'builds', `${registry.host}/rn-kmods/built:${KERNEL_TAG}`, {
        build: { dockerfileConfigMap: { name: 'dockerfile' } },
      }),
    );
    await createPreflight(name);
    const total = await moduleCount();
    await hold.reached;
    // Mid-run: one image check held at the registry, one build Job running, every other entry settled.
    const job = await waitFor('the build Job of nsA/builds', async () => {
      const jobs = await jobsOf(name, 'builds');
      return jobs.length === 1 ? jobs[0] : undefined;
    });
    await preflightWhen(name, 'nsA/builds at Build, naming its Job', ({ status }) =>
      (entry(status?.modules ?? [], nsA, 'builds')?.statusReason ?? '').includes(job.metadata.name),
    );
    await midRun(name, total, [`${nsA}/builds`, `${nsA}/slow-kill`]);

    await main.kill('SIGKILL');
    const second = startRunner();
    await second.opsAddress();
    hold.release();
    const image = job.spec.template.spec.containers[0]?.image ?? '';
    await finishJobPod(client, jobStore, image, nsA, job.metadata.name, 'Succeeded', '');
    const resource = await settled(name, total);
    const list = (resource.status?.modules ?? []) as ModuleEntry[];
    expect(entry(list, nsA, 'slow-kill')).to.include({
      verificationStatus: 'True',
      verificationStage: 'Done',
    });
    expect(entry(list, nsA, 'builds')).to.include({ verificationStatus: 'True', verificationStage: 'Done' });
    expect(entry(list, nsA, 'builds')?.statusReason).to.contain('not pushed');
    const keys = list.map((e) => `${e.namespace}/${e.name}`);
    expect(new Set(keys).size).to.equal(keys.length);
    expect(keys).to.have.length(total);

    // The restarted runner adopted the Job of the killed one: the same object, and no other.
    expect((await jobsOf(name, 'builds')).map((j) => j.metadata.uid)).to.deep.equal([job.metadata.uid]);
    // Every resource has at most one Job per Module (the others started theirs for nsA/builds too).
    const perOwnerAndModule = new Map<string, number>();
    for (const j of await runnerJobs()) {
      const key = `${j.metadata.labels?.[JobLabel.ownerUid]}/${j.metadata.labels?.[JobLabel.module]}`;
      perOwnerAndModule.set(key, (perOwnerAndModule.get(key) ?? 0) + 1);
    }
    expect(
      [...perOwnerAndModule.values()].every((n) => n === 1),
      JSON.stringify([...perOwnerAndModule]),
    ).to.equal(true);

    // The build Module goes (the other resources' Jobs with it), so later tests see only settled entries.
    await cluster.kubectl(['-n', nsA, 'delete', 'module', 'builds']);
    await waitFor('the Jobs of nsA/builds removed', async () =>
      (await runnerJobs()).length === 0 ? true : undefined,
    );
    await second.kill('SIGTERM');
    expect(await second.exited, JSON.stringify(second.lines.slice(-8).map((l) => l.msg))).to.deep.include({
      code: 0,
    });
  });

  it('two runners with leader election: one works, the other takes over when it dies; SIGTERM releases the Lease', async () => {
    const lease = `rn-${run}-lease`;
    const electionArgs = [
      '--leader-elect',
      '--leader-election-namespace',
      'default',
      '--leader-election-id',
      lease,
      '--lease-duration',
      '4s',
      '--renew-deadline',
      '3s',
      '--retry-period',
      '1s',
    ];
    const a = startRunner(...electionArgs);
    const b = startRunner(...electionArgs);
    const holder = async (): Promise<string | undefined> => {
      const out = await cluster.kubectl([
        '-n',
        'default',
        'get',
        'lease',
        lease,
        '-o',
        'jsonpath={.spec.holderIdentity}',
      ]);
      return out === '' ? undefined : out;
    };
    const firstHolder = await waitFor('a leader', holder);
    const leader = [a, b].find((r) =>
      r.lines.some((l) => l.msg === 'became leader' && l['identity'] === firstHolder),
    );
    const standby = leader === a ? b : a;
    expect(leader, `the leader's process (${firstHolder})`).to.not.equal(undefined);
    await createPreflight(`rn-${run}-leader`);
    await settled(`rn-${run}-leader`, await moduleCount());
    expect(
      standby.lines.some((l) => l.msg === 'became leader'),
      'the standby does not work',
    ).to.equal(false);
    const standbyReady = await fetch(`http://${await standby.opsAddress()}/readyz`);
    expect(standbyReady.status, 'a synced standby is ready').to.equal(200);

    await leader?.kill('SIGKILL');
    await standby.waitForLog((l) => l.msg === 'became leader', 30_000);
    await createPreflight(`rn-${run}-failover`);
    await settled(`rn-${run}-failover`, await moduleCount());

    await standby.kill('SIGTERM');
    expect(await standby.exited).to.deep.include({ code: 0 });
    expect(
      await cluster.kubectl([
        '-n',
        'default',
        'get',
        'lease',
        lease,
        '-o',
        'jsonpath={.spec.holderIdentity}',
      ]),
    ).to.equal('');
    const released = standby.lines.some((l) => l.msg === 'released the Lease');
    expect(released).to.equal(true);
  });

  it('a release tag moved to a release with another kernel: the resource gets the new kernel, every Module is validated again', async () => {
    const name = `rn-${run}-moved`;
    const movingRelease = `${registry.host}/rn-ocp/ocp-release:moving`;
    const movedKernel = '5.14.0-570.12.1.el9_6.x86_64';
    const image = (repository: string): string => `${registry.host}/${repository}:${KERNEL_TAG}`;
    // 'dropped' has an image for the first kernel only, 'added' for the second only: both verdicts flip.
    await pushModuleImage(registry, 'rn-kmods/dropped', kernel, { moduleName: MODULE, kernel });
    await pushModuleImage(registry, 'rn-kmods/added', movedKernel, {
      moduleName: MODULE,
      kernel: movedKernel,
    });
    await pushLayout(fixture.releaseLayoutReference, 'rn-ocp/ocp-release:moving', registry);
    await cluster.kubectl(['create', 'namespace', nsMoved]);
    await apply(moduleDoc(nsMoved, 'dropped', image('rn-kmods/dropped')));
    await apply(moduleDoc(nsMoved, 'added', image('rn-kmods/added')));
    // Its own runner: only this namespace and this resource, and a retry interval short enough to see the tag
    // move (the suite's is longer than the suite). The flags given last win.
    const runner = startRunner(
      '--namespaces',
      nsMoved,
      '--resource-selector',
      `kmm-preflight-e2e=${name}`,
      '--retry-interval',
      '2s',
    );
    await createPreflight(name, movingRelease, name);
    const verdicts = (resource: PreflightValidationOCP): string[] =>
      ['added', 'dropped'].map((module) => {
        const e = entry(resource.status?.modules ?? [], nsMoved, module);
        return `${module}=${e?.verificationStatus}/${e?.verificationStage}`;
      });
    const first = await preflightWhen(
      name,
      `both Modules validated for ${kernel}`,
      (r) =>
        r.status?.kernelVersion === kernel && verdicts(r).join() === 'added=False/Image,dropped=True/Done',
    );
    expect(entry(first.status?.modules ?? [], nsMoved, 'added')?.statusReason).to.contain(
      `rn-kmods/added:${kernel} does not exist`,
    );

    const moved = await buildReleaseFixture({
      dir: join(fixtureDir, 'moved'),
      version: '4.19.1',
      componentRepository: `${registry.host}/rn-ocp/ocp-v4.0-art-dev`,
      driverToolkit: () => ({ kernelVersion: movedKernel, rtKernelVersion: `${movedKernel}+rt` }),
    });
    await pushLayout(moved.driverToolkitLayoutReference, 'rn-ocp/ocp-v4.0-art-dev:dtk-moved', registry);
    await pushLayout(moved.releaseLayoutReference, 'rn-ocp/ocp-release:moving', registry);

    const second = await preflightWhen(
      name,
      `both Modules validated again for ${movedKernel}`,
      (r) =>
        r.status?.kernelVersion === movedKernel &&
        verdicts(r).join() === 'added=True/Done,dropped=False/Image',
    );
    const status = second.status;
    expect(status).to.include({
      releaseVersion: '4.19.1',
      releaseDigest: moved.releaseDigest,
      targetKernel: movedKernel,
      total: 2,
      verified: 1,
      failed: 1,
    });
    expect(status?.conditions?.find((c) => c.type === 'KernelResolved')).to.include({ status: 'True' });
    expect(status?.conditions?.find((c) => c.type === 'KernelResolved')?.message).to.contain(
      `kernel ${movedKernel}`,
    );
    const list = (status?.modules ?? []) as ModuleEntry[];
    expect(entry(list, nsMoved, 'added')?.statusReason).to.contain(`(built for ${movedKernel}`);
    expect(entry(list, nsMoved, 'dropped')?.statusReason).to.contain(
      `rn-kmods/dropped:${movedKernel} does not exist`,
    );
    const tagMoved = runner.lines.find((l) => l.msg === 'release tag moved to another digest');
    expect(tagMoved).to.include({ digest: moved.releaseDigest, previousKernel: kernel, kernel: movedKernel });

    await runner.kill('SIGTERM');
    expect(await runner.exited).to.deep.include({ code: 0 });
  });

  it('refuses bad flags with exit 2 and a message naming the flag', async () => {
    const runner = startRunnerProcess(['--kubeconfig', cluster.kubeconfig, '--concurrency', 'many']);
    const { code } = await runner.exited;
    expect(code).to.equal(2);
    expect(runner.other.join('\n')).to.contain('--concurrency');
  });

  it('no runner wrote the registry credential, in any form, to any log line (debug included)', () => {
    expect(runners.length).to.be.greaterThan(3);
    for (const runner of runners) expectNoCredentialIn(runner);
    const debugLines = runners.flatMap((r) => r.lines).filter((l) => l.level === 'debug');
    expect(debugLines.length, 'debug lines were written and searched').to.be.greaterThan(0);
  });
});
