import { expect } from 'chai';
import { buildSignConfig } from '../../src/buildsign/config.ts';
import { JobAnnotation } from '../../src/buildsign/identity.ts';
import { BuildSignStage } from '../../src/buildsign/stage.ts';
import { BUILD, KERNEL, OWNER, SIGN, request } from './fixtures.ts';
import { MemoryCluster } from './memory-store.ts';

const NS = 'team-a';
const IMAGE = `registry.example:5000/kmods/kmod-a:${KERNEL}`;
const DIGEST = `sha256:${'f'.repeat(64)}`;

function cluster(): MemoryCluster {
  const memory = new MemoryCluster();
  memory.configMaps.set(`${NS}/kmod-dockerfile`, { dockerfile: 'FROM base\nRUN make\n' });
  memory.secrets.set(`${NS}/git-token`, { token: 't0k3n' });
  memory.secrets.set(`${NS}/repo-pull-push`, { '.dockerconfigjson': '{"auths":{}}' });
  memory.secrets.set(`${NS}/signing-key`, { key: 'PRIVATE' });
  memory.secrets.set(`${NS}/signing-cert`, { cert: 'CERT' });
  return memory;
}

function stageOver(memory: MemoryCluster): BuildSignStage {
  return new BuildSignStage({ jobs: memory, inputs: memory, config: buildSignConfig() });
}

function onlyJob(memory: MemoryCluster): string {
  const names = [...memory.jobs.values()].map((job) => job.metadata.name);
  expect(names).to.have.length(1);
  return names[0] ?? '';
}

