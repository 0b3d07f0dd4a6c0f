import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { expect } from 'chai';
import { stringify } from 'yaml';
import { ensureCluster, type TestCluster } from '../support/cluster.ts';
import { waitFor } from '../support/wait.ts';
import { freePort } from '../support/ports.ts';

/**
 * The webhook as users run it, against the real API server: `kmm-preflight certs` makes the certificates,
 * `kmm-preflight webhook` runs as separate processes, registered by URL (https://127.0.0.1:PORT) and by a Service on
 * a loopback ClusterIP. kubectl apply sees our denials and warnings; an active preflight protects a Module's
 * mapping for its kernel until it completes; replaced certificate files are served without a restart.
 *
 * The API server is shared: both webhook configurations match only objects carrying this run's label, use
 * failurePolicy Ignore, and are deleted first on the way out, with everything else this suite created.
 */

const CLI = resolve(import.meta.dirname, '../../bin/kmm-preflight.js');
const CRDS = resolve(import.meta.dirname, '../../manifests/crds');
const RUN = randomBytes(4).toString('hex');
const LABEL = 'kmm-preflight-webhook-e2e';
const NAMESPACE = `kmm-webhook-e2e-${RUN}`;
const SERVICE = 'webhook';
const KERNEL = `5.14.0-999.e2e${RUN}.el9.x86_64`;
const TAGGED_RELEASE = 'quay.io/openshift-release-dev/ocp-release:4.16.3-x86_64';

const TRANSIENT =
  /connection refused|kubeconfig: no such file|ServiceUnavailable|the server is currently unable|etcdserver/;

interface KubectlResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

interface WebhookProcess {
  readonly child: ChildProcess;
  readonly port: number;
  readonly healthPort: number;
  readonly host: string;
  output(): string;
  /** SIGTERM, then the exit code (SIGKILL after 20 s). */
  stop(): Promise<number | null>;
}

function runCli(args: readonly string[]): Promise<KubectlResult> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 60_000 }, (err, stdout, stderr) =>
      done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr }),
    );
  });
}

