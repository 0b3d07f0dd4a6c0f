import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { PreflightValidationOCP } from '../../src/api/preflight.ts';
import { buildReleaseFixture, type ReleaseFixture } from '../../src/fixtures/release.ts';
import { stopCluster, type TestCluster } from '../support/cluster.ts';
import { pushLayout, startRegistry, type TestRegistry } from '../support/registry.ts';
import { privateCluster, startRunnerProcess, type RunnerProcess } from '../runner/e2e-support.ts';
import { pushModuleImage } from '../support/module-images.ts';
import { waitFor } from '../support/wait.ts';

/**
 * The runner as users run it (`kmm-preflight runner --kubeconfig ...`, its own process) against the real API
 * server and a real registry holding a release payload, its driver-toolkit and module images built by the suite.
 */

const crdDir = resolve(import.meta.dirname, '../../manifests/crds');
const crdFiles = ['module.yaml', 'preflightvalidationocp.yaml'];
const run = randomBytes(3).toString('hex');
const nsA = `rn-${run}-a`;
const nsB = `rn-${run}-b`;
const MODULE = 'kmm_ci_a';

interface ModuleEntry {
  namespace: string;
  name: string;
  verificationStatus: string;
  verificationStage: string;
  statusReason?: string;
  observedGeneration?: number;
}

