import { expect } from 'chai';
import type { Module } from '../../src/api/module.ts';
import { validateModule, type PreflightDeps } from '../../src/preflight/engine.ts';
import {
  BUILD_SIGN_UNAVAILABLE,
  unavailableBuildStage,
  unavailableSignStage,
  type AsyncStageProgress,
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
  build?: AsyncStageProgress | Error;
  sign?: AsyncStageProgress | Error;
}

interface Calls {
  image: { image?: string; requireSigned?: boolean }[];
  build: number;
  sign: { unsignedImage?: string }[];
}

function deps(s: Scenario): { deps: PreflightDeps<Data>; calls: Calls } {
  const calls: Calls = { image: [], build: 0, sign: [] };
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
      build: {
        applies: (d) => d.build !== undefined,
        advance: () => {
          calls.build += 1;
          if (s.build instanceof Error) return Promise.reject(s.build);
          return Promise.resolve(s.build ?? { state: 'running', reason: 'Job b running' });
        },
      },
      sign: {
        applies: (d) => d.sign !== undefined,
        advance: (_ctx, input) => {
          calls.sign.push(input);
          if (s.sign instanceof Error) return Promise.reject(s.sign);
          return Promise.resolve(s.sign ?? { state: 'running', reason: 'Job s running' });
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

  it('a transient resolution error is Requeued with backoff', async () => {
    const { deps: d } = deps({
      resolution: { ok: false, error: { code: 'X', message: 'later', definite: false } },
    });
    const out = await validateModule(d, request);
    expect(out).to.include({
      verificationStatus: 'False',
      verificationStage: 'Requeued',
      disposition: 'backoff',
      definite: false,
    });
    expect(out.statusReason).to.equal('later (will retry)');
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
    expect(calls.build).to.equal(0);
    expect(calls.sign).to.have.length(0);
  });

  it('image unreachable: Requeued with backoff; Build does not run on a transient answer', async () => {
    const { deps: d, calls } = deps({ image: unreachable, data: { build: {} } });
    const out = await validateModule(d, request);
    expect(out).to.include({ verificationStage: 'Requeued', disposition: 'backoff' });
    expect(out.statusReason).to.equal('registry unreachable (will retry)');
    expect(calls.build).to.equal(0);
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
    expect(calls.build).to.equal(1);
  });

  it('a failed build is False at Build with its reason (never "waiting"), retried on the interval', async () => {
    const { deps: d } = deps({
      image: missing,
      data: { build: {} },
      build: { state: 'failed', reason: 'Job b failed: make: *** error 2', definite: true },
    });
    const out = await validateModule(d, request);
    expect(out).to.include({ verificationStage: 'Build', disposition: 'retry' });
    expect(out.statusReason).to.contain('make: *** error 2');
  });

  it('a transient build failure or a throwing build stage is Requeued', async () => {
    for (const build of [
      { state: 'failed', reason: 'api down', definite: false } as const,
      new Error('api down'),
    ]) {
      const { deps: d } = deps({ image: missing, data: { build: {} }, build });
      const out = await validateModule(d, request);
      expect(out).to.include({ verificationStage: 'Requeued', disposition: 'backoff' });
      expect(out.statusReason).to.contain('api down');
    }
  });

  it('build succeeded without push and no sign: verified, the reason says so', async () => {
    const { deps: d, calls } = deps({
      image: missing,
      data: { build: {} },
      build: { state: 'succeeded', reason: 'build compiles; image not pushed' },
    });
    const out = await validateModule(d, request);
    expect(out).to.include({ verificationStatus: 'True', verificationStage: 'Done', disposition: 'final' });
    expect(out.statusReason).to.contain('image not pushed');
    expect(calls.image).to.have.length(1);
  });

  it('build pushed: the pushed image is checked again; verified only if the module is really there', async () => {
    const good = deps({
      image: missing,
      data: { build: {} },
      build: { state: 'succeeded', reason: 'built and pushed', pushedImage: 'reg/m:k' },
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
      build: { state: 'succeeded', reason: 'built and pushed', pushedImage: 'reg/m:k' },
      pushed: { 'reg/m:k': { ...missing, reason: 'module m.ko is not at /opt/lib/modules/k' } },
    });
    const out = await validateModule(bad.deps, request);
    expect(out).to.include({ verificationStatus: 'False', verificationStage: 'Build', disposition: 'retry' });
    expect(out.statusReason).to.contain('pushed image: module m.ko is not at');
  });

  it('image fails, only a sign section: Sign runs with no unsigned image from a build', async () => {
    const { deps: d, calls } = deps({ image: missing, data: { sign: {} } });
    const out = await validateModule(d, request);
    expect(out).to.include({ verificationStage: 'Sign', disposition: 'waiting' });
    expect(calls.sign).to.deep.equal([{}]);
    expect(calls.build).to.equal(0);
  });

  it('build then sign: sign takes the pushed build output; the signed image must be signed', async () => {
    const { deps: d, calls } = deps({
      image: missing,
      data: { build: {}, sign: {} },
      build: { state: 'succeeded', reason: 'built', pushedImage: 'reg/m:k-unsigned' },
      sign: { state: 'succeeded', reason: 'signed', pushedImage: 'reg/m:k' },
      pushed: { 'reg/m:k': verified },
    });
    const out = await validateModule(d, request);
    expect(out).to.include({ verificationStatus: 'True', verificationStage: 'Done' });
    expect(calls.sign).to.deep.equal([{ unsignedImage: 'reg/m:k-unsigned' }]);
    expect(calls.image[1]).to.deep.equal({ image: 'reg/m:k', requireSigned: true });
  });

  it('build running or failed: Sign does not run', async () => {
    for (const build of [
      { state: 'running', reason: 'Job b running' } as const,
      { state: 'failed', reason: 'Job b failed', definite: true } as const,
    ]) {
      const { deps: d, calls } = deps({ image: missing, data: { build: {}, sign: {} }, build });
      const out = await validateModule(d, request);
      expect(out.verificationStage).to.equal('Build');
      expect(calls.sign).to.have.length(0);
    }
  });

  it('a failed sign is False at Sign', async () => {
    const { deps: d } = deps({
      image: missing,
      data: { sign: {} },
      sign: { state: 'failed', reason: 'no image to sign given', definite: true },
    });
    const out = await validateModule(d, request);
    expect(out).to.include({ verificationStage: 'Sign', disposition: 'retry' });
    expect(out.statusReason).to.contain('sign: no image to sign given');
  });

  it('until Build/Sign exist, a module that needs them is False at that stage, saying so', async () => {
    const base = deps({ image: missing });
    const d: PreflightDeps<Data> = {
      ...base.deps,
      build: unavailableBuildStage(),
      sign: unavailableSignStage(),
    };
    const withBuild = await validateModule(
      { ...d, resolveModule: () => ({ ok: true, data: { containerImage: 'reg/m:k', build: {} } }) },
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
