import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import type { Module } from '../../src/api/module.ts';
import type { JobOwner } from '../../src/buildsign/identity.ts';
import { createModuleSigningKey } from '../../src/fixtures/kmod.ts';
import { RegistryClient } from '../../src/image/registry/client.ts';
import { ImageStageCache } from '../../src/image/stage/cache.ts';
import { createKubeClient, loadKubeConfig, type KubeClient } from '../../src/platform/kube/client.ts';
import { createPreflightDeps } from '../../src/preflight/deps.ts';
import { validateModule } from '../../src/preflight/engine.ts';
import type { StageOutcome } from '../../src/preflight/outcome.ts';
import { createBuildSign, type BuildSignWiring } from '../../src/runner/jobs/wiring.ts';
import { ensureCluster, type TestCluster } from '../support/cluster.ts';
import { startRegistry, type TestRegistry } from '../support/registry.ts';
import { waitFor } from '../support/wait.ts';
import { createBuildSignNamespace, finishJobPod, installCrds } from '../buildsign/e2e-support.ts';
import { pushModuleImage } from '../support/module-images.ts';

/**
 * Module verdicts through the shared preflight engine with the real Image stage (a real registry) and the real
 * Build/Sign stage (the real API server and controller-manager), wired as the runner wires them
 * (src/runner/jobs/wiring.ts). The test plays Kaniko (it pushes the image a Job would have built or signed) and
 * the kubelet (it ends the Job's Pod). "Verified" here means what it means in the runner: the pushed image was
 * read back and holds the module for the kernel, signed when signing was asked.
 */

const run = randomBytes(3).toString('hex');
const NS = `bse-${run}`;
const KERNEL = '5.14.0-427.13.1.el9_4.x86_64';
const MODULE = 'kmm_ci_bs';

