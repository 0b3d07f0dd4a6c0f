import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

import { expect } from 'chai';
import { parse as parseYaml, parseAllDocuments, stringify as toYaml } from 'yaml';

import type { PreflightValidationOCPStatus } from '../../src/api/preflight.ts';
import { buildDemoWorkspace, type DemoWorkspace } from '../../src/demo/workspace.ts';
import { ART_REPOSITORY } from '../../src/fixtures/release.ts';
import { junitCasesOf, parseJunit, statusRows, tableRows } from '../check/parse-report.ts';
import { runCli } from '../support/cli.ts';
import { ensureCluster, type TestCluster } from '../support/cluster.ts';
import { pushLayout, startRegistry, type TestRegistry } from '../support/registry.ts';

const run = promisify(execFile);
const repoRoot = resolve(import.meta.dirname, '../..');

type Verdicts = Record<string, readonly [string, string]>;

function verdicts(status: PreflightValidationOCPStatus): Verdicts {
  return Object.fromEntries(
    (status.modules ?? []).map((m) => [m.name, [m.verificationStatus, m.verificationStage]]),
  );
}

/** The demo's verdicts, from the OCI layouts: what every other way of running the same check must agree with. */
async function layoutVerdicts(demo: DemoWorkspace): Promise<Verdicts> {
  const result = await runCli([...demo.checkArgs, '-o', 'json']);
  return verdicts(JSON.parse(result.stdout) as PreflightValidationOCPStatus);
}

