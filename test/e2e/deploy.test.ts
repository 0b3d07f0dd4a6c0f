import { expect } from 'chai';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { JobLabel } from '../../src/buildsign/identity.ts';
import { buildReleaseFixture, type ReleaseFixture } from '../../src/fixtures/release.ts';
import { createKubeClient, loadKubeConfig } from '../../src/platform/kube/client.ts';
import { KubeJobStore } from '../../src/runner/jobs/kube-job-store.ts';
import { finishJobPod } from '../buildsign/e2e-support.ts';
import { ensureCluster, kubectl as kubectlWith } from '../support/cluster.ts';
import { pushModuleImage } from '../support/module-images.ts';
import { pushLayout, startRegistry, type TestRegistry } from '../support/registry.ts';
import {
  manifestsDir,
  renderOverlays,
  type ManifestDocument,
  type RenderedOverlays,
} from '../manifests/render.ts';
import { waitFor } from '../support/wait.ts';
import { freePort } from '../support/ports.ts';

/**
 * The shipped install on the real API server: the CRDs and the self-signed overlay apply (kubectl validates every
 * object against the server's own OpenAPI schema on the way), `kubectl get pfvo` shows the printer columns,
 * `kubectl auth can-i` shows what each ServiceAccount may and may not do, and the webhook and the runner run from
 * this checkout under their ServiceAccounts' own tokens (TokenRequest API) with exactly the shipped RBAC, doing
 * their job: the webhook refuses and admits through the API server, the runner takes the Lease, reads the pull
 * Secrets, verifies one Module, fails another, writes the status and records Events.
 *
 * The API server is shared with other suites: the webhook configuration is registered with failurePolicy Ignore
 * (it cannot block anyone if this process dies) and an objectSelector for this suite's own objects (it never judges
 * another suite's), and deleted first on the way out; everything created is deleted.
 * The CRDs stay: other suites apply the same ones, and deleting a CRD would delete their resources.
 */

const NAMESPACE = 'kmm-preflight';
const MODULES_NAMESPACE = 'kmm-deploy-e2e';
const PREFLIGHT = 'kmm-deploy-e2e';
/** On every object this suite creates; the webhook is registered for these only. */
const SUITE_LABEL = { 'kmm-preflight.e2e/suite': 'deploy' };
const CLI = resolve(import.meta.dirname, '../../bin/kmm-preflight.js');
const CRDS = ['preflightvalidationocp.yaml', 'module.yaml'].map((file) => join(manifestsDir, 'crds', file));
const SERVICE_ACCOUNT_GROUPS = [
  'system:serviceaccounts',
  `system:serviceaccounts:${NAMESPACE}`,
  'system:authenticated',
];

type KubeObject = Record<string, unknown> & {
  kind: string;
  apiVersion: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
};

/** A `kmm-preflight` subcommand run from this checkout as a separate process, as a user would start it. */
class CliProcess {
  readonly #child: ChildProcess;
  #output = '';
  #exited: Promise<number | null>;

  constructor(args: readonly string[], env: NodeJS.ProcessEnv) {
    this.#child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: 'pipe' });
    this.#child.stdout?.on('data', (chunk: Buffer) => (this.#output += chunk.toString()));
    this.#child.stderr?.on('data', (chunk: Buffer) => (this.#output += chunk.toString()));
    this.#exited = new Promise((done) => this.#child.once('exit', (code) => done(code)));
  }

  get output(): string {
    return this.#output;
  }

