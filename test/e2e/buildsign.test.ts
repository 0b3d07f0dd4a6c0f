import { expect } from 'chai';
import { randomBytes } from 'node:crypto';
import type { KubeConfig } from '@kubernetes/client-node';
import type { BuildSpec, SignSpec } from '../../src/api/module.ts';
import { buildSignConfig } from '../../src/buildsign/config.ts';
import type { JobOwner } from '../../src/buildsign/identity.ts';
import type { Job, Pod } from '../../src/buildsign/kube-types.ts';
import type { BuildSignRequest } from '../../src/buildsign/plan.ts';
import { BuildSignStage, type BuildSignProgress } from '../../src/buildsign/stage.ts';
import { createKubeClient, loadKubeConfig, type KubeClient } from '../../src/platform/kube/client.ts';
import { JOB_LABEL_SELECTOR, owningResource } from '../../src/runner/jobs/job-watch.ts';
import { KubeJobStore } from '../../src/runner/jobs/kube-job-store.ts';
import { ensureCluster, type TestCluster } from '../support/cluster.ts';
import { waitFor } from '../support/wait.ts';
import { createBuildSignNamespace, finishJobPod, installCrds } from '../buildsign/e2e-support.ts';

/**
 * The Build and Sign stages against the real API server and its controller-manager, through the runner's
 * KubeJobStore: the Job controller makes the Pods, the test plays the kubelet by writing the Pod's status
 * (phase and termination message) through the /status subresource, and the garbage collector removes Jobs with
 * their PreflightValidationOCP.
 */

const run = randomBytes(3).toString('hex');
const NS = `bs-${run}`;
const KERNEL = '5.14.0-284.el9.x86_64';
const IMAGE = (module: string): string => `registry.example:5000/kmods/${module}:${KERNEL}`;
const DIGEST = `sha256:${'9'.repeat(64)}`;
const BUILD: BuildSpec = {
  dockerfileConfigMap: { name: 'kmod-dockerfile' },
  secrets: [{ name: 'git-token' }],
};
const SIGN: SignSpec = {
  keySecret: { name: 'signing-key' },
  certSecret: { name: 'signing-cert' },
  filesToSign: [`/opt/lib/modules/${KERNEL}/kmod.ko`],
};