describe('e2e: kmm-preflight check', function () {
  this.timeout(600_000);
  let dir: string;
  let demo: DemoWorkspace;
  let expected: Verdicts;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kmm-check-e2e-'));
    demo = await buildDemoWorkspace(join(dir, 'demo'));
    expected = await layoutVerdicts(demo);
    expect(Object.keys(expected)).to.have.length(6);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  describe('against a real registry with TLS and Basic auth', () => {
    let registry: TestRegistry;
    let manifests: string;
    before(async () => {
      registry = await startRegistry('tls-auth');
      const layouts = join(demo.dir, 'images');
      const index = JSON.parse(await readFile(join(layouts, 'index.json'), 'utf8')) as {
        manifests: { annotations?: Record<string, string> }[];
      };
      for (const entry of index.manifests) {
        const tag = entry.annotations?.['org.opencontainers.image.ref.name'];
        if (tag !== undefined) await pushLayout(`oci:${layouts}:${tag}`, `kmod/images:${tag}`, registry);
      }
      await pushLayout(demo.releaseImage, 'ocp/release:4.19.0', registry);
      await pushLayout(
        `oci:${join(demo.dir, 'release')}:driver-toolkit`,
        'ocp/art-dev:driver-toolkit',
        registry,
      );
      // The same Modules, now pointing at the registry.
      manifests = join(dir, 'registry-modules.yaml');
      const text = await readFile(join(demo.modulesDir, 'modules.yaml'), 'utf8');
      await writeFile(manifests, text.replaceAll(`oci:${layouts}:`, `${registry.host}/kmod/images:`));
    });
    after(async () => {
      await registry.stop();
    });

    const args = (): string[] => [
      'check',
      '--release-image',
      `${registry.host}/ocp/release:4.19.0`,
      '--mirror',
      `${ART_REPOSITORY}=${registry.host}/ocp/art-dev`,
      '-f',
      manifests,
      '--ca-file',
      registry.certificates?.caFile ?? '',
      '--auth-file',
      registry.authFile,
    ];

    it('reaches the same verdicts as from the OCI layouts, in every output format', async () => {
      const json = await runCli([...args(), '-o', 'json']);
      expect(json.code, json.stderr).to.equal(1);
      const status = JSON.parse(json.stdout) as PreflightValidationOCPStatus;
      expect(verdicts(status)).to.deep.equal(expected);
      expect(status.targetKernel).to.equal(demo.kernel);
      const good = status.modules?.find((m) => m.name === 'ice-fw');
      expect(good?.statusReason).to.match(/^verified: ice_fw at \/opt\/lib\/modules\//);

      const yaml = await runCli([...args(), '-o', 'yaml']);
      const [doc] = parseAllDocuments(yaml.stdout);
      expect(verdicts(doc?.toJS() as PreflightValidationOCPStatus)).to.deep.equal(expected);

      expect(yaml.code).to.equal(1);

      const junit = await runCli([...args(), '-o', 'junit']);
      expect(junit.code).to.equal(1);
      const parsed = parseJunit(junit.stdout);
      expect(parsed.cases).to.deep.equal(junitCasesOf(status));
      expect(parsed.failures).to.equal(Object.values(expected).filter(([v]) => v === 'False').length);

      const table = await runCli(args());
      expect(table.code).to.equal(1);
      expect(tableRows(table.stdout)).to.deep.equal(statusRows(status));
    });

    it('says access is denied without the credentials, fails every Module with it, never prints them: exit 2', async () => {
      const withoutAuth = args().slice(0, -2);
      const result = await runCli([...withoutAuth, '-o', 'json'], {});
      expect(result.code).to.equal(2);
      expect(result.stderr).to.match(/release not resolved/);
      const status = JSON.parse(result.stdout) as PreflightValidationOCPStatus;
      expect(status).to.include({ total: 6, verified: 0, failed: 6 });
      for (const entry of status.modules ?? []) {
        expect(entry.statusReason).to.match(
          /^the target kernel could not be resolved: release image .* requires credentials and none are configured for it$/,
        );
      }
      expect(result.stdout + result.stderr).not.to.contain(registry.password ?? '\u0000');
    });

    it('an unreachable registry: tried several times, then a failure at Image with no promise of a retry', async () => {
      const unreachable = join(dir, 'unreachable.yaml');
      await writeFile(
        unreachable,
        toYaml({
          apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
          kind: 'Module',
          metadata: { name: 'far-away', namespace: 'drivers' },
          spec: {
            selector: {},
            moduleLoader: {
              container: {
                modprobe: { moduleName: 'far_away' },
                kernelMappings: [{ regexp: '^.+$', containerImage: '127.0.0.1:1/drivers/far-away:v1' }],
              },
            },
          },
        }),
      );
      const result = await runCli(['check', '--kernel', demo.kernel, '-f', unreachable, '-o', 'json']);
      expect(result.code, result.stderr).to.equal(1);
      const status = JSON.parse(result.stdout) as PreflightValidationOCPStatus;
      expect(status).to.include({ total: 1, verified: 0, failed: 1 });
      const entry = status.modules?.[0];
      expect(entry).to.include({ verificationStatus: 'False', verificationStage: 'Image' });
      expect(entry?.statusReason).to.match(/127\.0\.0\.1:1 unreachable after \d+ tries \(ECONNREFUSED\)$/);
      expect(entry?.statusReason).not.to.match(/retry/);
    });
  });

  describe('with --kubeconfig, reading Modules from a real API server', () => {
    let cluster: TestCluster;
    const namespace = `ck-e2e-${process.pid}`;
    before(async () => {
      cluster = await ensureCluster();
      await cluster.kubectl(['apply', '-f', join(repoRoot, 'manifests/crds/module.yaml')]);
      await cluster.kubectl([
        'wait',
        '--for=condition=Established',
        '--timeout=60s',
        'crd/modules.kmm.sigs.x-k8s.io',
      ]);
      await cluster.kubectl(['create', 'namespace', namespace]);
      const text = await readFile(join(demo.modulesDir, 'modules.yaml'), 'utf8');
      await cluster.kubectl(
        ['apply', '-f', '-'],
        text.replaceAll('namespace: kmm-demo', `namespace: ${namespace}`),
      );
    });
    after(async () => {
      await cluster?.kubectl(['delete', 'namespace', namespace, '--wait=false']);
    });

    it("validates the cluster's Modules like the same manifests from files", async () => {
      const result = await runCli([
        'check',
        '--kubeconfig',
        cluster.kubeconfig,
        '-n',
        namespace,
        '--release-image',
        demo.releaseImage,
        '--mirror',
        demo.mirror,
        '-o',
        'json',
      ]);
      expect(result.code, result.stderr).to.equal(1);
      const status = JSON.parse(result.stdout) as PreflightValidationOCPStatus;
      expect(verdicts(status)).to.deep.equal(expected);
      expect(new Set(status.modules?.map((m) => m.namespace))).to.deep.equal(new Set([namespace]));
    });

    it('a token the API server refuses, or one without the right to list Modules: one line, exit 2, no token', async () => {
      const admin = parseYaml(await readFile(cluster.kubeconfig, 'utf8')) as {
        clusters: { cluster: { server: string } }[];
      };
      const server = admin.clusters[0]?.cluster.server ?? '';
      await cluster.kubectl(['create', 'serviceaccount', 'no-rights', '-n', namespace]);
      const request = {
        apiVersion: 'authentication.k8s.io/v1',
        kind: 'TokenRequest',
        spec: { expirationSeconds: 600 },
      };
      const { status } = JSON.parse(
        await cluster.kubectl(
          ['create', '--raw', `/api/v1/namespaces/${namespace}/serviceaccounts/no-rights/token`, '-f', '-'],
          JSON.stringify(request),
        ),
      ) as { status: { token: string } };
      for (const [token, expected] of [
        [
          status.token,
          /failed: HTTP 403 Forbidden: .*cannot list resource "modules".* \(the kubeconfig user needs "list" on modules\.kmm\.sigs\.x-k8s\.io\)$/,
        ],
        [
          'not-a-valid-token',
          /failed: HTTP 401 Unauthorized: .*\(the credentials in the kubeconfig were not accepted\)$/,
        ],
      ] as const) {
        const kubeconfig = join(dir, 'limited-kubeconfig');
        await writeFile(
          kubeconfig,
          toYaml({
            apiVersion: 'v1',
            kind: 'Config',
            clusters: [{ name: 'e2e', cluster: admin.clusters[0]?.cluster }],
            users: [{ name: 'limited', user: { token } }],
            contexts: [{ name: 'limited', context: { cluster: 'e2e', user: 'limited' } }],
            'current-context': 'limited',
          }),
          { mode: 0o600 },
        );
        const result = await runCli(['check', '--kubeconfig', kubeconfig, '--kernel', demo.kernel]);
        expect(result.code, result.stderr).to.equal(2);
        expect(result.stdout).to.equal('');
        const lines = result.stderr.trimEnd().split('\n');
        expect(lines).to.have.length(1);
        expect(lines[0]).to.contain(
          `kmm-preflight: listing the Modules of all namespaces from ${server} (--kubeconfig ${kubeconfig})`,
        );
        expect(lines[0]).to.match(expected);
        expect(result.stderr).not.to.contain(token);
      }
    });
  });

  describe('npm run demo in a fresh clone', () => {
    it('prints the table the engine computes for the workspace it built', async () => {
      const clone = join(dir, 'clone');
      await run('git', ['clone', '--quiet', repoRoot, clone], { timeout: 120_000 });
      await run('npm', ['ci', '--no-audit', '--no-fund', '--prefer-offline'], {
        cwd: clone,
        timeout: 600_000,
        maxBuffer: 64 << 20,
      });
      const { stdout } = await run('npm', ['run', '-s', 'demo'], {
        cwd: clone,
        timeout: 300_000,
        maxBuffer: 16 << 20,
      });
      const workspace = /rm -rf (\S+)/.exec(stdout)?.[1];
      const command = /^\$ kmm-preflight (.+)$/m.exec(stdout)?.[1];
      expect(workspace, stdout).to.be.a('string');
      expect(command, stdout).to.be.a('string');
      try {
        const rows = tableRows(stdout);
        const engine = await runCli([...(command ?? '').split(' '), '-o', 'json']);
        const status = JSON.parse(engine.stdout) as PreflightValidationOCPStatus;
        // Every column, the reason included, is what the engine says for the workspace the demo built.
        expect(rows).to.deep.equal(statusRows(status));
        expect(verdicts(status)).to.deep.equal(expected);
        expect(stdout).to.contain(`1/6 modules verified`);
      } finally {
        if (workspace !== undefined) await rm(workspace, { recursive: true, force: true });
      }
    });
  });
});