describe('e2e: Build and Sign verdicts through the preflight engine, a real registry and API server', function () {
  this.timeout(300_000);
  let cluster: TestCluster;
  let registry: TestRegistry;
  let client: KubeClient;
  let buildSign: BuildSignWiring;
  let owner: JobOwner;
  let validate: (module: Module, pushBuiltImage: boolean) => Promise<StageOutcome>;
  const resource = `bse-${run}`;

  const moduleWith = (name: string, sections: { build?: boolean; sign?: boolean }): Module => ({
    apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
    kind: 'Module',
    metadata: { name, namespace: NS, generation: 1 },
    spec: {
      selector: {},
      moduleLoader: {
        container: {
          modprobe: { moduleName: MODULE },
          kernelMappings: [
            {
              regexp: '^.+$',
              containerImage: `${registry.host}/bse-${run}/${name}:\${KERNEL_FULL_VERSION}`,
              registryTLS: { insecure: true },
              ...(sections.build === true
                ? { build: { dockerfileConfigMap: { name: 'kmod-dockerfile' } } }
                : {}),
              ...(sections.sign === true
                ? {
                    sign: {
                      keySecret: { name: 'signing-key' },
                      certSecret: { name: 'signing-cert' },
                      filesToSign: [`/opt/lib/modules/\${KERNEL_FULL_VERSION}/extra/${MODULE}.ko`],
                    },
                  }
                : {}),
            },
          ],
        },
      },
    },
  });

  const jobName = async (module: string, stage: 'build' | 'sign'): Promise<string> =>
    waitFor(`the ${stage} Job of ${module}`, async () => {
      const jobs = await buildSign.store.listJobs(NS, {
        'preflight.kmm.sigs.x-k8s.io/owner-uid': owner.uid,
        'preflight.kmm.sigs.x-k8s.io/module': module,
        'preflight.kmm.sigs.x-k8s.io/stage': stage,
      });
      return jobs[0]?.metadata.name;
    });
  const finish = (name: string, phase: 'Succeeded' | 'Failed', message: string): Promise<void> =>
    finishJobPod(client, buildSign.store, 'gcr.io/kaniko-project/executor:v1.23.2', NS, name, phase, message);
  /** Validates until the verdict leaves `stage`'s waiting state (the Job controller has followed the Pod). */
  const settled = (module: Module, push: boolean, stage: 'Build' | 'Sign'): Promise<StageOutcome> =>
    waitFor(`${module.metadata.name} past ${stage}`, async () => {
      const outcome = await validate(module, push);
      return outcome.disposition === 'waiting' && outcome.verificationStage === stage ? undefined : outcome;
    });

  before(async () => {
    cluster = await ensureCluster();
    await installCrds(cluster);
    registry = await startRegistry('http');
    await createBuildSignNamespace(cluster, NS);
    await cluster.kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
        kind: 'PreflightValidationOCP',
        metadata: { name: resource },
        spec: { releaseImage: `${registry.host}/ocp/release:4.16.0-x86_64` },
      }),
    );
    const uid = (await cluster.kubectl(['get', 'pfvo', resource, '-o', 'jsonpath={.metadata.uid}'])).trim();
    owner = { apiVersion: 'kmm.sigs.x-k8s.io/v1beta1', kind: 'PreflightValidationOCP', name: resource, uid };

    const kc = loadKubeConfig(cluster.kubeconfig);
    client = createKubeClient(kc);
    buildSign = createBuildSign(client, kc, {
      backoffLimit: 0,
      signerImage: `${registry.host}/tools/signer:1`,
      signFilePath: '/usr/local/bin/sign-file',
    });
    const engine = createPreflightDeps({
      image: {
        source: new RegistryClient({ plainHttpRegistries: [registry.host] }),
        cache: new ImageStageCache(),
      },
      buildSign: buildSign.port,
    });
    validate = (module, pushBuiltImage) =>
      validateModule(engine, {
        module,
        kernel: KERNEL,
        pushBuiltImage,
        platform: { os: 'linux', architecture: 'amd64' },
        owner: { name: resource, uid },
      });
  });

  after(async () => {
    if (cluster !== undefined) {
      await cluster
        .kubectl(['delete', 'pfvo', resource, '--ignore-not-found', '--wait=false'])
        .catch(() => undefined);
      await cluster
        .kubectl(['delete', 'namespace', NS, '--ignore-not-found', '--wait=false'])
        .catch(() => undefined);
    }
    await registry?.stop();
  });

  it('image missing → Build → pushed → verified', async () => {
    const module = moduleWith('built', { build: true });
    const waiting = await validate(module, true);
    expect(waiting).to.deep.include({
      verificationStatus: 'False',
      verificationStage: 'Build',
      disposition: 'waiting',
    });
    const name = await jobName('built', 'build');
    expect(waiting.statusReason).to.contain(`build Job ${NS}/${name} running`);
    // Kaniko's part: the image it built lands in the registry; the kubelet's: the pod ends.
    await pushModuleImage(registry, `bse-${run}/built`, KERNEL, { moduleName: MODULE, kernel: KERNEL });
    await finish(name, 'Succeeded', '');
    const verified = await settled(module, true, 'Build');
    expect(verified).to.deep.include({ verificationStatus: 'True', verificationStage: 'Done' });
  });

  it('a pushed build of the wrong kernel is False at Build with what the image holds', async () => {
    const module = moduleWith('wrong', { build: true });
    await validate(module, true);
    const name = await jobName('wrong', 'build');
    await pushModuleImage(registry, `bse-${run}/wrong`, KERNEL, {
      moduleName: MODULE,
      kernel: KERNEL,
      builtFor: '5.14.0-284.25.1.el9_2.x86_64',
    });
    await finish(name, 'Succeeded', '');
    const outcome = await settled(module, true, 'Build');
    expect(outcome).to.deep.include({
      verificationStatus: 'False',
      verificationStage: 'Build',
      disposition: 'retry',
    });
    expect(outcome.statusReason).to.contain(`build Job ${NS}/${name} succeeded and pushed`);
    expect(outcome.statusReason).to.contain('5.14.0-284.25.1.el9_2.x86_64');
  });

  it('a failed build is False at Build with its message', async () => {
    const module = moduleWith('broken', { build: true });
    await validate(module, true);
    const name = await jobName('broken', 'build');
    await finish(name, 'Failed', 'error building image: gcc: fatal error: no input files');
    const outcome = await settled(module, true, 'Build');
    expect(outcome).to.deep.include({
      verificationStatus: 'False',
      verificationStage: 'Build',
      disposition: 'retry',
    });
    expect(outcome.statusReason).to.contain('gcc: fatal error: no input files');
    expect(outcome.statusReason).to.not.match(/waiting/i);
  });

  it('build then sign → the signed image is verified; an unsigned one is not', async () => {
    const key = createModuleSigningKey();
    for (const [name, signed] of [
      ['signed', true],
      ['unsigned', false],
    ] as const) {
      const module = moduleWith(name, { build: true, sign: true });
      expect((await validate(module, true)).verificationStage).to.equal('Build');
      await finish(await jobName(name, 'build'), 'Succeeded', '');
      const signing = await settled(module, true, 'Build');
      expect(signing).to.deep.include({ verificationStage: 'Sign', disposition: 'waiting' });
      await pushModuleImage(registry, `bse-${run}/${name}`, KERNEL, {
        moduleName: MODULE,
        kernel: KERNEL,
        ...(signed ? { signWith: key } : {}),
      });
      await finish(await jobName(name, 'sign'), 'Succeeded', '');
      const outcome = await settled(module, true, 'Sign');
      if (signed) {
        expect(outcome, name).to.deep.include({ verificationStatus: 'True', verificationStage: 'Done' });
      } else {
        expect(outcome, name).to.deep.include({ verificationStatus: 'False', verificationStage: 'Sign' });
        expect(outcome.statusReason).to.contain('is not signed');
      }
    }
  });

  it('without push: success of the Job is the verdict, and says the image was not pushed', async () => {
    const module = moduleWith('local', { build: true });
    await validate(module, false);
    await finish(await jobName('local', 'build'), 'Succeeded', '');
    const outcome = await settled(module, false, 'Build');
    expect(outcome).to.deep.include({ verificationStatus: 'True', verificationStage: 'Done' });
    expect(outcome.statusReason).to.contain('the image was not pushed');
  });

  it('build plus sign without push: a final failure, and no Job', async () => {
    const module = moduleWith('nopush', { build: true, sign: true });
    const outcome = await validate(module, false);
    expect(outcome).to.deep.include({
      verificationStatus: 'False',
      verificationStage: 'Sign',
      disposition: 'final',
    });
    expect(outcome.statusReason).to.contain('pushBuiltImage is false');
    const jobs = await buildSign.store.listJobs(NS, { 'preflight.kmm.sigs.x-k8s.io/module': 'nopush' });
    expect(jobs).to.have.length(0);
  });
});