function startWebhook(args: readonly string[]): Promise<WebhookProcess> {
  const child = spawn(process.execPath, [CLI, 'webhook', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  return waitFor('the webhook to report its ports', () => {
    if (child.exitCode !== null) throw new Error(`webhook exited ${child.exitCode}: ${output}`);
    for (const line of output.split('\n')) {
      if (!line.includes('"webhook started"')) continue;
      const started = JSON.parse(line) as {
        webhook: { host: string; port: number };
        health: { port: number };
      };
      return {
        child,
        port: started.webhook.port,
        host: started.webhook.host,
        healthPort: started.health.port,
        output: () => output,
        stop: async () => {
          if (child.exitCode === null) child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
          const code = await exited;
          clearTimeout(timer);
          return code;
        },
      };
    }
    return undefined;
  });
}

function servedFingerprint(host: string, port: number): Promise<string> {
  return new Promise((done, fail) => {
    const socket = connect({ host, port, rejectUnauthorized: false }, () => {
      done(socket.getPeerCertificate().fingerprint256);
      socket.end();
    });
    socket.once('error', fail);
  });
}

describe('webhook e2e: kmm-preflight webhook behind the real API server', function () {
  this.timeout(300_000);
  let cluster: TestCluster;
  let dir: string;
  let byUrl: WebhookProcess | undefined;
  let byService: WebhookProcess | undefined;
  const configurations: string[] = [];

  /** kubectl, retried while the shared API server is being restarted by another suite. */
  async function kubectl(args: readonly string[], input?: string): Promise<KubectlResult> {
    const deadline = Date.now() + 90_000;
    for (;;) {
      const result = await kubectlOnce(args, input);
      if (!TRANSIENT.test(result.stderr) || Date.now() > deadline) return result;
      await new Promise((done) => setTimeout(done, 1000));
    }
  }

  function kubectlOnce(args: readonly string[], input?: string): Promise<KubectlResult> {
    return new Promise((done) => {
      const child = execFile(
        'kubectl',
        ['--kubeconfig', cluster.kubeconfig, ...args],
        { timeout: 60_000 },
        (err, stdout, stderr) =>
          done({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : 1, stdout, stderr }),
      );
      if (input !== undefined) child.stdin?.end(input);
    });
  }

  async function apply(object: Record<string, unknown>, dryRun = false): Promise<KubectlResult> {
    return kubectl(['apply', ...(dryRun ? ['--dry-run=server'] : []), '-f', '-'], stringify(object));
  }

  function preflight(name: string, releaseImage: string, label = RUN): Record<string, unknown> {
    return {
      apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
      kind: 'PreflightValidationOCP',
      metadata: { name, labels: { [LABEL]: label } },
      spec: { releaseImage, pushBuiltImage: true },
    };
  }

  function module(literal: string): Record<string, unknown> {
    return {
      apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
      kind: 'Module',
      metadata: { name: 'e2e-kmod', namespace: NAMESPACE, labels: { [LABEL]: RUN } },
      spec: {
        selector: { 'kubernetes.io/os': 'linux' },
        moduleLoader: {
          container: {
            modprobe: { moduleName: 'e2e_kmod' },
            kernelMappings: [{ literal, containerImage: 'quay.io/acme/e2e-kmod:${KERNEL_FULL_VERSION}' }],
          },
        },
      },
    };
  }

  /** A webhook configuration for PreflightValidationOCP and Module objects labelled `<LABEL>=<labelValue>`. */
  async function register(
    name: string,
    clientConfig: Record<string, unknown>,
    labelValue: string,
  ): Promise<void> {
    const webhook = (resource: string, operations: string[], scope: string, path: string) => ({
      name: `${resource}.${name}.kmm-preflight.e2e`,
      admissionReviewVersions: ['v1'],
      sideEffects: 'None',
      failurePolicy: 'Ignore',
      timeoutSeconds: 5,
      clientConfig:
        'url' in clientConfig
          ? { ...clientConfig, url: `${String(clientConfig['url'])}${path}` }
          : { ...clientConfig, service: { ...(clientConfig['service'] as object), path } },
      objectSelector: { matchLabels: { [LABEL]: labelValue } },
      rules: [
        { operations, apiGroups: ['kmm.sigs.x-k8s.io'], apiVersions: ['*'], resources: [resource], scope },
      ],
    });
    const configuration = {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: { name },
      webhooks: [
        webhook(
          'preflightvalidationsocp',
          ['CREATE', 'UPDATE'],
          'Cluster',
          '/validate/preflightvalidationocp',
        ),
        webhook('modules', ['CREATE', 'UPDATE', 'DELETE'], 'Namespaced', '/validate/module'),
      ],
    };
    configurations.push(name);
    const result = await kubectl(['apply', '-f', '-'], stringify(configuration));
    expect(result.code, result.stderr).to.equal(0);
  }

  /** Retries a dry-run until the webhook answers as expected: configurations and caches take a moment. */
  async function untilDryRun(
    object: Record<string, unknown>,
    matches: (r: KubectlResult) => boolean,
    what: string,
  ): Promise<void> {
    await waitFor(what, async () => {
      const result = await apply(object, true);
      return matches(result) ? true : undefined;
    });
  }

  before(async function () {
    cluster = await ensureCluster();
    expect((await kubectl(['apply', '-f', CRDS])).code).to.equal(0);
    await kubectl([
      'wait',
      '--for=condition=established',
      '--timeout=60s',
      'crd/preflightvalidationsocp.kmm.sigs.x-k8s.io',
      'crd/modules.kmm.sigs.x-k8s.io',
    ]);
    dir = await mkdtemp(join(tmpdir(), 'kmm-webhook-e2e-'));
    expect((await kubectl(['create', 'namespace', NAMESPACE])).code).to.equal(0);

    // A Service on a free loopback ClusterIP: the API server dials <clusterIP>:<port> directly.
    let clusterIp = '';
    let servicePort = 0;
    for (let attempt = 0; attempt < 20 && clusterIp === ''; attempt++) {
      const candidate = `127.0.100.${150 + Math.floor(Math.random() * 100)}`;
      servicePort = await freePort(candidate);
      const service = {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name: SERVICE, namespace: NAMESPACE },
        spec: { clusterIP: candidate, ports: [{ port: servicePort, targetPort: servicePort }] },
      };
      if ((await kubectl(['apply', '-f', '-'], stringify(service))).code === 0) clusterIp = candidate;
    }
    expect(clusterIp).not.to.equal('');

    const ca = join(dir, 'ca');
    const urlCerts = join(dir, 'url');
    const serviceCerts = join(dir, 'service');
    const made = await runCli(['certs', '--out', urlCerts, '--ca-dir', ca, '--ip', '127.0.0.1']);
    expect(made.code, made.stderr).to.equal(0);
    expect(
      (await runCli(['certs', '--out', serviceCerts, '--ca-dir', ca, '--dns', `${SERVICE}.${NAMESPACE}.svc`]))
        .code,
    ).to.equal(0);
    const caBundle = (await readFile(join(ca, 'ca.crt'))).toString('base64');

    const common = [
      '--kubeconfig',
      cluster.kubeconfig,
      '--health-port',
      '0',
      '--active-window-hours',
      '0',
      '--shutdown-delay-seconds',
      '0',
    ];
    byUrl = await startWebhook([
      ...common,
      '--tls-cert-file',
      join(urlCerts, 'tls.crt'),
      '--tls-key-file',
      join(urlCerts, 'tls.key'),
      '--bind-address',
      '127.0.0.1',
      '--port',
      '0',
    ]);
    byService = await startWebhook([
      ...common,
      '--tls-cert-file',
      join(serviceCerts, 'tls.crt'),
      '--tls-key-file',
      join(serviceCerts, 'tls.key'),
      '--bind-address',
      clusterIp,
      '--port',
      String(servicePort),
    ]);
    for (const webhook of [byUrl, byService]) {
      await waitFor('/readyz', async () => {
        const res = await fetch(`http://${webhook.host}:${webhook.healthPort}/readyz`);
        return res.status === 200 ? true : undefined;
      });
    }
    await register(`kmm-webhook-e2e-${RUN}-url`, { url: `https://127.0.0.1:${byUrl.port}`, caBundle }, RUN);
    await register(
      `kmm-webhook-e2e-${RUN}-svc`,
      { service: { namespace: NAMESPACE, name: SERVICE, port: servicePort }, caBundle },
      `${RUN}-svc`,
    );
  });

  after(async function () {
    for (const name of configurations)
      await kubectl(['delete', 'validatingwebhookconfiguration', name, '--ignore-not-found']);
    await kubectl(['delete', 'pfvo', '-l', `${LABEL} in (${RUN},${RUN}-svc)`, '--ignore-not-found']);
    await kubectl(['delete', 'namespace', NAMESPACE, '--ignore-not-found', '--wait=false']);
    const codes = await Promise.all([byUrl?.stop(), byService?.stop()]);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
    // SIGTERM is a graceful shutdown: exit code 0.
    expect(codes).to.deep.equal([0, 0]);
  });

  it('kubectl apply of a bad PreflightValidationOCP is refused with our message (registered by URL)', async () => {
    const bad = preflight(`bad-${RUN}`, 'quay.io/openshift-release-dev/ocp-release:');
    await untilDryRun(bad, (r) => r.stderr.includes('denied the request'), 'the URL webhook to be called');
    const result = await apply(bad);
    expect(result.code).to.not.equal(0);
    expect(result.stderr).to.contain(
      `admission webhook "preflightvalidationsocp.kmm-webhook-e2e-${RUN}-url.kmm-preflight.e2e" denied the request`,
    );
    expect(result.stderr).to.contain(
      `PreflightValidationOCP "bad-${RUN}" is invalid: spec.releaseImage: invalid image reference`,
    );
  });

  it('a valid PreflightValidationOCP is admitted with its warnings', async () => {
    const result = await apply(preflight(`tagged-${RUN}`, TAGGED_RELEASE));
    expect(result.code, result.stderr).to.equal(0);
    expect(result.stderr).to.contain('Warning: spec.releaseImage is not pinned by digest');
    const again = await apply(preflight(`tagged2-${RUN}`, TAGGED_RELEASE));
    expect(again.code, again.stderr).to.equal(0);
    expect(again.stderr).to.contain(
      `Warning: PreflightValidationOCP tagged-${RUN} already validates this release`,
    );
    const immutable = await apply(preflight(`tagged-${RUN}`, `${TAGGED_RELEASE}-rc`));
    expect(immutable.code).to.not.equal(0);
    expect(immutable.stderr).to.contain('spec.releaseImage cannot change after creation');
    expect(immutable.stderr).to.contain('create another PreflightValidationOCP for another release');
  });

  it('refuses through a Service on a loopback ClusterIP too', async () => {
    const bad = preflight(`bad-svc-${RUN}`, 'Quay.io/UPPER/case:1', `${RUN}-svc`);
    await untilDryRun(
      bad,
      (r) => r.stderr.includes('denied the request'),
      'the Service webhook to be called',
    );
    const result = await apply(bad);
    expect(result.stderr).to.contain(
      `admission webhook "preflightvalidationsocp.kmm-webhook-e2e-${RUN}-svc.kmm-preflight.e2e" denied the request`,
    );
    expect(result.stderr).to.contain('spec.releaseImage');
  });

  it('during an active preflight, refuses a Module edit dropping its kernel mapping; admits it once complete', async () => {
    const name = `active-${RUN}`;
    expect((await apply(preflight(name, TAGGED_RELEASE))).code).to.equal(0);
    const time = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
    const status = (complete: boolean) => ({
      status: {
        kernelVersion: KERNEL,
        targetKernel: KERNEL,
        conditions: [
          {
            type: 'KernelResolved',
            status: 'True',
            reason: 'Resolved',
            message: `kernel ${KERNEL}`,
            lastTransitionTime: time,
          },
          {
            type: 'Complete',
            status: complete ? 'True' : 'False',
            reason: complete ? 'AllVerified' : 'InProgress',
            message: complete ? 'every Module verified' : 'validating',
            lastTransitionTime: time,
          },
        ],
      },
    });
    const patch = await kubectl([
      'patch',
      'pfvo',
      name,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify(status(false)),
    ]);
    expect(patch.code, patch.stderr).to.equal(0);
    const created = await apply(module(KERNEL));
    expect(created.code, created.stderr).to.equal(0);

    const dropped = module('5.14.0-1.el9.x86_64');
    await untilDryRun(
      dropped,
      (r) => r.stderr.includes(`PreflightValidationOCP ${name}`),
      'the cache to see the active preflight',
    );
    const refused = await apply(dropped);
    expect(refused.code).to.not.equal(0);
    expect(refused.stderr).to.contain(
      `admission webhook "modules.kmm-webhook-e2e-${RUN}-url.kmm-preflight.e2e" denied the request`,
    );
    expect(refused.stderr).to.contain(
      `leaves Module ${NAMESPACE}/e2e-kmod with no kernel mapping for kernel ${KERNEL}`,
    );
    expect(refused.stderr).to.contain(`once ${name} is complete or deleted`);

    expect(
      (
        await kubectl([
          'patch',
          'pfvo',
          name,
          '--subresource=status',
          '--type=merge',
          '-p',
          JSON.stringify(status(true)),
        ])
      ).code,
    ).to.equal(0);
    await untilDryRun(dropped, (r) => r.code === 0, 'the cache to see the preflight complete');
    const admitted = await apply(dropped);
    expect(admitted.code, admitted.stderr).to.equal(0);
    const stored = await kubectl([
      'get',
      'module',
      'e2e-kmod',
      '-n',
      NAMESPACE,
      '-o',
      'jsonpath={.spec.moduleLoader.container.kernelMappings[0].literal}',
    ]);
    expect(stored.stdout).to.equal('5.14.0-1.el9.x86_64');
    const deleted = await kubectl(['delete', 'module', 'e2e-kmod', '-n', NAMESPACE]);
    expect(deleted.code, deleted.stderr).to.equal(0);
  });

  it('serves new certificate files without a restart, and the API server keeps calling it', async () => {
    if (byUrl === undefined) throw new Error('webhook not started');
    const before = await servedFingerprint('127.0.0.1', byUrl.port);
    const renewed = await runCli([
      'certs',
      '--out',
      join(dir, 'url'),
      '--ca-dir',
      join(dir, 'ca'),
      '--ip',
      '127.0.0.1',
    ]);
    expect(renewed.code, renewed.stderr).to.equal(0);
    const expected = new X509Certificate(await readFile(join(dir, 'url', 'tls.crt'))).fingerprint256;
    expect(expected).not.to.equal(before);
    await waitFor('the new certificate to be served', async () =>
      (await servedFingerprint('127.0.0.1', byUrl!.port)) === expected ? true : undefined,
    );
    expect(byUrl.output()).to.contain('serving certificate reloaded');
    const result = await apply(preflight(`bad2-${RUN}`, 'quay.io/openshift-release-dev/ocp-release:'));
    expect(result.stderr).to.contain('denied the request');
  });
});
