import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';
import { parse as parseYaml } from 'yaml';

import type { PreflightValidationOCPStatus } from '../../src/api/preflight.ts';
import { buildDemoWorkspace, type DemoWorkspace } from '../../src/demo/workspace.ts';
import { runCli } from '../support/cli.ts';
import { junitCasesOf, parseJunit, statusRows, tableRows } from './parse-report.ts';

/**
 * `kmm-preflight check` end to end in-process, over the demo's OCI layouts: no network, so it runs with the unit
 * suites. The registry and cluster variants are in test/e2e/check.test.ts.
 */
describe('check command over OCI layouts', function () {
  this.timeout(60_000);
  let dir: string;
  let demo: DemoWorkspace;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'kmm-check-cmd-'));
    demo = await buildDemoWorkspace(dir);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('reports every demo Module with the verdict its image deserves, and exits 1', async () => {
    const run = await runCli([...demo.checkArgs, '-o', 'json']);
    expect(run.code).to.equal(1);
    const status = JSON.parse(run.stdout) as PreflightValidationOCPStatus;
    expect(status.targetKernel).to.equal(demo.kernel);
    expect(status.releaseVersion).to.equal('4.19.0');
    expect(status.progress).to.equal('1/6');
    const verdicts = statusRows(status);
    expect(verdicts['ice-fw']?.slice(0, 2)).to.deep.equal(['True', 'Done']);
    expect(verdicts['nvme-tcp-ext']?.[2]).to.match(/was built for 5\.14\.0-362\.8\.1\.el9_3\.x86_64, not /);
    expect(verdicts['legacy-raid']?.[2]).to.match(
      /the image has modules for: 5\.14\.0-362\.8\.1\.el9_3\.x86_64/,
    );
    expect(verdicts['acme-nic']?.slice(0, 2)).to.deep.equal(['False', 'Image']);
    expect(verdicts['acme-nic']?.[2]).to.match(/does not exist/);
    expect(verdicts['vendor-gpu']?.slice(0, 2)).to.deep.equal(['False', 'Build']);
    expect(verdicts['vendor-gpu']?.[2]).to.match(
      /needs an in-cluster run .* from the Dockerfile in ConfigMap vendor-gpu-dockerfile/,
    );
    expect(verdicts['old-only']).to.deep.equal(['False', 'Done', `no kernel mapping matches ${demo.kernel}`]);
    expect(run.stderr).to.match(/skipped ConfigMap vendor-gpu-dockerfile/);
  });

  it('gives the same status as YAML, JUnit (parsed back) and the table', async () => {
    const json = JSON.parse(
      (await runCli([...demo.checkArgs, '-o', 'json'])).stdout,
    ) as PreflightValidationOCPStatus;
    const yaml = parseYaml(
      (await runCli([...demo.checkArgs, '-o', 'yaml'])).stdout,
    ) as PreflightValidationOCPStatus;
    expect(yaml).to.deep.equal({ ...json, conditions: yaml.conditions, modules: yaml.modules });
    expect(statusRows(yaml)).to.deep.equal(statusRows(json));
    const junit = parseJunit((await runCli([...demo.checkArgs, '-o', 'junit'])).stdout);
    expect(junit.cases).to.deep.equal(junitCasesOf(json));
    expect(junit.tests).to.equal(6);
    expect(junit.failures).to.equal(5);
    expect(tableRows((await runCli(demo.checkArgs)).stdout)).to.deep.equal(statusRows(json));
  });

  it('exits 0 when every Module given is verified, against --kernel', async () => {
    const only = join(dir, 'only-good.yaml');
    const [good = ''] = (await readFile(join(demo.modulesDir, 'modules.yaml'), 'utf8')).split('---\n');
    await writeFile(only, good);
    const run = await runCli(['check', '--kernel', demo.kernel, '-f', only]);
    expect(run.stderr).to.equal('');
    expect(run.code).to.equal(0);
    expect(run.stdout).to.contain('1/1 modules verified');
  });

  it('a directory mixing Modules, other kinds and broken YAML: the good Modules verified, each input error reported everywhere, exit 2', async () => {
    const mixed = join(dir, 'mixed');
    await mkdir(mixed, { recursive: true });
    const [good = ''] = (await readFile(join(demo.modulesDir, 'modules.yaml'), 'utf8')).split('---\n');
    await writeFile(join(mixed, 'a-good.yaml'), good);
    await writeFile(
      join(mixed, 'bad.yaml'),
      [
        'apiVersion: kmm.sigs.x-k8s.io/v1beta1',
        'kind: Module',
        'metadata: {name: broken, namespace: x}',
        'spec:',
        '  selector: {a: b}',
        '  moduleLoader:',
        '    container:',
        '      modprobe: {moduleName: m}',
        '      kernelMappings:',
        '        - {literal: a, regexp: b, containerImage: "quay.io/x:y"}',
        '---',
        'kind: [unclosed',
      ].join('\n'),
    );
    await writeFile(join(mixed, 'svc.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: s}\n');
    const args = ['check', '--kernel', demo.kernel, '-f', mixed];
    const run = await runCli([...args, '-o', 'json']);
    expect(run.code, run.stderr).to.equal(2);
    const report = JSON.parse(run.stdout) as PreflightValidationOCPStatus & {
      inputErrors: { file: string; document?: number; message: string }[];
    };
    expect(statusRows(report)['ice-fw']?.slice(0, 2)).to.deep.equal(['True', 'Done']);
    expect(statusRows(report)['broken']?.[2]).to.match(
      /invalid Module: spec\.moduleLoader\.container\.kernelMappings\[0\]: .*mutually exclusive/,
    );
    expect(report).to.include({ total: 2, verified: 1, failed: 1 });
    expect(report.inputErrors).to.have.length(1);
    expect(report.inputErrors[0]).to.include({ file: join(mixed, 'bad.yaml'), document: 2 });
    expect(report.inputErrors[0]?.message).to.match(/^not valid YAML: .* at line 12/);
    expect(run.stderr).to.match(/bad\.yaml#2: not valid YAML/);
    expect(run.stderr).to.match(/skipped Service s/);

    const yaml = await runCli([...args, '-o', 'yaml']);
    expect(yaml.code).to.equal(2);
    expect((parseYaml(yaml.stdout) as typeof report).inputErrors).to.deep.equal(report.inputErrors);

    const junit = await runCli([...args, '-o', 'junit']);
    expect(junit.code).to.equal(2);
    const parsed = parseJunit(junit.stdout);
    expect(parsed.failures).to.equal(2);
    expect(parsed.cases).to.deep.equal({
      ...junitCasesOf(report),
      [`input/${join(mixed, 'bad.yaml')}#2`]: {
        failed: `${join(mixed, 'bad.yaml')}#2: ${report.inputErrors[0]?.message ?? ''}`,
        type: 'InputError',
        body: `${join(mixed, 'bad.yaml')}#2: ${report.inputErrors[0]?.message ?? ''}`,
      },
    });

    const table = await runCli(args);
    expect(table.code).to.equal(2);
    expect(tableRows(table.stdout)).to.deep.equal(statusRows(report));
    expect(table.stdout).to.contain(
      `INPUT ERRORS (not checked)\n${join(mixed, 'bad.yaml')}#2: not valid YAML`,
    );
    expect(table.stdout).to.contain('1/2 modules verified, 1 not; 1 input error');
  });

  it('exits 2 with "no Module found" when the -f paths hold no Module', async () => {
    const empty = join(dir, 'no-modules');
    await mkdir(empty, { recursive: true });
    await writeFile(join(empty, 'svc.yaml'), 'apiVersion: v1\nkind: Service\nmetadata: {name: s}\n');
    const run = await runCli(['check', '--kernel', demo.kernel, '-f', empty, '-o', 'junit']);
    expect(run.code).to.equal(2);
    expect(run.stderr).to.contain(`error: ${empty}: no Module found in ${empty}`);
    expect(parseJunit(run.stdout).cases).to.deep.equal({
      [`input/${empty}`]: {
        failed: `${empty}: no Module found in ${empty}`,
        type: 'InputError',
        body: `${empty}: no Module found in ${empty}`,
      },
    });
  });

  it('with --kernel, KernelResolved says the kernel was given on the command line', async () => {
    const run = await runCli(['check', '--kernel', demo.kernel, '-f', demo.modulesDir, '-o', 'json']);
    const status = JSON.parse(run.stdout) as PreflightValidationOCPStatus;
    expect(status.conditions?.find((c) => c.type === 'KernelResolved')).to.include({
      status: 'True',
      reason: 'Given',
      message: `kernel ${demo.kernel} given with --kernel on the command line`,
    });
  });

  it('a release that cannot be resolved fails every Module with the reason, in every format, exit 2', async () => {
    const args = ['check', '--release-image', `oci:${join(dir, 'notrel')}:release`, '-f', demo.modulesDir];
    const json = await runCli([...args, '-o', 'json']);
    expect(json.code).to.equal(2);
    const status = JSON.parse(json.stdout) as PreflightValidationOCPStatus;
    const condition = status.conditions?.find((c) => c.type === 'KernelResolved');
    expect(condition?.status).to.equal('False');
    const reason = `the target kernel could not be resolved: ${condition?.message ?? ''}`;
    expect(reason).to.match(/notrel is not an OCI image layout/);
    expect(status).to.include({ total: 6, verified: 0, failed: 6 });
    for (const entry of Object.values(statusRows(status)))
      expect(entry).to.deep.equal(['False', 'Done', reason]);

    const junit = parseJunit((await runCli([...args, '-o', 'junit'])).stdout);
    expect(junit.cases).to.deep.equal(junitCasesOf(status));
    expect(junit.failures).to.equal(6);
    const table = (await runCli(args)).stdout;
    expect(table).to.contain(
      `Kernel:  NOT RESOLVED (${condition?.reason ?? ''}): ${condition?.message ?? ''}`,
    );
    expect(tableRows(table)).to.deep.equal(statusRows(status));
  });

  it('a Module whose image is missing and that has a sign section: False at Sign, saying what it would sign', async () => {
    const signed = join(dir, 'signed.yaml');
    await writeFile(
      signed,
      [
        'apiVersion: kmm.sigs.x-k8s.io/v1beta1',
        'kind: Module',
        'metadata: {name: signed-nic, namespace: drivers}',
        'spec:',
        '  selector: {}',
        '  moduleLoader:',
        '    container:',
        '      modprobe: {moduleName: signed_nic}',
        '      kernelMappings:',
        `        - regexp: '^.+$'`,
        `          containerImage: 'oci:${join(demo.dir, 'images')}:signed-nic-\${KERNEL_FULL_VERSION}'`,
        '          sign:',
        "            unsignedImage: 'registry.example.com/drivers/signed-nic:unsigned'",
        '            keySecret: {name: signing-key}',
        '            certSecret: {name: signing-cert}',
        "            filesToSign: ['/opt/lib/modules/${KERNEL_FULL_VERSION}/extra/signed_nic.ko']",
      ].join('\n'),
    );
    const run = await runCli(['check', '--kernel', demo.kernel, '-f', signed, '-o', 'json']);
    expect(run.code, run.stderr).to.equal(1);
    const entry = statusRows(JSON.parse(run.stdout) as PreflightValidationOCPStatus)['signed-nic'];
    expect(entry?.slice(0, 2)).to.deep.equal(['False', 'Sign']);
    expect(entry?.[2]).to.match(/does not exist/);
    expect(entry?.[2]).to.contain(
      `sign: needs an in-cluster run (kmm-preflight runner): it would sign /opt/lib/modules/${demo.kernel}/extra/signed_nic.ko ` +
        'of registry.example.com/drivers/signed-nic:unsigned with Secrets signing-key and signing-cert ' +
        `into oci:${join(demo.dir, 'images')}:signed-nic-${demo.kernel} without pushing it`,
    );
  });

  it('a kubeconfig that cannot be read: one line naming --kubeconfig and the fix, exit 2', async () => {
    const broken = join(dir, 'broken-kubeconfig');
    await writeFile(broken, 'clusters: [unclosed\n');
    for (const file of [join(dir, 'no-such-kubeconfig'), broken]) {
      const run = await runCli(['check', '--kubeconfig', file, '--kernel', demo.kernel]);
      expect(run.code).to.equal(2);
      expect(run.stdout).to.equal('');
      expect(run.stderr).to.match(
        new RegExp(`^kmm-preflight: --kubeconfig ${file}: .*give the kubeconfig file`),
      );
      expect(run.stderr.trimEnd().split('\n')).to.have.length(1);
    }
  });

  it('an API server that does not answer: what was asked, of which server, the network error, no credentials, exit 2', async () => {
    const port = await closedPort();
    const kubeconfig = join(dir, 'closed-kubeconfig');
    await writeFile(
      kubeconfig,
      [
        'apiVersion: v1',
        'kind: Config',
        `clusters: [{name: c, cluster: {server: "https://127.0.0.1:${port}"}}]`,
        'users: [{name: u, user: {token: "secret-token-value"}}]',
        'contexts: [{name: x, context: {cluster: c, user: u}}]',
        'current-context: x',
      ].join('\n'),
    );
    const run = await runCli(['check', '--kubeconfig', kubeconfig, '-n', 'drivers', '--kernel', demo.kernel]);
    expect(run.code).to.equal(2);
    expect(run.stderr.trimEnd()).to.equal(
      `kmm-preflight: listing the Modules of namespace drivers from https://127.0.0.1:${port} ` +
        `(--kubeconfig ${kubeconfig}) failed: the API server did not answer (connect ECONNREFUSED 127.0.0.1:${port})`,
    );
    expect(run.stderr).not.to.contain('secret-token-value');
  });

  for (const [argv, message] of [
    [['check', '-f', '.'], /exactly one of --release-image <image> or --kernel <version>/],
    [['check', '--kernel', '5.14', '-f', '.'], /--kernel: .*at least three components/],
    [['check', '--kernel', '5.14.0-1.x86_64'], /give the Modules with -f/],
    [
      ['check', '--kernel', '5.14.0-1.x86_64', '-f', '/nonexistent/dir'],
      /-f \/nonexistent\/dir: no such file/,
    ],
    [['check', '--kernel', '5.14.0-1.x86_64', '-f', '.', '-o', 'xml'], /argument 'xml' is invalid/],
    [['check', '--kernel', '5.14.0-1.x86_64', '-f', '.', '--rt'], /--rt selects the real-time kernel/],
  ] as const) {
    it(`exits 2 on ${argv.slice(1).join(' ')}`, async () => {
      const run = await runCli([...argv]);
      expect(run.code).to.equal(2);
      expect(run.stderr).to.match(message);
    });
  }
});

/** A local port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}