describe('buildsign stage: Jobs over several reconciles', () => {
  it('starts a build, reports it running with the Job name, then verified-to-check after a pushed success', async () => {
    const memory = cluster();
    const stage = stageOver(memory);
    const req = request({ build: BUILD });
    const started = await stage.observeOrStart(req);
    const name = onlyJob(memory);
    expect(started).to.deep.include({
      stage: 'Build',
      state: 'running',
      pushed: false,
      job: { namespace: NS, name },
    });
    expect(started.reason).to.equal(`build Job ${NS}/${name} running: started`);

    const observed = await stage.observeOrStart(req);
    expect(observed.reason).to.equal(`build Job ${NS}/${name} running: no pod yet`);
    expect(memory.calls.filter((c) => c.startsWith('create'))).to.have.length(1);

    memory.finish(NS, name, { succeeded: true, message: DIGEST });
    const done = await stage.observeOrStart(req);
    expect(done).to.deep.include({ stage: 'Build', state: 'succeeded', pushed: true });
    expect(done.verify).to.deep.equal({ image: IMAGE, digest: DIGEST, signed: false });
    expect(done.reason).to.equal(`build Job ${NS}/${name} succeeded and pushed ${IMAGE}@${DIGEST}`);
  });

  it('without push, success is the verdict and says the image was not pushed', async () => {
    const memory = cluster();
    const stage = stageOver(memory);
    const req = request({ build: BUILD }, { pushBuiltImage: false });
    await stage.observeOrStart(req);
    memory.finish(NS, onlyJob(memory), { succeeded: true });
    const done = await stage.observeOrStart(req);
    expect(done).to.deep.include({ state: 'succeeded', pushed: false });
    expect(done).to.not.have.property('verify');
    expect(done.reason).to.contain('the image was not pushed');
  });

  it('a failed build is False with its termination message, never "waiting"', async () => {
    const memory = cluster();
    const stage = stageOver(memory);
    const req = request({ build: BUILD });
    await stage.observeOrStart(req);
    const name = onlyJob(memory);
    memory.finish(NS, name, { succeeded: false, message: 'error building image: exit status 2' });
    const failed = await stage.observeOrStart(req);
    expect(failed).to.deep.include({ stage: 'Build', state: 'failed', definite: false });
    expect(failed.reason).to.equal(
      `build Job ${NS}/${name} failed: BackoffLimitExceeded; pod ${name}-x1: container kaniko exited with code 1: error building image: exit status 2`,
    );
    // Observed again, it stays failed and nothing is recreated.
    expect((await stage.observeOrStart(req)).state).to.equal('failed');
    expect(memory.calls.filter((c) => c.startsWith('create'))).to.have.length(1);
  });

  it('reads the log tail when the pod left no termination message', async () => {
    const memory = cluster();
    const stage = stageOver(memory);
    const req = request({ build: BUILD });
    await stage.observeOrStart(req);
    const name = onlyJob(memory);
    memory.finish(NS, name, { succeeded: false });
    memory.logs.set(`${NS}/${name}-x1`, 'step 3/5: gcc: fatal error: no input files\n');
    const failed = await stage.observeOrStart(req);
    expect(failed.reason).to.match(/exited with code 1; log: step 3\/5: gcc: fatal error: no input files$/);
  });

  it('reruns a failed Job only when asked (the periodic retry)', async () => {
    const memory = cluster();
    const stage = stageOver(memory);
    const req = request({ build: BUILD });
    await stage.observeOrStart(req);
    const name = onlyJob(memory);
    memory.finish(NS, name, { succeeded: false, message: 'registry unreachable' });
    const rerun = await stage.observeOrStart({ ...req, rerunFailed: true });
    expect(rerun).to.deep.include({ state: 'running', job: { namespace: NS, name } });
    expect(memory.calls).to.deep.equal([`create ${name}`, `delete ${name}`, `create ${name}`]);
    expect(memory.jobs.get(`${NS}/${name}`)?.status).to.equal(undefined);
    // A running Job is not disturbed by rerunFailed.
    await stage.observeOrStart({ ...req, rerunFailed: true });
    expect(memory.calls).to.have.length(3);
  });

  it('adopts an existing Job after a restart instead of creating another', async () => {
    const memory = cluster();
    const req = request({ build: BUILD });
    await stageOver(memory).observeOrStart(req);
    const progress = await stageOver(memory).observeOrStart(req);
    expect(progress.state).to.equal('running');
    expect(memory.calls.filter((c) => c.startsWith('create'))).to.have.length(1);
  });

  it('treats a Job created concurrently (409) as adopted', async () => {
    const memory = cluster();
    const stage = stageOver(memory);
    const req = request({ build: BUILD });
    const [a, b] = await Promise.all([stage.observeOrStart(req), stage.observeOrStart(req)]);
    expect(memory.jobs.size).to.equal(1);
    expect([a.state, b.state]).to.deep.equal(['running', 'running']);
    expect([a.reason, b.reason].some((r) => r.endsWith('created concurrently; observing it'))).to.equal(true);
  });

  it('replaces the Job when an input changes: the Dockerfile, a Secret', async () => {
    const memory = cluster();
    const stage = stageOver(memory);
    const req = request({ build: BUILD });
    await stage.observeOrStart(req);
    const first = onlyJob(memory);
    memory.configMaps.set(`${NS}/kmod-dockerfile`, { dockerfile: 'FROM base\nRUN make V=1\n' });
    const replaced = await stage.observeOrStart(req);
    const second = onlyJob(memory);
    expect(second).to.not.equal(first);
    expect(replaced.reason).to.equal(`build Job ${NS}/${second} running: started, replacing ${first}`);
    memory.secrets.set(`${NS}/git-token`, { token: 'rotated' });
    await stage.observeOrStart(req);
    expect(onlyJob(memory)).to.not.equal(second);
  });

  it('leaves Jobs of other resources and other modules alone', async () => {
    const memory = cluster();
    const stage = stageOver(memory);
    await stage.observeOrStart(request({ build: BUILD }));
    await stage.observeOrStart(
      request({ build: BUILD }, { owner: { ...OWNER, name: 'pf-4-17', uid: 'other-uid' } }),
    );
    await stage.observeOrStart(request({ build: BUILD }, { module: { namespace: NS, name: 'kmod-b' } }));
    memory.configMaps.set(`${NS}/kmod-dockerfile`, { dockerfile: 'FROM changed\n' });
    await stage.observeOrStart(request({ build: BUILD }));
    expect(memory.jobs.size).to.equal(3);
    expect(memory.calls.filter((c) => c.startsWith('delete'))).to.have.length(1);
  });

  it('runs Sign after a pushed Build and asks for the signed image to be checked', async () => {
    const memory = cluster();
    const stage = stageOver(memory);
    const req = request({ build: BUILD, sign: SIGN });
    const building = await stage.observeOrStart(req);
    expect(building).to.deep.include({ stage: 'Build', state: 'running' });
    const buildName = onlyJob(memory);
    memory.finish(NS, buildName, { succeeded: true, message: `sha256:${'1'.repeat(64)}` });
    const signing = await stage.observeOrStart(req);
    expect(signing).to.deep.include({ stage: 'Sign', state: 'running' });
    const signName = [...memory.jobs.keys()].map((k) => k.split('/')[1]).find((n) => n !== buildName) ?? '';
    expect(signName).to.match(/^kmod-a-pfv-sign-/);
    expect(memory.jobs.get(`${NS}/${signName}`)?.metadata.annotations?.[JobAnnotation.image]).to.equal(IMAGE);
    memory.finish(NS, signName, { succeeded: true, message: DIGEST });
    const signed = await stage.observeOrStart(req);
    expect(signed).to.deep.include({ stage: 'Sign', state: 'succeeded', pushed: true });
    expect(signed.verify).to.deep.equal({ image: IMAGE, digest: DIGEST, signed: true });
  });

  it('a failed Build stops there: Sign never starts', async () => {
    const memory = cluster();
    const stage = stageOver(memory);
    const req = request({ build: BUILD, sign: SIGN });
    await stage.observeOrStart(req);
    memory.finish(NS, onlyJob(memory), { succeeded: false, message: 'boom' });
    expect(await stage.observeOrStart(req)).to.deep.include({ stage: 'Build', state: 'failed' });
    expect(memory.jobs.size).to.equal(1);
  });

  it('signs the given unsignedImage when no build applies', async () => {
    const memory = cluster();
    const stage = stageOver(memory);
    const progress = await stage.observeOrStart(
      request({ sign: { ...SIGN, unsignedImage: 'quay.io/org/unsigned:1' } }),
    );
    expect(progress).to.deep.include({ stage: 'Sign', state: 'running' });
    expect(onlyJob(memory)).to.match(/^kmod-a-pfv-sign-/);
  });

  it('refuses build plus sign without push at once, creating nothing', async () => {
    const memory = cluster();
    const progress = await stageOver(memory).observeOrStart(
      request({ build: BUILD, sign: SIGN }, { pushBuiltImage: false }),
    );
    expect(progress).to.deep.include({ stage: 'Sign', state: 'failed', definite: true, pushed: false });
    expect(progress.reason).to.match(/^cannot sign: build and sign both apply, but pushBuiltImage is false/);
    expect(memory.calls).to.deep.equal([]);
  });

  it('refuses missing inputs before any Job, naming them; a missing sign key stops Build from starting', async () => {
    const cases: [(m: MemoryCluster) => void, string][] = [
      [
        (m) => m.configMaps.delete(`${NS}/kmod-dockerfile`),
        `cannot build: ConfigMap ${NS}/kmod-dockerfile (build.dockerfileConfigMap) is missing or has no key \`dockerfile\``,
      ],
      [
        (m) => m.secrets.delete(`${NS}/git-token`),
        `cannot build: Secret ${NS}/git-token (build.secrets) is missing`,
      ],
      [
        (m) => m.secrets.set(`${NS}/repo-pull-push`, { '.dockercfg': '{}' }),
        `cannot build: Secret ${NS}/repo-pull-push (imageRepoSecret) is missing or has no key \`.dockerconfigjson\``,
      ],
      [
        (m) => m.secrets.set(`${NS}/signing-key`, { wrong: 'x' }),
        `cannot sign: Secret ${NS}/signing-key (sign.keySecret) is missing or has no key \`key\``,
      ],
      [
        (m) => m.secrets.delete(`${NS}/signing-cert`),
        `cannot sign: Secret ${NS}/signing-cert (sign.certSecret) is missing or has no key \`cert\``,
      ],
    ];
    for (const [breakIt, reason] of cases) {
      const memory = cluster();
      breakIt(memory);
      const progress = await stageOver(memory).observeOrStart(request({ build: BUILD, sign: SIGN }));
      // Not definite: the object may be created or fixed without an edit of the Module, so it is retried.
      expect(progress, reason).to.deep.include({ state: 'failed', definite: false, reason });
      expect(memory.calls, reason).to.deep.equal([]);
    }
  });

  it('does not adopt a Job of that name controlled by someone else', async () => {
    const memory = cluster();
    const stage = stageOver(memory);
    const req = request({ build: BUILD });
    await stage.observeOrStart(req);
    const name = onlyJob(memory);
    const job = memory.jobs.get(`${NS}/${name}`);
    if (job === undefined) throw new Error('no job');
    memory.jobs.set(`${NS}/${name}`, { ...job, metadata: { ...job.metadata, ownerReferences: [] } });
    const progress = await stage.observeOrStart(req);
    expect(progress).to.deep.include({ state: 'failed', definite: false });
    expect(progress.reason).to.contain('is not controlled by PreflightValidationOCP pf-4-16');
  });

  it('rejects a call for a module that needs neither stage (an engine bug)', async () => {
    let error: unknown;
    await stageOver(cluster())
      .observeOrStart(request())
      .catch((e: unknown) => (error = e));
    expect(error).to.be.instanceOf(Error);
  });
});
