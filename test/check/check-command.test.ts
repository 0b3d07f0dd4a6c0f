import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { expect } from 'chai';
import { parse as parseYaml } from 'yaml';

import type { PreflightValidationOCPStatus } from '../../src/api/preflight.ts';
import { buildDemoWorkspace, type DemoWorkspace } from '../../src/demo/workspace.ts';
import { runCli } from '../support/cli.ts';

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

  const byName = (status: PreflightValidationOCPStatus): Record<string, [string, string, string]> =>
    Object.fromEntries(
      (status.modules ?? []).map((m) => [
        m.name,
        [m.verificationStatus, m.verificationStage, m.statusReason ?? ''],
      ]),
    );

  it('reports every demo Module with the verdict its image deserves, and exits 1', async () => {
    const run = await runCli([...demo.checkArgs, '-o', 'json']);
    expect(run.code).to.equal(1);
    const status = JSON.parse(run.stdout) as PreflightValidationOCPStatus;
    expect(status.targetKernel).to.equal(demo.kernel);
    expect(status.releaseVersion).to.equal('4.19.0');
    expect(status.progress).to.equal('1/6');
    const verdicts = byName(status);
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

  it('gives the same status as YAML, and one JUnit test case per Module', async () => {
    const json = JSON.parse(
      (await runCli([...demo.checkArgs, '-o', 'json'])).stdout,
    ) as PreflightValidationOCPStatus;
    const yaml = parseYaml(
      (await runCli([...demo.checkArgs, '-o', 'yaml'])).stdout,
    ) as PreflightValidationOCPStatus;
    expect(byName(yaml)).to.deep.equal(byName(json));
    const junit = (await runCli([...demo.checkArgs, '-o', 'junit'])).stdout;
    expect((junit.match(/<testcase /g) ?? []).length).to.equal(6);
    expect((junit.match(/<failure /g) ?? []).length).to.equal(5);
    const table = (await runCli(demo.checkArgs)).stdout;
    for (const [name, [verified, stage]] of Object.entries(byName(json))) {
      expect(table).to.match(new RegExp(`kmm-demo\\s+${name}\\s+${verified}\\s+${stage}\\s`));
    }
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

  it('counts invalid Modules and unparsable documents as failures, with the field paths', async () => {
    const mixed = join(dir, 'mixed');
    await mkdir(mixed, { recursive: true });
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
    const run = await runCli(['check', '--kernel', demo.kernel, '-f', mixed, '-o', 'json']);
    expect(run.code).to.equal(1);
    const status = JSON.parse(run.stdout) as PreflightValidationOCPStatus;
    expect(status.modules).to.have.length(1);
    expect(status.modules?.[0]?.statusReason).to.match(
      /invalid Module: spec\.moduleLoader\.container\.kernelMappings\[0\]: .*mutually exclusive/,
    );
    expect(run.stderr).to.match(/bad\.yaml#2: not valid YAML/);
    expect(run.stderr).to.match(/skipped Service s/);
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