describe('e2e: build and sign Jobs on the real API server', function () {
  this.timeout(300_000);
  let cluster: TestCluster;
  let kc: KubeConfig;
  let client: KubeClient;
  let store: KubeJobStore;
  let stage: BuildSignStage;
  const resources: string[] = [];
  // backoffLimit 0: one failed Pod fails the Job, so a failure needs one simulated kubelet report.
  const config = buildSignConfig({ backoffLimit: 0, signerImage: 'registry.example:5000/tools/signer:1' });

  const createResource = async (name: string): Promise<JobOwner> => {
    resources.push(name);
    await cluster.kubectl(
      ['apply', '-f', '-'],
      JSON.stringify({
        apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
        kind: 'PreflightValidationOCP',
        metadata: { name },
        spec: { releaseImage: 'registry.example:5000/ocp/release:4.16.0-x86_64' },
      }),
    );
    const uid = (await cluster.kubectl(['get', 'pfvo', name, '-o', 'jsonpath={.metadata.uid}'])).trim();
    return { apiVersion: 'kmm.sigs.x-k8s.io/v1beta1', kind: 'PreflightValidationOCP', name, uid };
  };

  const request = (
    owner: JobOwner,
    module: string,
    sections: { build?: BuildSpec; sign?: SignSpec },
    pushBuiltImage = true,
  ): BuildSignRequest => ({
    owner,
    module: { namespace: NS, name: module },
    kernel: KERNEL,
    pushBuiltImage,
    target: {
      containerImage: IMAGE(module),
      selector: { 'kmm-preflight-e2e': 'buildsign' },
      imageRepoSecret: { name: 'repo-secret' },
      ...sections,
    },
  });

  const jobsOf = async (owner: JobOwner): Promise<Job[]> =>
    (await store.listJobs(NS, { 'preflight.kmm.sigs.x-k8s.io/owner-uid': owner.uid })).filter(
      (job) => job.metadata.deletionTimestamp === undefined,
    );

  /** Plays the kubelet: the Job's Pod (made by the Job controller) ends with this phase and termination message. */
  const finishPod = (jobName: string, phase: 'Succeeded' | 'Failed', message: string): Promise<void> =>
    finishJobPod(client, store, config.kanikoImage, NS, jobName, phase, message);

  /** Calls the stage until the Job controller has reacted (the Job's condition follows the Pod's phase). */
  const settle = (
    req: BuildSignRequest,
    until: (p: BuildSignProgress) => boolean,
  ): Promise<BuildSignProgress> =>
    waitFor('the stage to settle', async () => {
      const progress = await stage.observeOrStart(req);
      return until(progress) ? progress : undefined;
    });

  before(async () => {
    cluster = await ensureCluster();
    await installCrds(cluster);
    await createBuildSignNamespace(cluster, NS, [
      { kind: 'Secret', metadata: { name: 'git-token' }, stringData: { token: 'not-a-real-token' } },
      {
        kind: 'Secret',
        metadata: { name: 'repo-secret' },
        type: 'kubernetes.io/dockerconfigjson',
        stringData: { '.dockerconfigjson': '{"auths":{}}' },
      },
    ]);
    kc = loadKubeConfig(cluster.kubeconfig);
    client = createKubeClient(kc);
    store = new KubeJobStore(client, kc);
    stage = new BuildSignStage({ jobs: store, inputs: store, config });
  });

  after(async () => {
    if (cluster === undefined) return;
    for (const name of resources) {
      await cluster
        .kubectl(['delete', 'pfvo', name, '--ignore-not-found', '--wait=false'])
        .catch(() => undefined);
    }
    await cluster
      .kubectl(['delete', 'namespace', NS, '--ignore-not-found', '--wait=false'])
      .catch(() => undefined);
  });

  it('build succeeds: the Job is created as specified, reported running, then succeeded with the pushed digest', async () => {
    const owner = await createResource(`bs-${run}-ok`);
    const req = request(owner, 'kmod-ok', { build: BUILD });
    const started = await stage.observeOrStart(req);
    expect(started).to.deep.include({ stage: 'Build', state: 'running' });
    const name = started.job?.name ?? '';
    expect(started.reason).to.equal(`build Job ${NS}/${name} running: started`);

    const job = await store.getJob(NS, name);
    expect(job?.metadata.ownerReferences).to.deep.equal([{ ...owner, controller: true }]);
    expect(owningResource(job ?? { metadata: { name: '', namespace: '' } })).to.equal(owner.name);
    // The API server kept what the Job needs (nothing pruned or defaulted away).
    const container = job?.spec.template.spec.containers[0];
    expect(container?.args).to.include(`--destination=${IMAGE('kmod-ok')}`);
    expect(container?.terminationMessagePolicy).to.equal('FallbackToLogsOnError');
    expect(job?.spec.template.spec.volumes.map((v) => v.name)).to.deep.equal([
      'dockerfile',
      'image-repo-secret',
      'build-secret-0',
    ]);
    const selected = await client.request<{ items: Job[] }>('GET', `/apis/batch/v1/namespaces/${NS}/jobs`, {
      query: { labelSelector: JOB_LABEL_SELECTOR },
    });
    expect(selected.items.map((j) => j.metadata.name)).to.include(name);

    await finishPod(name, 'Succeeded', DIGEST);
    const done = await settle(req, (p) => p.state !== 'running');
    expect(done).to.deep.include({ stage: 'Build', state: 'succeeded', pushed: true });
    expect(done.verify).to.deep.equal({ image: IMAGE('kmod-ok'), digest: DIGEST, signed: false });
    expect(await jobsOf(owner)).to.have.length(1);
  });

  it('build fails: False with the termination message, not "waiting"', async () => {
    const owner = await createResource(`bs-${run}-fail`);
    const req = request(owner, 'kmod-fail', { build: BUILD });
    const name = (await stage.observeOrStart(req)).job?.name ?? '';
    await finishPod(name, 'Failed', 'error building image: make: *** [Makefile:12: all] Error 2');
    const failed = await settle(req, (p) => p.state !== 'running');
    expect(failed).to.deep.include({ stage: 'Build', state: 'failed', definite: false });
    expect(failed.reason).to.match(new RegExp(`^build Job ${NS}/${name} failed: BackoffLimitExceeded`));
    expect(failed.reason).to.contain(
      'exited with code 1 (Error): error building image: make: *** [Makefile:12: all] Error 2',
    );
    // Observed again it stays failed; with rerunFailed it starts again under the same name.
    expect((await stage.observeOrStart(req)).state).to.equal('failed');
    const rerun = await stage.observeOrStart({ ...req, rerunFailed: true });
    expect(rerun).to.deep.include({ state: 'running', job: { namespace: NS, name } });
    expect(await jobsOf(owner)).to.have.length(1);
  });

  it('build then sign: Sign starts after Build succeeded, from the pushed unsigned image', async () => {
    const owner = await createResource(`bs-${run}-chain`);
    const req = request(owner, 'kmod-chain', { build: BUILD, sign: SIGN });
    const building = await stage.observeOrStart(req);
    expect(building).to.deep.include({ stage: 'Build', state: 'running' });
    await finishPod(building.job?.name ?? '', 'Succeeded', `sha256:${'1'.repeat(64)}`);
    const signing = await settle(req, (p) => p.stage === 'Sign');
    expect(signing.state).to.equal('running');
    const signJob = await store.getJob(NS, signing.job?.name ?? '');
    const dockerfile =
      signJob?.spec.template.metadata.annotations?.['preflight.kmm.sigs.x-k8s.io/dockerfile'] ?? '';
    expect(dockerfile.split('\n')[0]).to.equal(
      `FROM ${IMAGE('kmod-chain')}_${NS}_kmod-chain_${owner.name}_kmm_unsigned AS unsigned`,
    );
    await finishPod(signing.job?.name ?? '', 'Succeeded', DIGEST);
    const signed = await settle(req, (p) => p.state !== 'running');
    expect(signed).to.deep.include({ stage: 'Sign', state: 'succeeded', pushed: true });
    expect(signed.verify).to.deep.equal({ image: IMAGE('kmod-chain'), digest: DIGEST, signed: true });
    expect(await jobsOf(owner)).to.have.length(2);
  });

  it('sign from unsignedImage: one sign Job, no build', async () => {
    const owner = await createResource(`bs-${run}-unsigned`);
    const unsignedImage = `registry.example:5000/kmods/unsigned:${KERNEL}`;
    const req = request(owner, 'kmod-signonly', { sign: { ...SIGN, unsignedImage } }, false);
    const signing = await stage.observeOrStart(req);
    expect(signing).to.deep.include({ stage: 'Sign', state: 'running' });
    const job = await store.getJob(NS, signing.job?.name ?? '');
    expect(job?.spec.template.spec.containers[0]?.args).to.include('--no-push');
    expect(job?.spec.template.metadata.annotations?.['preflight.kmm.sigs.x-k8s.io/dockerfile']).to.match(
      new RegExp(`^FROM ${unsignedImage.replaceAll('.', '\\.')} AS unsigned\n`),
    );
    await finishPod(signing.job?.name ?? '', 'Succeeded', DIGEST);
    const signed = await settle(req, (p) => p.state !== 'running');
    expect(signed).to.deep.include({ stage: 'Sign', state: 'succeeded', pushed: false });
    expect(signed.reason).to.contain('the image was not pushed');
    expect(await jobsOf(owner)).to.have.length(1);
  });

  it('build plus sign without push: a clear failure at once, and no Job', async () => {
    const owner = await createResource(`bs-${run}-nopush`);
    const progress = await stage.observeOrStart(
      request(owner, 'kmod-nopush', { build: BUILD, sign: SIGN }, false),
    );
    expect(progress).to.deep.include({ stage: 'Sign', state: 'failed', definite: true });
    expect(progress.reason).to.contain('set spec.pushBuiltImage: true');
    expect(await jobsOf(owner)).to.have.length(0);
  });

  it('a runner restarted while a Job runs adopts it; changed inputs replace it', async () => {
    const owner = await createResource(`bs-${run}-restart`);
    const req = request(owner, 'kmod-restart', { build: BUILD });
    const first = await stage.observeOrStart(req);
    // A new process: its own client, store and stage, nothing shared in memory.
    const restartedConfig = loadKubeConfig(cluster.kubeconfig);
    const restartedStore = new KubeJobStore(createKubeClient(restartedConfig), restartedConfig);
    const restarted = new BuildSignStage({ jobs: restartedStore, inputs: restartedStore, config });
    const adopted = await restarted.observeOrStart(req);
    expect(adopted).to.deep.include({ state: 'running', job: first.job });
    expect(adopted.reason).to.not.contain('started');
    expect((await jobsOf(owner)).map((j) => j.metadata.name)).to.deep.equal([first.job?.name]);

    await cluster.kubectl(
      ['apply', '-n', NS, '-f', '-'],
      JSON.stringify({
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'kmod-dockerfile' },
        data: { dockerfile: 'FROM base:2\nRUN make\n' },
      }),
    );
    const replaced = await restarted.observeOrStart(req);
    expect(replaced.job?.name).to.not.equal(first.job?.name);
    expect(replaced.reason).to.contain(`replacing ${first.job?.name}`);
    await waitFor('the old Job to be gone', async () => {
      const names = (await jobsOf(owner)).map((j) => j.metadata.name);
      return names.length === 1 && names[0] === replaced.job?.name ? true : undefined;
    });
  });

  it('deleting the resource removes its Jobs and their Pods (garbage collection by owner)', async () => {
    const owner = await createResource(`bs-${run}-gc`);
    const req = request(owner, 'kmod-gc', { build: BUILD });
    const name = (await stage.observeOrStart(req)).job?.name ?? '';
    const job = await store.getJob(NS, name);
    if (job === undefined) throw new Error('no Job');
    await waitFor('the Job controller to make a Pod', async () => (await store.listJobPods(job))[0]);
    await cluster.kubectl(['delete', 'pfvo', owner.name, '--wait=false']);
    await waitFor(
      'the garbage collector to remove the Job',
      async () => ((await store.getJob(NS, name)) === undefined ? true : undefined),
      120_000,
    );
    await waitFor(
      'the garbage collector to remove its Pods',
      async () => ((await store.listJobPods(job)).length === 0 ? true : undefined),
      120_000,
    );
  });

  it('reads no Secret bytes into what it returns or stores: digests only', async () => {
    const digest = await store.secretDigest(NS, 'signing-key', ['key']);
    expect(digest).to.match(/^[a-f0-9]{64}$/);
    expect(await store.secretDigest(NS, 'signing-key', ['cert'])).to.equal(undefined);
    expect(await store.secretDigest(NS, 'no-such-secret')).to.equal(undefined);
    expect(await store.configMapValue(NS, 'no-such-configmap', 'dockerfile')).to.equal(undefined);
    // Without a kubelet there is no log to read; the store says so instead of failing.
    const pods = await client.request<{ items: Pod[] }>('GET', `/api/v1/namespaces/${NS}/pods`);
    const somePod = pods.items[0]?.metadata.name ?? 'none';
    expect(await store.podLogTail(NS, somePod, 'kaniko')).to.equal(undefined);
  });
});
