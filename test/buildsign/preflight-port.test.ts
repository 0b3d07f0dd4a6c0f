import { expect } from 'chai';
import type { Module } from '../../src/api/module.ts';
import { buildSignConfig } from '../../src/buildsign/config.ts';
import { buildSignPort, type BuildSignContextExtras } from '../../src/buildsign/preflight-port.ts';
import { BuildSignStage } from '../../src/buildsign/stage.ts';
import { resolveModuleForKernel, type ModuleLoaderData } from '../../src/kernel/resolve.ts';
import { validateModule, type PreflightDeps } from '../../src/preflight/engine.ts';
import type { ImageStage, StageContext } from '../../src/preflight/stages.ts';
import { BUILD, DTK, KERNEL, OWNER, SIGN } from './fixtures.ts';
import { MemoryCluster } from './memory-store.ts';

/**
 * The Build/Sign stage behind the preflight engine's port: the engine's verdicts for a Module whose image is
 * missing, as Jobs run, fail and succeed, and as the produced image is checked again.
 */

const NS = 'team-a';
const IMAGE = `registry.example:5000/kmods/kmod-a:${KERNEL}`;

function moduleWith(sections: { build?: boolean; sign?: boolean }): Module {
  return {
    apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
    kind: 'Module',
    metadata: { name: 'kmod-a', namespace: NS, generation: 1 },
    spec: {
      selector: {},
      imageRepoSecret: { name: 'repo-pull-push' },
      moduleLoader: {
        container: {
          modprobe: { moduleName: 'kmod_a' },
          kernelMappings: [
            {
              regexp: '^.+$',
              containerImage: 'registry.example:5000/kmods/kmod-a:${KERNEL_FULL_VERSION}',
              ...(sections.build === true ? { build: BUILD } : {}),
              ...(sections.sign === true ? { sign: SIGN } : {}),
            },
          ],
        },
      },
    },
  };
}

/** The Image stage as a registry would answer: only images in `present` exist. */
function imageStage(present: Set<string>, checked: string[]): ImageStage<ModuleLoaderData> {
  return {
    verify: (ctx, options) => {
      const image = options?.image ?? ctx.data.containerImage;
      // As src/preflight's Image stage: a signature is required when a sign section applies, or when asked.
      const signed = options?.requireSigned ?? ctx.data.sign !== undefined;
      checked.push(`${image}${signed ? ' (signed)' : ''}`);
      const verified = present.has(image);
      return Promise.resolve({
        verified,
        definite: true,
        image,
        reason: verified ? `${image} holds kmod_a for ${KERNEL}` : `${image} not found`,
      });
    },
  };
}

function setup(sections: { build?: boolean; sign?: boolean }, pushBuiltImage = true) {
  const memory = new MemoryCluster();
  memory.configMaps.set(`${NS}/kmod-dockerfile`, { dockerfile: 'FROM base\n' });
  memory.secrets.set(`${NS}/git-token`, { token: 't' });
  memory.secrets.set(`${NS}/repo-pull-push`, { '.dockerconfigjson': '{}' });
  memory.secrets.set(`${NS}/signing-key`, { key: 'k' });
  memory.secrets.set(`${NS}/signing-cert`, { cert: 'c' });
  const present = new Set<string>();
  const checked: string[] = [];
  // The engine's request carries no driver-toolkit image here, so the signer is configured.
  const stage = new BuildSignStage({
    jobs: memory,
    inputs: memory,
    config: buildSignConfig({
      signerImage: 'quay.io/org/signer:1',
      signFilePath: '/usr/local/bin/sign-file',
    }),
  });
  const deps: PreflightDeps<ModuleLoaderData> = {
    resolveModule: (module, kernel) => resolveModuleForKernel(module, kernel),
    image: imageStage(present, checked),
    buildSign: buildSignPort(stage),
  };
  const module = moduleWith(sections);
  const validate = () =>
    validateModule(deps, {
      module,
      kernel: KERNEL,
      pushBuiltImage,
      platform: { os: 'linux', architecture: 'amd64' },
      owner: { name: OWNER.name, uid: OWNER.uid },
    });
  const jobNamed = (prefix: string): string =>
    [...memory.jobs.values()].map((j) => j.metadata.name).find((n) => n.startsWith(prefix)) ?? '';
  return { memory, present, checked, validate, jobNamed };
}