  get running(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  /** SIGTERM, as the kubelet stops a pod; SIGKILL if it has not exited within 20 s. */
  async stop(): Promise<number | null> {
    if (!this.running) return this.#child.exitCode;
    this.#child.kill('SIGTERM');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 20_000);
    try {
      return await this.#exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Lines of a process's output where the API server refused it: RBAC missing something it does. */
function forbiddenLines(output: string): string[] {
  return output.split('\n').filter((line) => /forbidden|\b403\b/i.test(line));
}

describe('deployment: the shipped manifests and RBAC on the real API server', function () {
  this.timeout(180_000);
  /** This suite's copy of the admin kubeconfig (see before). */
  let adminKubeconfig: string | undefined;
  let workDir: string;
  let rendered: RenderedOverlays;
  let registry: TestRegistry | undefined;
  let release: ReleaseFixture;
  let webhook: CliProcess | undefined;
  let runner: CliProcess | undefined;
  /** Rendered kinds this server does not serve, and the objects applied in `before`. */
  let skippedKinds: string[] = [];
  let applied: KubeObject[] = [];
  const kubeconfigs: Record<'runner' | 'webhook', string> = { runner: '', webhook: '' };

  const kubectl = (args: readonly string[], input?: string): Promise<string> =>
    kubectlWith(adminKubeconfig!, args, input);
  const apply = (objects: readonly unknown[]): Promise<string> =>
    kubectl(['apply', '-f', '-'], objects.map((o) => stringify(o)).join('---\n'));

  /** kubectl auth can-i as the ServiceAccount with the groups its token carries: 'yes' or 'no'. */
  async function canI(account: 'runner' | 'webhook', args: readonly string[]): Promise<string> {
    const as = [
      `--as=system:serviceaccount:${NAMESPACE}:${account}`,
      ...SERVICE_ACCOUNT_GROUPS.map((g) => `--as-group=${g}`),
    ];
    return new Promise((done, fail) => {
      execFile(
        'kubectl',
        ['--kubeconfig', adminKubeconfig!, 'auth', 'can-i', ...args, ...as],
        (err, stdout, stderr) => {
          const answer = stdout.trim();
          if (answer === 'yes' || answer === 'no') done(answer);
          else fail(new Error(`kubectl auth can-i ${args.join(' ')}: ${stderr || (err?.message ?? '')}`));
        },
      );
    });
  }

  /**
   * The same question as a SubjectAccessReview, for APIs this server does not serve (OpenShift's mirror
   * configuration): kubectl auth can-i resolves resource names through discovery and cannot name those.
   */
  async function reviewAccess(
    account: 'runner' | 'webhook',
    verb: string,
    group: string,
    resource: string,
  ): Promise<string> {
    const review = {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SubjectAccessReview',
      spec: {
        user: `system:serviceaccount:${NAMESPACE}:${account}`,
        groups: SERVICE_ACCOUNT_GROUPS,
        resourceAttributes: { verb, group, resource },
      },
    };
    const answer = JSON.parse(await kubectl(['create', '-o', 'json', '-f', '-'], JSON.stringify(review))) as {
      status: { allowed: boolean };
    };
    return answer.status.allowed ? 'yes' : 'no';
  }

  /** A kubeconfig that authenticates with a fresh token of the ServiceAccount (TokenRequest API), nothing else. */
  async function serviceAccountKubeconfig(account: 'runner' | 'webhook'): Promise<string> {
    const admin = parse(await readFile(adminKubeconfig!, 'utf8')) as {
      clusters: { cluster: { server: string; 'certificate-authority-data': string } }[];
    };
    const server = admin.clusters[0]!.cluster;
    // POST serviceaccounts/<name>/token directly (what `kubectl create token` does, but any kubectl can send it).
    const request = {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: 3600 },
    };
    const path = `/api/v1/namespaces/${NAMESPACE}/serviceaccounts/${account}/token`;
    const response = JSON.parse(
      await kubectl(['create', '--raw', path, '-f', '-'], JSON.stringify(request)),
    ) as {
      status: { token: string };
    };
    const token = response.status.token;
    const file = join(workDir, `${account}.kubeconfig`);
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'e2e', cluster: server }],
      users: [{ name: account, user: { token } }],
      contexts: [{ name: account, context: { cluster: 'e2e', user: account } }],
      'current-context': account,
    };
    await writeFile(file, stringify(config), { mode: 0o600 });
    return file;
  }

  /** `apiVersion/kind` of every kind the API server lists in discovery for these API versions. */
  async function servedKinds(apiVersions: readonly string[]): Promise<Set<string>> {
    const kinds = new Set<string>();
    for (const apiVersion of new Set(apiVersions)) {
      const path = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
      const list = await kubectl(['get', '--raw', path]).then(
        (text) => JSON.parse(text) as { resources: { name: string; kind: string }[] },
        (err: unknown) => {
          // A group version the server does not serve answers 404; anything else is a real failure.
          if (/NotFound|could not find/i.test((err as Error).message)) return { resources: [] };
          throw err;
        },
      );
      // Subresources (`pods/log`) carry their parent's or another kind; only top-level resources count.
      for (const resource of list.resources.filter((r) => !r.name.includes('/')))
        kinds.add(`${apiVersion}/${resource.kind}`);
    }
    return kinds;
  }

  async function deleteEverything(): Promise<void> {
    // The webhook configuration first: nothing may call a webhook that is about to stop.
    await kubectl(['delete', 'validatingwebhookconfiguration', 'kmm-preflight', '--ignore-not-found']);
    await Promise.all([webhook?.stop(), runner?.stop()]);
    const preflights = ['preflightvalidationsocp.kmm.sigs.x-k8s.io', PREFLIGHT, `${PREFLIGHT}-probe`];
    await kubectl(['delete', ...preflights, '--ignore-not-found']).catch(
      () => undefined, // the CRD may not exist yet on a first run
    );
    await kubectl(['delete', 'events', '-n', 'default', `--field-selector=involvedObject.name=${PREFLIGHT}`]);
    await kubectl(['delete', 'namespace', NAMESPACE, MODULES_NAMESPACE, '--ignore-not-found', '--wait=true']);
    for (const kind of ['clusterrolebinding', 'clusterrole']) {
      await kubectl(['delete', kind, 'kmm-preflight-runner', 'kmm-preflight-webhook', '--ignore-not-found']);
    }
    await kubectl([
      'delete',
      'rolebinding,role',
      'kmm-preflight-runner-events',
      '-n',
      'default',
      '--ignore-not-found',
    ]);
  }

  before(async function () {
    this.timeout(900_000);
    const cluster = await ensureCluster();
    workDir = await mkdtemp(join(tmpdir(), 'kmm-deploy-e2e-'));
    // Every ensureCluster() of a concurrent suite rewrites the shared kubeconfig in place (up.sh removes it, then
    // builds it in four kubectl steps), so a kubectl reading it at that moment finds no server. Work from a copy,
    // taken once it is whole.
    adminKubeconfig = await waitFor('a complete admin kubeconfig', async () => {
      const text = await readFile(cluster.kubeconfig, 'utf8');
      const config = parse(text) as {
        'current-context'?: string;
        users?: { user?: Record<string, string> }[];
      };
      if (
        config['current-context'] === undefined ||
        config.users?.[0]?.user?.['client-key-data'] === undefined
      ) {
        return undefined;
      }
      const copy = join(workDir, 'admin.kubeconfig');
      await writeFile(copy, text, { mode: 0o600 });
      return copy;
    });
    await deleteEverything(); // what an interrupted run may have left
    await kubectl(['apply', ...CRDS.flatMap((file) => ['-f', file])]);
    await kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=60s',
      'crd/preflightvalidationsocp.kmm.sigs.x-k8s.io',
      'crd/modules.kmm.sigs.x-k8s.io',
    ]);

    rendered = await renderOverlays(workDir);
    // Everything but the webhook configuration, which waits until the webhook serves. Kinds this server's
    // discovery does not list (say, policy/v1 PodDisruptionBudget before Kubernetes 1.21) are left out and listed.
    const objects = rendered.selfSigned.map((d: ManifestDocument) => d.object as KubeObject);
    const served = await servedKinds(objects.map((o) => o.apiVersion));
    const isServed = (o: KubeObject): boolean => served.has(`${o.apiVersion}/${o.kind}`);
    skippedKinds = [...new Set(objects.filter((o) => !isServed(o)).map((o) => `${o.apiVersion}/${o.kind}`))];
    applied = objects.filter((o) => isServed(o) && o.kind !== 'ValidatingWebhookConfiguration');
    await apply(applied);
    kubeconfigs.runner = await serviceAccountKubeconfig('runner');
    kubeconfigs.webhook = await serviceAccountKubeconfig('webhook');
  });

  after(async function () {
    this.timeout(300_000);
    if (adminKubeconfig !== undefined) await deleteEverything();
    await registry?.stop();
    if (workDir !== undefined) await rm(workDir, { recursive: true, force: true });
  });

  it('applies every object of the self-signed overlay whose kind this server serves', async () => {
    // Only an optional extra may be missing from an older server; what the components need is served everywhere.
    const needed = [
      'Namespace',
      'ServiceAccount',
      'ClusterRole',
      'ClusterRoleBinding',
      'Role',
      'RoleBinding',
      'Deployment',
      'Service',
      'Secret',
      'CustomResourceDefinition',
      'ValidatingWebhookConfiguration',
    ];
    expect(skippedKinds.filter((kind) => needed.includes(kind.split('/').at(-1)!))).to.deep.equal([]);
    if (skippedKinds.length > 0)
      console.log(`      not served by this API server: ${skippedKinds.join(', ')}`);
    // Every applied object is there, read back by kind and name.
    const found = (
      await kubectl(['get', '-f', '-', '-o', 'name'], applied.map((o) => stringify(o)).join('---\n'))
    )
      .split('\n')
      .filter(Boolean);
    expect(found).to.have.length(applied.length);
    expect(found).to.include.members([
      'serviceaccount/runner',
      'serviceaccount/webhook',
      'deployment.apps/runner',
      'deployment.apps/webhook',
      'service/webhook',
      'secret/webhook-tls',
      'clusterrole.rbac.authorization.k8s.io/kmm-preflight-webhook',
      'role.rbac.authorization.k8s.io/runner-leader-election',
    ]);
  });

  it('kubectl auth can-i: each ServiceAccount may do what its job needs', async () => {
    const runnerNeeds = [
      ['list', 'preflightvalidationsocp.kmm.sigs.x-k8s.io'],
      ['watch', 'preflightvalidationsocp.kmm.sigs.x-k8s.io'],
      ['update', 'preflightvalidationsocp.kmm.sigs.x-k8s.io', '--subresource=status'],
      ['watch', 'modules.kmm.sigs.x-k8s.io', '--all-namespaces'],
      ['get', 'secrets', '-n', MODULES_NAMESPACE],
      ['get', 'configmaps', '-n', MODULES_NAMESPACE],
      ['create', 'jobs.batch', '-n', MODULES_NAMESPACE],
      ['delete', 'jobs.batch', '-n', MODULES_NAMESPACE],
      ['watch', 'jobs.batch', '--all-namespaces'],
      ['list', 'pods', '-n', MODULES_NAMESPACE],
      ['get', 'pods', '--subresource=log', '-n', MODULES_NAMESPACE],
      ['create', 'events', '-n', 'default'],
      ['create', 'leases.coordination.k8s.io', '-n', NAMESPACE],
      ['update', 'leases.coordination.k8s.io/kmm-preflight-runner', '-n', NAMESPACE],
    ];
    const openShiftMirrors = [
      ['config.openshift.io', 'imagedigestmirrorsets'],
      ['config.openshift.io', 'imagetagmirrorsets'],
      ['operator.openshift.io', 'imagecontentsourcepolicies'],
    ];
    const webhookNeeds = [
      ['list', 'preflightvalidationsocp.kmm.sigs.x-k8s.io'],
      ['watch', 'preflightvalidationsocp.kmm.sigs.x-k8s.io'],
      ['list', 'modules.kmm.sigs.x-k8s.io', '--all-namespaces'],
      ['watch', 'modules.kmm.sigs.x-k8s.io', '--all-namespaces'],
    ];
    for (const args of runnerNeeds)
      expect(await canI('runner', args), `runner: ${args.join(' ')}`).to.equal('yes');
    for (const args of webhookNeeds)
      expect(await canI('webhook', args), `webhook: ${args.join(' ')}`).to.equal('yes');
    for (const [group, resource] of openShiftMirrors) {
      for (const verb of ['list', 'watch']) {
        expect(await reviewAccess('runner', verb, group!, resource!), `runner: ${verb} ${resource}`).to.equal(
          'yes',
        );
        expect(
          await reviewAccess('webhook', verb, group!, resource!),
          `webhook: ${verb} ${resource}`,
        ).to.equal('no');
      }
      expect(
        await reviewAccess('runner', 'update', group!, resource!),
        `runner: update ${resource}`,
      ).to.equal('no');
    }
  });

  it('kubectl auth can-i: what neither needs is forbidden', async () => {
    const neverEither = [
      ['list', 'secrets', '--all-namespaces'],
      ['watch', 'secrets', '-n', MODULES_NAMESPACE],
      ['create', 'secrets', '-n', MODULES_NAMESPACE],
      ['update', 'secrets', '-n', MODULES_NAMESPACE],
      ['delete', 'secrets', '-n', NAMESPACE],
      ['create', 'modules.kmm.sigs.x-k8s.io', '-n', MODULES_NAMESPACE],
      ['update', 'modules.kmm.sigs.x-k8s.io', '-n', MODULES_NAMESPACE],
      ['patch', 'modules.kmm.sigs.x-k8s.io', '-n', MODULES_NAMESPACE],
      ['delete', 'modules.kmm.sigs.x-k8s.io', '-n', MODULES_NAMESPACE],
      ['update', 'preflightvalidationsocp.kmm.sigs.x-k8s.io'],
      ['delete', 'preflightvalidationsocp.kmm.sigs.x-k8s.io'],
      ['delete', 'namespaces'],
      ['delete', 'nodes'],
      ['deletecollection', 'jobs.batch', '--all-namespaces'],
      ['deletecollection', 'pods', '--all-namespaces'],
      ['delete', 'pods', '-n', MODULES_NAMESPACE],
      ['create', 'pods', '-n', MODULES_NAMESPACE],
      ['update', 'configmaps', '-n', MODULES_NAMESPACE],
      ['list', 'configmaps', '--all-namespaces'],
      ['create', 'events', '-n', 'kube-system'],
      ['update', 'leases.coordination.k8s.io/kube-controller-manager', '-n', 'kube-system'],
      ['update', 'leases.coordination.k8s.io/another-lease', '-n', NAMESPACE],
      ['patch', 'validatingwebhookconfigurations.admissionregistration.k8s.io'],
      ['create', 'clusterrolebindings.rbac.authorization.k8s.io'],
      ['impersonate', 'serviceaccounts', '-n', NAMESPACE],
      ['create', 'serviceaccounts/token', '-n', NAMESPACE],
    ];
    const webhookNever = [
      // Its informers list and watch; it never reads an object by name.
      ['get', 'preflightvalidationsocp.kmm.sigs.x-k8s.io'],
      ['get', 'modules.kmm.sigs.x-k8s.io', '-n', MODULES_NAMESPACE],
      ['get', 'secrets', '-n', MODULES_NAMESPACE],
      ['update', 'preflightvalidationsocp.kmm.sigs.x-k8s.io', '--subresource=status'],
      ['create', 'events', '-n', 'default'],
      ['create', 'leases.coordination.k8s.io', '-n', NAMESPACE],
      ['list', 'jobs.batch', '--all-namespaces'],
      ['get', 'configmaps', '-n', MODULES_NAMESPACE],
    ];
    for (const args of neverEither) {
      expect(await canI('runner', args), `runner: ${args.join(' ')}`).to.equal('no');
      expect(await canI('webhook', args), `webhook: ${args.join(' ')}`).to.equal('no');
    }
    for (const args of webhookNever)
      expect(await canI('webhook', args), `webhook: ${args.join(' ')}`).to.equal('no');
  });

  it('the webhook runs under its ServiceAccount and the API server calls it through the Service', async () => {
    // The loopback cluster has no kube-proxy: the API server dials the Service's ClusterIP and port itself (see
    // ../shared/k8s/README.md), so the webhook listens there, with the Deployment's other arguments unchanged.
    const clusterIp = (
      await kubectl(['get', 'service', 'webhook', '-n', NAMESPACE, '-o', 'jsonpath={.spec.clusterIP}'])
    ).trim();
    const servicePort = (
      await kubectl(['get', 'service', 'webhook', '-n', NAMESPACE, '-o', 'jsonpath={.spec.ports[0].port}'])
    ).trim();
    const healthPort = await freePort(clusterIp);
    const args = deploymentArgs('webhook').map((arg) =>
      arg
        .replace('/etc/kmm-preflight/tls', rendered.certsDir)
        .replace(/^--port=.*/, `--port=${servicePort}`)
        .replace(/^--health-port=.*/, `--health-port=${healthPort}`),
    );
    webhook = new CliProcess(
      [...args, `--bind-address=${clusterIp}`, `--kubeconfig=${kubeconfigs.webhook}`],
      {},
    );
    await waitFor('the webhook to be ready (caches synced under its own token)', async () => {
      if (!webhook!.running) throw new Error(`the webhook exited:\n${webhook!.output}`);
      const response = await fetch(`http://${clusterIp}:${healthPort}/readyz`);
      return response.ok ? true : undefined;
    });

    const configuration = rendered.selfSigned.find((d) => d.object.kind === 'ValidatingWebhookConfiguration')!
      .object as {
      webhooks: { failurePolicy: string }[];
    };
    await apply([
      {
        ...configuration,
        webhooks: configuration.webhooks.map((w) => ({
          ...w,
          failurePolicy: 'Ignore',
          objectSelector: { matchLabels: SUITE_LABEL },
        })),
      },
    ]);

    await kubectl(['create', 'namespace', MODULES_NAMESPACE]);
    await startRegistryWithRelease();
    // An UPDATE that only the webhook can refuse (Kubernetes 1.20 has no CEL), on a throwaway resource: the API
    // server's call reaches our process through the Service, over the self-signed CA in the caBundle. The
    // configuration takes a moment to load, so the first updates may still pass: retry until refused.
    const probe = `${PREFLIGHT}-probe`;
    const images = [`${registry!.host}/ocp/release:one`, `${registry!.host}/ocp/release:two`];
    await apply([preflight(images[0]!, probe)]);
    let attempt = 0;
    const refusal = await waitFor('the webhook to refuse a releaseImage change', async () => {
      attempt += 1;
      try {
        await apply([preflight(images[attempt % 2]!, probe)]);
        return undefined;
      } catch (err) {
        return (err as Error).message;
      }
    });
    await kubectl(['delete', 'preflightvalidationsocp.kmm.sigs.x-k8s.io', probe]);
    // The webhook admits a valid resource, through the same path.
    await apply([preflight(`${registry!.host}/ocp/release@${release.releaseDigest}`)]);
    expect(refusal).to.include('denied the request');
    expect(refusal).to.include('spec.releaseImage cannot change after creation');
    expect(forbiddenLines(webhook.output)).to.deep.equal([]);
  });

  it('the runner does its job under its ServiceAccount with exactly the shipped RBAC', async function () {
    this.timeout(480_000);
    const kernel = release.architectures[0]!.driverToolkit.kernelVersion;
    await pushModuleImage(registry!, 'mods/kmod', 'v1', { moduleName: 'kmm_ci_a', kernel });
    // The suite registry needs no credentials, but the runner reads both pull Secrets all the same (GET by name):
    // that is the access being proven here.
    const credentials = [
      '--docker-server',
      registry!.host,
      '--docker-username=e2e',
      '--docker-password=unused',
    ];
    await kubectl([
      'create',
      'secret',
      'docker-registry',
      'module-pull',
      '-n',
      MODULES_NAMESPACE,
      ...credentials,
    ]);
    await kubectl([
      'create',
      'secret',
      'docker-registry',
      'release-pull',
      '-n',
      MODULES_NAMESPACE,
      ...credentials,
    ]);
    // The Build stage reads the Dockerfile ConfigMap a build section names (GET by name), creates the Job, and
    // follows its Pods; a failed Pod's termination message becomes the verdict.
    await apply([
      {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'dockerfile', namespace: MODULES_NAMESPACE, labels: SUITE_LABEL },
        data: { dockerfile: 'FROM ${DTK_AUTO}\nRUN make\n' },
      },
      module('present', `${registry!.host}/mods/kmod:v1`, kernel),
      module('absent', `${registry!.host}/mods/kmod:missing`, kernel),
      module('built', `${registry!.host}/mods/kmod:built`, kernel, {
        dockerfileConfigMap: { name: 'dockerfile' },
      }),
    ]);

    const opsPort = await freePort('127.0.0.1');
    // The Deployment's own arguments and environment, plus what only a run outside the cluster needs: a kubeconfig
    // in place of the in-cluster token, the suite registry (plain HTTP), and its pull secret instead of OpenShift's; and
    // only this suite's namespace, so Modules of other suites on the shared API server are not validated here.
    const args = deploymentArgs('runner').map((arg) =>
      arg.replace(/^--ops-address=.*/, `--ops-address=127.0.0.1:${opsPort}`),
    );
    runner = new CliProcess(
      [
        ...args,
        `--kubeconfig=${kubeconfigs.runner}`,
        `--insecure-registry=${registry!.host}`,
        `--pull-secret=${MODULES_NAMESPACE}/release-pull`,
        `--namespaces=${MODULES_NAMESPACE}`,
        // Only this suite's PreflightValidationOCP: resources other suites leave on the shared API server (an
        // interrupted run) must not get a second writer, nor make this suite wait for them. Same verbs either way.
        `--resource-selector=${Object.entries(SUITE_LABEL)
          .map(([key, value]) => `${key}=${value}`)
          .join(',')}`,
        // The test plays the kubelet once: a Job that fails on its first Pod (no second Pod to fail as well).
        '--job-backoff-limit=0',
      ],
      { POD_NAMESPACE: NAMESPACE, POD_NAME: 'runner-e2e' },
    );
    let lastStatus = '';
    const statusWhen = (
      what: string,
      holds: (modules: ModuleStatusEntry[]) => boolean,
    ): Promise<ModuleStatusEntry[]> =>
      waitFor(
        what,
        async () => {
          if (!runner!.running) throw new Error(`the runner exited:\n${runner!.output}`);
          const resource = JSON.parse(
            await kubectl(['get', 'preflightvalidationsocp.kmm.sigs.x-k8s.io', PREFLIGHT, '-o', 'json']),
          ) as { status?: { modules?: ModuleStatusEntry[] } };
          lastStatus = JSON.stringify(resource.status ?? {});
          const modules = resource.status?.modules ?? [];
          return holds(modules) ? modules : undefined;
        },
        150_000,
      ).catch((err: unknown) => {
        const tail = runner!.output.split('\n').slice(-40).join('\n');
        throw new Error(
          `${(err as Error).message}\nlast status: ${lastStatus}\nrunner output (tail):\n${tail}`,
        );
      });
    const entry = (modules: ModuleStatusEntry[], name: string): ModuleStatusEntry | undefined =>
      modules.find((m) => m.name === name);

    const started = await statusWhen(
      'present verified, absent failed at Image, built at Build',
      (modules) =>
        entry(modules, 'present')?.verificationStage === 'Done' &&
        entry(modules, 'absent')?.verificationStatus === 'False' &&
        entry(modules, 'built')?.verificationStage === 'Build',
    );
    expect(entry(started, 'present')).to.include({ verificationStatus: 'True', verificationStage: 'Done' });
    expect(entry(started, 'absent')).to.include({ verificationStatus: 'False', verificationStage: 'Image' });

    // The Job the runner created under its token; the test plays the kubelet and fails its Pod.
    const adminConfig = loadKubeConfig(adminKubeconfig);
    const adminClient = createKubeClient(adminConfig);
    const jobs = new KubeJobStore(adminClient, adminConfig);
    const job = await waitFor('the Build Job of Module built', async () => {
      const found = await jobs.listJobs(MODULES_NAMESPACE, {
        [JobLabel.managedBy]: 'kmm-preflight',
        [JobLabel.module]: 'built',
      });
      return found.length === 1 ? found[0] : undefined;
    });
    expect(entry(started, 'built')?.statusReason).to.contain(job.metadata.name);
    const message = 'error building image: RUN make: exit status 2 (deploy e2e)';
    const image = job.spec.template.spec.containers[0]?.image ?? '';
    await finishJobPod(adminClient, jobs, image, MODULES_NAMESPACE, job.metadata.name, 'Failed', message);
    const failed = await statusWhen(
      "built failed at Build with its Pod's termination message",
      (modules) => entry(modules, 'built')?.statusReason?.includes(message) === true,
    );
    expect(entry(failed, 'built')).to.include({ verificationStatus: 'False', verificationStage: 'Build' });

    // pods/log: the runner reads a failed Pod's log tail when it left no termination message, and treats any
    // failure there as "no log", so its output cannot show a 403. Asked directly with the runner's token, the API
    // server serves the (empty: no kubelet ran the Pod) log.
    const [pod] = await jobs.listJobPods(job);
    const logs = await kubectlWith(kubeconfigs.runner, [
      'logs',
      '-n',
      MODULES_NAMESPACE,
      pod!.metadata.name,
    ]).then(
      () => 'served',
      (err: unknown) => (err as Error).message,
    );
    expect(logs).to.equal('served');
    const lease = JSON.parse(
      await kubectl(['get', 'lease', 'kmm-preflight-runner', '-n', NAMESPACE, '-o', 'json']),
    ) as { spec: { holderIdentity?: string } };
    expect(lease.spec.holderIdentity).to.equal('runner-e2e');
    const events = await kubectl([
      'get',
      'events',
      '-n',
      'default',
      `--field-selector=involvedObject.name=${PREFLIGHT}`,
      '-o',
      'name',
    ]);
    expect(events.trim().split('\n').filter(Boolean).length).to.be.greaterThan(0);
    expect(forbiddenLines(runner.output)).to.deep.equal([]);
  });

  it('kubectl get pfvo shows Release, Kernel, Verified, Failed, Complete and Age; -o wide more', async () => {
    const kernel = release.architectures[0]!.driverToolkit.kernelVersion;
    const table = await kubectl(['get', 'pfvo', PREFLIGHT]);
    const [header = '', row = ''] = table.trim().split('\n');
    expect(header.split(/\s{2,}/)).to.deep.equal([
      'NAME',
      'RELEASE',
      'KERNEL',
      'VERIFIED',
      'FAILED',
      'COMPLETE',
      'AGE',
    ]);
    expect(row.split(/\s+/).slice(0, 6)).to.deep.equal([
      PREFLIGHT,
      release.version,
      kernel,
      '1/3',
      '2',
      'False',
    ]);
    const wide = (await kubectl(['get', 'pfvo', PREFLIGHT, '-o', 'wide'])).split('\n')[0] ?? '';
    expect(wide.split(/\s{2,}/)).to.include.members(['RELEASE IMAGE', 'DTK IMAGE', 'RT']);
  });

  function deploymentArgs(name: 'runner' | 'webhook'): string[] {
    const deployment = rendered.selfSigned.find(
      (d) => d.object.kind === 'Deployment' && (d.object.metadata as { name: string }).name === name,
    );
    const containers = (
      deployment!.object as { spec: { template: { spec: { containers: { args: string[] }[] } } } }
    ).spec.template.spec.containers;
    return containers[0]!.args;
  }

  async function startRegistryWithRelease(): Promise<void> {
    registry = await startRegistry('http');
    const layout = join(workDir, 'layout');
    release = await buildReleaseFixture({ dir: layout, componentRepository: `${registry.host}/ocp/art-dev` });
    await pushLayout(release.releaseLayoutReference, 'ocp/release:e2e', registry);
    await pushLayout(release.driverToolkitLayoutReference, 'ocp/art-dev:driver-toolkit', registry);
  }
});

function preflight(releaseImage: string, name = PREFLIGHT): KubeObject {
  return {
    apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
    kind: 'PreflightValidationOCP',
    metadata: { name, labels: SUITE_LABEL },
    spec: { releaseImage },
  };
}

interface ModuleStatusEntry {
  name: string;
  verificationStatus: string;
  verificationStage: string;
  statusReason?: string;
}

function module(name: string, image: string, kernel: string, build?: Record<string, unknown>): KubeObject {
  return {
    apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
    kind: 'Module',
    metadata: { name, namespace: MODULES_NAMESPACE, labels: SUITE_LABEL },
    spec: {
      selector: { 'kubernetes.io/os': 'linux' },
      imageRepoSecret: { name: 'module-pull' },
      moduleLoader: {
        container: {
          modprobe: { moduleName: 'kmm_ci_a' },
          kernelMappings: [{ literal: kernel, containerImage: image }],
          ...(build === undefined ? {} : { build }),
        },
      },
    },
  };
}