describe('e2e: runner against the real API server and registry', function () {
  this.timeout(600_000);
  let cluster: TestCluster;
  let registry: TestRegistry;
  let fixture: ReleaseFixture;
  let fixtureDir: string;
  let kernel: string;
  let releaseImage: string;
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
    '--pull-secret',
    '',
    '--ops-address',
    '127.0.0.1:0',
    '--retry-interval',
    '5s',
    '--status-batch-delay',
    '300ms',
    '--relist-interval',
    '30s',
    '--watch-idle-timeout',
    '20s',
    ...extra,
  ];
  const startRunner = (...extra: string[]): RunnerProcess => {
    const runner = startRunnerProcess(runnerArgs(...extra));
    runners.push(runner);
    return runner;
  };

  const moduleYaml = (namespace: string, name: string, image: string, extra: Record<string, unknown> = {}) =>
    JSON.stringify({
      apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
      kind: 'Module',
      metadata: { name, namespace },
      spec: {
        selector: { 'kmm-preflight-e2e': 'runner' },
        moduleLoader: {
          container: {
            modprobe: { moduleName: MODULE },
            kernelMappings: [{ regexp: '^.+$', containerImage: image, registryTLS: { insecure: true } }],
            ...extra,
          },
        },
      },
    });
  const createPreflight = async (name: string): Promise<void> => {
    resources.push(name);
    await cluster.kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
        kind: 'PreflightValidationOCP',
        metadata: { name, labels: { 'kmm-preflight-e2e': `rn-${run}` } },
        spec: { releaseImage },
      }),
    );
  };
  const getPreflight = async (name: string): Promise<PreflightValidationOCP> =>
    JSON.parse(await cluster.kubectl(['get', 'pfvo', name, '-o', 'json'])) as PreflightValidationOCP;
  const entries = async (name: string): Promise<ModuleEntry[]> =>
    (await getPreflight(name)).status?.modules ?? [];
  const entry = (list: ModuleEntry[], namespace: string, name: string): ModuleEntry | undefined =>
    list.find((e) => e.namespace === namespace && e.name === name);
  /** Waits until the resource's status reflects every current module with a verdict. */
  const settled = (name: string, total: number, timeoutMs = 120_000) =>
    waitFor(
      `${name} to hold ${total} settled entries`,
      async () => {
        const resource = await getPreflight(name);
        const status = resource.status;
        const done = (status?.modules ?? []).filter((e) => e.observedGeneration !== undefined).length;
        return status?.total === total && done === total ? resource : undefined;
      },
      timeoutMs,
    );

  /** Modules now in the suite's namespaces (earlier tests add, edit and delete them). */
  const moduleCount = async (): Promise<number> => {
    let count = 0;
    for (const ns of [nsA, nsB]) {
      const out = await cluster.kubectl(['-n', ns, 'get', 'modules', '-o', 'name']);
      count += out.split('\n').filter((line) => line.trim() !== '').length;
    }
    return count;
  };

  before(async () => {
    fixtureDir = await mkdtemp(join(tmpdir(), 'rn-release-'));
    cluster = await privateCluster(fixtureDir);
    await cluster.kubectl(['apply', ...crdFiles.flatMap((f) => ['-f', join(crdDir, f)])]);
    await waitFor('CRDs established', async () => {
      const out = await cluster.kubectl(['get', 'pfvo', '-o', 'name']).catch(() => undefined);
      return out === undefined ? undefined : true;
    });
    registry = await startRegistry('http');
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
    await pushModuleImage(registry, 'rn-kmods/good', kernel, { moduleName: MODULE, kernel });
    await pushModuleImage(registry, 'rn-kmods/old', kernel, {
      moduleName: MODULE,
      kernel,
      builtFor: '5.14.0-284.25.1.el9_2.x86_64',
    });
    for (const ns of [nsA, nsB]) await cluster.kubectl(['create', 'namespace', ns]);
    const good = `${registry.host}/rn-kmods/good:\${KERNEL_FULL_VERSION}`;
    const docs = [
      moduleYaml(nsA, 'drv', good),
      moduleYaml(nsB, 'drv', `${registry.host}/rn-kmods/fixme:\${KERNEL_FULL_VERSION}`),
      moduleYaml(nsA, 'old-build', `${registry.host}/rn-kmods/old:\${KERNEL_FULL_VERSION}`),
      moduleYaml(nsA, 'to-delete', good),
      moduleYaml(nsB, 'needs-build', `${registry.host}/rn-kmods/absent:\${KERNEL_FULL_VERSION}`, {
        build: { dockerfileConfigMap: { name: 'dockerfile' } },
      }),
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
    for (const doc of docs) await cluster.kubectl(['apply', '-f', '-'], doc);
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
      for (const ns of [nsA, nsB]) {
        await cluster
          .kubectl(['delete', 'namespace', ns, '--ignore-not-found', '--wait=false'])
          .catch(() => undefined);
      }
      await cluster
        .kubectl(['-n', 'default', 'delete', 'lease', `rn-${run}-lease`, '--ignore-not-found'])
        .catch(() => undefined);
    }
    await registry?.stop();
    if (fixtureDir !== undefined) await rm(fixtureDir, { recursive: true, force: true });
  });

  it('validates every Module, same name in two namespaces, each to the right status', async () => {
    const runner = startRunner();
    await createPreflight(`rn-${run}-one`);
    const resource = await settled(`rn-${run}-one`, 6);
    const status = resource.status;
    const list = (status?.modules ?? []) as ModuleEntry[];
    expect(status).to.include({
      targetKernel: kernel,
      kernelVersion: kernel,
      total: 6,
      verified: 2,
      failed: 4,
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
    // Build runs in the runner now: the Dockerfile ConfigMap it names does not exist, which only an edit fixes.
    expect(entry(list, nsB, 'needs-build')?.statusReason).to.contain(
      `ConfigMap ${nsB}/dockerfile (build.dockerfileConfigMap) is missing`,
    );

    const ops = await runner.opsAddress();
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
    const logs = JSON.stringify(runner.lines);
    expect(logs).to.not.match(/authorization|password|BEGIN .*PRIVATE KEY/i);
    expect(runner.other, 'only JSON on stdout/stderr').to.deep.equal([]);
  });

  it('a failed module whose image is fixed and whose Module is edited becomes verified', async () => {
    await pushModuleImage(registry, 'rn-kmods/fixme', kernel, { moduleName: MODULE, kernel });
    await cluster.kubectl([
      '-n',
      nsB,
      'patch',
      'module',
      'drv',
      '--type=merge',
      '-p',
      JSON.stringify({
        spec: { moduleLoader: { container: { modprobe: { moduleName: MODULE, parameters: ['x=1'] } } } },
      }),
    ]);
    const fixed = await waitFor('nsB/drv verified', async () => {
      const found = entry(await entries(`rn-${run}-one`), nsB, 'drv');
      return found?.verificationStatus === 'True' ? found : undefined;
    });
    expect(fixed).to.include({ verificationStage: 'Done', observedGeneration: 2 });
  });

  it('a deleted Module loses its entry', async () => {
    await cluster.kubectl(['-n', nsA, 'delete', 'module', 'to-delete']);
    await waitFor('to-delete pruned', async () => {
      const list = await entries(`rn-${run}-one`);
      return entry(list, nsA, 'to-delete') === undefined && list.length === 5 ? true : undefined;
    });
    const resource = await getPreflight(`rn-${run}-one`);
    expect(resource.status).to.include({ total: 5, verified: 2 });
  });

  it('survives an API server restart mid-run and completes', async () => {
    await createPreflight(`rn-${run}-restart`);
    await stopCluster();
    await new Promise((r) => setTimeout(r, 3_000));
    // up.sh can trip over another suite starting the shared cluster at the same moment: try again.
    await waitFor('the API server back', () => privateCluster(fixtureDir).then(() => true), 180_000, 2_000);
    const resource = await settled(`rn-${run}-restart`, await moduleCount(), 180_000);
    expect(resource.status?.verified).to.be.greaterThan(0);
    const restarts = runners[0]?.lines.filter((l) => l.msg === 'watch failed; restarting').length ?? 0;
    expect(restarts, 'watches saw the outage and restarted').to.be.greaterThan(0);
  });

  it('killed mid-run and started again, it completes with no duplicate entries', async () => {
    const first = runners[0];
    if (first === undefined) throw new Error('no runner');
    await createPreflight(`rn-${run}-kill`);
    // Killed as soon as the resource exists: whatever it managed to do is cut off. (With the release and image
    // verdicts cached from the first test, a live runner settles a new resource in well under a second.)
    await first.kill('SIGKILL');
    const second = startRunner();
    await second.opsAddress();
    const total = await moduleCount();
    const resource = await settled(`rn-${run}-kill`, total);
    const keys = (resource.status?.modules ?? []).map((e) => `${e.namespace}/${e.name}`);
    expect(new Set(keys).size).to.equal(keys.length);
    expect(keys).to.have.length(total);
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

  it('refuses bad flags with exit 2 and a message naming the flag', async () => {
    const runner = startRunnerProcess(['--kubeconfig', cluster.kubeconfig, '--concurrency', 'many']);
    const { code } = await runner.exited;
    expect(code).to.equal(2);
    expect(runner.other.join('\n')).to.contain('--concurrency');
  });
});