describe('buildsign behind the preflight engine', () => {
  it('missing image → Build waiting → built and pushed → the pushed image is checked → verified', async () => {
    const { memory, present, checked, validate, jobNamed } = setup({ build: true });
    const waiting = await validate();
    expect(waiting).to.deep.include({
      verificationStatus: 'False',
      verificationStage: 'Build',
      disposition: 'waiting',
    });
    const name = jobNamed('kmod-a-pfv-build-');
    expect(waiting.statusReason).to.contain(`build Job ${NS}/${name} running`);
    memory.finish(NS, name, { succeeded: true });
    // The next pass checks the Module's image first, which the build has now pushed.
    present.add(IMAGE);
    expect(await validate()).to.deep.include({ verificationStatus: 'True', verificationStage: 'Done' });
    expect(checked).to.deep.equal([IMAGE, IMAGE]);
  });

  it('a pushed build whose image does not hold the module is not verified', async () => {
    const { memory, checked, validate, jobNamed } = setup({ build: true });
    await validate();
    const name = jobNamed('kmod-a-pfv-build-');
    memory.finish(NS, name, { succeeded: true });
    const outcome = await validate();
    expect(outcome).to.deep.include({
      verificationStatus: 'False',
      verificationStage: 'Build',
      disposition: 'retry',
    });
    expect(outcome.statusReason).to.contain(`build Job ${NS}/${name} succeeded and pushed ${IMAGE}`);
    expect(outcome.statusReason).to.contain(`pushed image: ${IMAGE} not found`);
    expect(checked).to.deep.equal([IMAGE, IMAGE, IMAGE]);
  });

  it('a failed build is False at Build with the message, retried later', async () => {
    const { memory, validate, jobNamed } = setup({ build: true });
    await validate();
    memory.finish(NS, jobNamed('kmod-a-pfv-build-'), { succeeded: false, message: 'make: *** Error 2' });
    const outcome = await validate();
    expect(outcome).to.deep.include({
      verificationStatus: 'False',
      verificationStage: 'Build',
      disposition: 'retry',
    });
    expect(outcome.statusReason).to.contain('make: *** Error 2');
  });

  it('build then sign: the signed image is checked for a signature', async () => {
    const { memory, present, checked, validate, jobNamed } = setup({ build: true, sign: true });
    expect((await validate()).verificationStage).to.equal('Build');
    memory.finish(NS, jobNamed('kmod-a-pfv-build-'), { succeeded: true });
    expect(await validate()).to.deep.include({ verificationStage: 'Sign', disposition: 'waiting' });
    memory.finish(NS, jobNamed('kmod-a-pfv-sign-'), { succeeded: true });
    present.add(IMAGE);
    expect(await validate()).to.deep.include({ verificationStatus: 'True', verificationStage: 'Done' });
    expect(checked.at(-1)).to.equal(`${IMAGE} (signed)`);
  });

  it('build plus sign without push is a final failure, and no Job exists', async () => {
    const { memory, validate } = setup({ build: true, sign: true }, false);
    const outcome = await validate();
    expect(outcome).to.deep.include({
      verificationStatus: 'False',
      verificationStage: 'Sign',
      disposition: 'final',
    });
    expect(outcome.statusReason).to.contain('pushBuiltImage is false');
    expect(memory.jobs.size).to.equal(0);
  });

  it('without push, a successful build is the verdict and says nothing was pushed', async () => {
    const { memory, validate, jobNamed } = setup({ build: true }, false);
    await validate();
    memory.finish(NS, jobNamed('kmod-a-pfv-build-'), { succeeded: true });
    const outcome = await validate();
    expect(outcome).to.deep.include({ verificationStatus: 'True', verificationStage: 'Done' });
    expect(outcome.statusReason).to.contain('the image was not pushed');
  });

  it('passes the driver-toolkit image and rerunFailed from the stage context', async () => {
    const memory = new MemoryCluster();
    memory.secrets.set(`${NS}/repo-pull-push`, { '.dockerconfigjson': '{}' });
    memory.secrets.set(`${NS}/signing-key`, { key: 'k' });
    memory.secrets.set(`${NS}/signing-cert`, { cert: 'c' });
    const port = buildSignPort(
      new BuildSignStage({ jobs: memory, inputs: memory, config: buildSignConfig() }),
    );
    const resolved = resolveModuleForKernel(moduleWith({ sign: true }), KERNEL);
    if (!resolved.ok) throw resolved.error;
    const data = {
      ...resolved.data,
      sign: { ...resolved.data.sign, unsignedImage: 'quay.io/org/unsigned:1' },
    };
    const ctx: StageContext<ModuleLoaderData> & BuildSignContextExtras = {
      module: moduleWith({ sign: true }),
      data,
      kernel: KERNEL,
      platform: { os: 'linux', architecture: 'amd64' },
      pushBuiltImage: true,
      owner: { name: OWNER.name, uid: OWNER.uid },
    };
    expect((await port.advance(ctx)).reason).to.contain('no signer image');
    const withDtk: typeof ctx = { ...ctx, driverToolkitImage: DTK };
    const rerun: typeof ctx = { ...withDtk, rerunFailed: true };
    expect((await port.advance(withDtk)).state).to.equal('running');
    const job = [...memory.jobs.values()][0];
    if (job === undefined) throw new Error('no Job');
    memory.finish(NS, job.metadata.name, { succeeded: false });
    expect((await port.advance(withDtk)).state).to.equal('failed');
    expect((await port.advance(rerun)).state).to.equal('running');
    const { owner: _owner, ...ownerless } = ctx;
    let error: unknown;
    await port.advance(ownerless).catch((e: unknown) => (error = e));
    expect(String(error)).to.contain('UID of the owning PreflightValidationOCP');
  });
});
