import { expect } from 'chai';
import type { Module } from '../../src/api/module.ts';
import { validateModule, type PreflightDeps } from '../../src/preflight/engine.ts';
import {
  BUILD_SIGN_UNAVAILABLE,
  unavailableBuildSignStage,
  type BuildSignProgress,
  type ImageCheck,
  type ModuleResolution,
} from '../../src/preflight/stages.ts';

const kernel = '5.14.0-284.el9.x86_64';

interface Data {
  containerImage: string;
  build?: object;
  sign?: object;
}

const module: Module = {
  apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
  kind: 'Module',
  metadata: { name: 'm', namespace: 'ns', generation: 1 },
  spec: { selector: {} },
};

interface Scenario {
  resolution?: ModuleResolution<Data>;
  data?: Partial<Data>;
  image?: ImageCheck | Error;
  /** Answers for checks of pushed images, by image name. */
  pushed?: Record<string, ImageCheck>;
  buildSign?: BuildSignProgress | Error;
}

interface Calls {
  image: { image?: string; requireSigned?: boolean }[];
  buildSign: number;
}

function deps(s: Scenario): { deps: PreflightDeps<Data>; calls: Calls } {
  const calls: Calls = { image: [], buildSign: 0 };
  const data: Data = { containerImage: 'reg/m:k', ...s.data };
  return {
    calls,
    deps: {
      resolveModule: () => s.resolution ?? { ok: true, data },
      image: {
        verify: (_ctx, options) => {
          calls.image.push(options ?? {});
          if (options?.image !== undefined) {
            const answer = s.pushed?.[options.image];
            if (answer === undefined) throw new Error(`unexpected check of ${options.image}`);
            return Promise.resolve(answer);
          }
          if (s.image instanceof Error) return Promise.reject(s.image);
          return Promise.resolve(s.image ?? missing);
        },
      },
      buildSign: {
        applies: (d) => d.build !== undefined || d.sign !== undefined,
        advance: () => {
          calls.buildSign += 1;
          if (s.buildSign instanceof Error) return Promise.reject(s.buildSign);
          return Promise.resolve(
            s.buildSign ?? { stage: 'Build', state: 'running', reason: 'Job b running', definite: false },
          );
        },
      },
    },
  };
}

const verified: ImageCheck = {
  verified: true,
  definite: true,
  reason: 'module m found',
  image: 'reg/m:k',
  digest: 'sha256:a',
};
const missing: ImageCheck = {
  verified: false,
  definite: true,
  reason: 'image reg/m:k does not exist',
  image: 'reg/m:k',
};
const unreachable: ImageCheck = {
  verified: false,
  definite: false,
  reason: 'registry unreachable',
  image: 'reg/m:k',
};
const request = { module, kernel, pushBuiltImage: false, platform: { os: 'linux', architecture: 'amd64' } };

describe('preflight engine: validateModule stage table', () => {
  it('no kernel mapping: False, Done, final, with the seed-style reason; no stage runs', async () => {
    const { deps: d, calls } = deps({
      resolution: { ok: false, error: { code: 'NO_MAPPING', message: 'x', definite: true } },
    });
    const out = await validateModule(d, request);
    expect(out).to.include({
      verificationStatus: 'False',
      verificationStage: 'Done',
      statusReason: `no kernel mapping matches ${kernel}`,
      disposition: 'final',
      definite: true,
    });
    expect(calls.image).to.have.length(0);
  });

  it('another definite resolution error (e.g. an invalid regexp) is final with its message', async () => {
    const { deps: d } = deps({
      resolution: {
        ok: false,
        error: { code: 'INVALID_REGEXP', message: 'kernelMappings[0].regexp: bad', definite: true },
      },
    });
    const out = await validateModule(d, request);
    expect(out).to.include({
      verificationStage: 'Done',
      statusReason: 'kernelMappings[0].regexp: bad',
      disposition: 'final',
    });
  });

  it('a transient resolution error is Requeued with backoff, interrupting Image', async () => {
    const { deps: d } = deps({
      resolution: { ok: false, error: { code: 'X', message: 'later', definite: false } },
    });
    const out = await validateModule(d, request);
    expect(out).to.include({
      verificationStatus: 'False',
      verificationStage: 'Requeued',
      disposition: 'backoff',
      definite: false,
      interruptedStage: 'Image',
    });
    // Whether it is retried is the status computation's to say (ValidationMode), not the engine's.
    expect(out.statusReason).to.equal('later');
  });

  it('image verified: True, Done, final; Build and Sign do not run even when their sections apply', async () => {
    const { deps: d, calls } = deps({ image: verified, data: { build: {}, sign: {} } });
    const out = await validateModule(d, request);
    expect(out).to.deep.equal({
      verificationStatus: 'True',
      verificationStage: 'Done',
      statusReason: 'module m found',
      disposition: 'final',
      definite: true,
      image: 'reg/m:k',
      imageDigest: 'sha256:a',
    });
    expect(calls.buildSign).to.equal(0);
  });

  it('image unreachable: Requeued with backoff; Build does not run on a transient answer', async () => {
    const { deps: d, calls } = deps({ image: unreachable, data: { build: {} } });
    const out = await validateModule(d, request);
    expect(out).to.include({ verificationStage: 'Requeued', disposition: 'backoff' });
    expect(out.statusReason).to.equal('registry unreachable');
    expect(calls.buildSign).to.equal(0);
  });

  it('an image stage that throws is treated as transient', async () => {
    const { deps: d } = deps({ image: new Error('boom') });
    const out = await validateModule(d, request);
    expect(out).to.include({ verificationStage: 'Requeued', disposition: 'backoff' });
    expect(out.statusReason).to.contain('boom');
  });

  it('image fails, no build and no sign section: False at Image, retried on the interval', async () => {
    const { deps: d } = deps({ image: missing });
    const out = await validateModule(d, request);
    expect(out).to.include({
      verificationStatus: 'False',
      verificationStage: 'Image',
      statusReason: 'image reg/m:k does not exist',
      disposition: 'retry',
      definite: true,
    });
  });

  it('image fails and build applies: a running build is False at Build, waiting', async () => {
    const { deps: d, calls } = deps({ image: missing, data: { build: {} } });
    const out = await validateModule(d, request);
    expect(out).to.include({
      verificationStage: 'Build',
      disposition: 'waiting',
      verificationStatus: 'False',
    });
    expect(out.statusReason).to.equal('image reg/m:k does not exist; build: Job b running');
    expect(calls.buildSign).to.equal(1);
  });

  it('a failed build Job is False at Build with its reason (never "waiting"), retried on the interval', async () => {
    const { deps: d } = deps({
      image: missing,
      data: { build: {} },
      buildSign: {
        stage: 'Build',
        state: 'failed',
        reason: 'Job b failed: make: *** error 2',
        definite: false,
      },
    });
    const out = await validateModule(d, request);
    expect(out).to.include({ verificationStage: 'Build', disposition: 'retry', verificationStatus: 'False' });
    expect(out.statusReason).to.contain('make: *** error 2');
  });

  it('a refused build or sign (a Secret it needs is missing) is final at its stage until something changes', async () => {
    const { deps: d } = deps({
      image: missing,
      data: { sign: {} },
      buildSign: {
        stage: 'Sign',
        state: 'failed',
        reason: 'cannot sign: Secret ns/key is missing',
        definite: true,
      },
    });
    const out = await validateModule(d, request);
    expect(out).to.include({ verificationStage: 'Sign', disposition: 'final', definite: true });
  });

  it('a build/sign stage that cannot reach the cluster is Requeued', async () => {
    const { deps: d } = deps({ image: missing, data: { build: {} }, buildSign: new Error('api down') });
    const out = await validateModule(d, request);
    expect(out).to.include({ verificationStage: 'Requeued', disposition: 'backoff' });
    expect(out.statusReason).to.contain('api down');
  });

  it('success without push: verified on the Job, the reason says nothing was pushed; no second image check', async () => {
    const { deps: d, calls } = deps({
      image: missing,
      data: { build: {} },
      buildSign: {
        stage: 'Build',
        state: 'succeeded',
        reason: 'build compiles; image not pushed',
        definite: false,
      },
    });
    const out = await validateModule(d, request);
    expect(out).to.include({ verificationStatus: 'True', verificationStage: 'Done', disposition: 'final' });
    expect(out.statusReason).to.contain('image not pushed');
    expect(calls.image).to.have.length(1);
  });

  it('a pushed build is checked again by the Image stage; verified only if the module is really there', async () => {
    const pushedBuild: BuildSignProgress = {
      stage: 'Build',
      state: 'succeeded',
      reason: 'built and pushed',
      definite: false,
      verify: { image: 'reg/m:k', signed: false },
    };
    const good = deps({
      image: missing,
      data: { build: {} },
      buildSign: pushedBuild,
      pushed: { 'reg/m:k': verified },
    });
    expect(await validateModule(good.deps, request)).to.include({
      verificationStatus: 'True',
      verificationStage: 'Done',
    });
    expect(good.calls.image[1]).to.deep.equal({ image: 'reg/m:k', requireSigned: false });

    const bad = deps({
      image: missing,
      data: { build: {} },
      buildSign: pushedBuild,
      pushed: { 'reg/m:k': { ...missing, reason: 'module m.ko is not at /opt/lib/modules/k' } },
    });
    const out = await validateModule(bad.deps, request);
    expect(out).to.include({ verificationStatus: 'False', verificationStage: 'Build', disposition: 'retry' });
    expect(out.statusReason).to.contain('pushed image: module m.ko is not at');

    const flaky = deps({
      image: missing,
      data: { build: {} },
      buildSign: pushedBuild,
      pushed: { 'reg/m:k': unreachable },
    });
    expect(await validateModule(flaky.deps, request)).to.include({ verificationStage: 'Requeued' });
  });

  it('a pushed sign result must carry a signature', async () => {
    const { deps: d, calls } = deps({
      image: missing,
      data: { build: {}, sign: {} },
      buildSign: {
        stage: 'Sign',
        state: 'succeeded',
        reason: 'signed and pushed',
        definite: false,
        verify: { image: 'reg/m:k', signed: true },
      },
      pushed: { 'reg/m:k': verified },
    });
    const out = await validateModule(d, request);
    expect(out).to.include({ verificationStatus: 'True', verificationStage: 'Done' });
    expect(calls.image[1]).to.deep.equal({ image: 'reg/m:k', requireSigned: true });
  });

  it('hands the driver-toolkit image and the rerun request to Build/Sign, and only when given', async () => {
    const seen: { driverToolkitImage?: string; rerunFailed?: boolean }[] = [];
    const base = deps({ image: missing, data: { build: {} } });
    const d: PreflightDeps<Data> = {
      ...base.deps,
      buildSign: {
        applies: () => true,
        advance: (ctx) => {
          seen.push({ driverToolkitImage: ctx.driverToolkitImage, rerunFailed: ctx.rerunFailed });
          return Promise.resolve({
            stage: 'Build',
            state: 'running',
            reason: 'Job b running',
            definite: false,
          });
        },
      },
    };
    await validateModule(d, { ...request, driverToolkitImage: 'reg/dtk@sha256:d', rerunFailed: true });
    await validateModule(d, request);
    expect(seen).to.deep.equal([
      { driverToolkitImage: 'reg/dtk@sha256:d', rerunFailed: true },
      { driverToolkitImage: undefined, rerunFailed: undefined },
    ]);
  });

  it('until Build/Sign are wired, a module that needs them is False at that stage, saying so', async () => {
    const base = deps({ image: missing });
    const d: PreflightDeps<Data> = { ...base.deps, buildSign: unavailableBuildSignStage() };
    const withBuild = await validateModule(
      { ...d, resolveModule: () => ({ ok: true, data: { containerImage: 'reg/m:k', build: {}, sign: {} } }) },
      request,
    );
    expect(withBuild).to.include({
      verificationStatus: 'False',
      verificationStage: 'Build',
      disposition: 'retry',
    });
    expect(withBuild.statusReason).to.equal(`image reg/m:k does not exist; build: ${BUILD_SIGN_UNAVAILABLE}`);
    const withSign = await validateModule(
      { ...d, resolveModule: () => ({ ok: true, data: { containerImage: 'reg/m:k', sign: {} } }) },
      request,
    );
    expect(withSign).to.include({ verificationStage: 'Sign' });
    expect(withSign.statusReason).to.contain(BUILD_SIGN_UNAVAILABLE);
  });
});
