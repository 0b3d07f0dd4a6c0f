import { expect } from 'chai';
import type { BuildSpec, KernelMapping, Module, SignSpec } from '../../src/api/module.ts';
import { buildSignConfig } from '../../src/buildsign/config.ts';
import { BuildSignError } from '../../src/buildsign/errors.ts';
import { DOCKERFILE_ANNOTATION, buildJob, signJob, type JobSpecification } from '../../src/buildsign/jobs.ts';
import { needsBuildOrSign, planBuild, planSign, type BuildSignRequest } from '../../src/buildsign/plan.ts';
import { resolveModuleForKernel, type ModuleLoaderData } from '../../src/kernel/resolve.ts';
import { DTK, KERNEL, OWNER } from './fixtures.ts';

/**
 * Build and sign sections at module level and at kernel-mapping level, resolved by src/kernel as the engine does,
 * give the Jobs the merged section asks for: for every combination of build/sign, level and push.
 */

const config = buildSignConfig();
const DOCKERFILE = 'FROM registry.example/base:9\n';
const DIGESTS = { imageRepoSecret: 'r', 'secret/git-token': 'g', key: 'k', cert: 'c' };
const BUILD: BuildSpec = {
  dockerfileConfigMap: { name: 'kmod-dockerfile' },
  buildArgs: [{ name: 'EXTRA', value: 'yes' }],
  secrets: [{ name: 'git-token' }],
};
const SIGN: SignSpec = {
  keySecret: { name: 'signing-key' },
  certSecret: { name: 'signing-cert' },
  unsignedImage: 'registry.example:5000/kmods/kmod-a-unsigned:${KERNEL_FULL_VERSION}',
  filesToSign: ['/opt/lib/modules/${KERNEL_FULL_VERSION}/kmod_a.ko'],
};
const IMAGE = `registry.example:5000/kmods/kmod-a:${KERNEL}`;

type Level = 'module' | 'mapping';

function moduleWith(sections: { build?: Level; sign?: Level }): Module {
  const mapping: KernelMapping = {
    regexp: '^.+$',
    ...(sections.build === 'mapping' ? { build: BUILD } : {}),
    ...(sections.sign === 'mapping' ? { sign: SIGN } : {}),
  };
  return {
    apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
    kind: 'Module',
    metadata: { name: 'kmod-a', namespace: 'team-a' },
    spec: {
      selector: { 'node-role.kubernetes.io/worker': '' },
      imageRepoSecret: { name: 'repo-pull-push' },
      moduleLoader: {
        container: {
          modprobe: { moduleName: 'kmod_a' },
          containerImage: 'registry.example:5000/kmods/kmod-a:${KERNEL_FULL_VERSION}',
          kernelMappings: [mapping],
          ...(sections.build === 'module' ? { build: BUILD } : {}),
          ...(sections.sign === 'module' ? { sign: SIGN } : {}),
        },
      },
    },
  };
}

function resolved(module: Module): ModuleLoaderData {
  const result = resolveModuleForKernel(module, KERNEL);
  if (!result.ok) throw result.error;
  return result.data;
}

function requestFor(data: ModuleLoaderData, pushBuiltImage: boolean): BuildSignRequest {
  return {
    owner: OWNER,
    module: { namespace: data.namespace, name: data.name },
    kernel: data.kernel,
    target: data,
    pushBuiltImage,
    driverToolkitImage: DTK,
  };
}

function jobs(req: BuildSignRequest): JobSpecification[] {
  const build = req.target.build === undefined ? undefined : planBuild(req, config);
  const sign = req.target.sign === undefined ? undefined : planSign(req, config, build);
  return [
    ...(build === undefined ? [] : [buildJob(req, build, DOCKERFILE, DIGESTS, config)]),
    ...(sign === undefined ? [] : [signJob(req, sign, DIGESTS, config)]),
  ];
}

function summary(spec: JobSpecification): string {
  const args = spec.job.spec.template.spec.containers[0]?.args ?? [];
  const push = args.find((a) => a === '--no-push' || a.startsWith('--destination=')) ?? '?';
  const from =
    (spec.job.spec.template.metadata.annotations?.[DOCKERFILE_ANNOTATION] ?? '').split('\n')[0] ?? '';
  return `${spec.stage} ${push}${spec.stage === 'sign' ? ` ${from}` : ''}`;
}

describe('buildsign Jobs from Modules resolved at module and mapping level', () => {
  const UNSIGNED_BUILT = `${IMAGE}_team-a_kmod-a_${OWNER.name}_kmm_unsigned`;
  const GIVEN_UNSIGNED = `registry.example:5000/kmods/kmod-a-unsigned:${KERNEL}`;
  const expected: Record<string, Record<'push' | 'noPush', string[] | string>> = {
    build: { push: [`build --destination=${IMAGE}`], noPush: ['build --no-push'] },
    sign: {
      push: [`sign --destination=${IMAGE} FROM ${GIVEN_UNSIGNED} AS unsigned`],
      noPush: [`sign --no-push FROM ${GIVEN_UNSIGNED} AS unsigned`],
    },
    'build+sign': {
      push: [
        `build --destination=${UNSIGNED_BUILT}`,
        `sign --destination=${IMAGE} FROM ${UNSIGNED_BUILT} AS unsigned`,
      ],
      noPush: 'PUSH_REQUIRED',
    },
  };
  const levels: Level[] = ['module', 'mapping'];
  for (const sections of ['build', 'sign', 'build+sign'] as const) {
    for (const buildLevel of sections.includes('build') ? levels : [undefined]) {
      for (const signLevel of sections.includes('sign') ? levels : [undefined]) {
        for (const push of [true, false]) {
          const title = `${sections} (build ${buildLevel ?? '-'}, sign ${signLevel ?? '-'}), ${push ? 'push' : 'no push'}`;
          it(title, () => {
            const data = resolved(
              moduleWith({
                ...(buildLevel === undefined ? {} : { build: buildLevel }),
                ...(signLevel === undefined ? {} : { sign: signLevel }),
              }),
            );
            const req = requestFor(data, push);
            expect(needsBuildOrSign(req.target)).to.equal(true);
            const want = expected[sections]?.[push ? 'push' : 'noPush'];
            if (typeof want === 'string') {
              expect(() => jobs(req))
                .to.throw(BuildSignError)
                .with.property('code', want);
              return;
            }
            expect(jobs(req).map(summary)).to.deep.equal(want);
          });
        }
      }
    }
  }

  it('the same section at module or at mapping level gives the same Jobs', () => {
    for (const sections of [{ build: 'x' }, { sign: 'x' }, { build: 'x', sign: 'x' }]) {
      const at = (level: Level): string[] =>
        jobs(
          requestFor(
            resolved(
              moduleWith({
                ...('build' in sections ? { build: level } : {}),
                ...('sign' in sections ? { sign: level } : {}),
              }),
            ),
            true,
          ),
        ).map((spec) => spec.name);
      expect(at('module')).to.deep.equal(at('mapping'));
    }
  });

  it('a Module without build or sign for the kernel needs neither', () => {
    expect(needsBuildOrSign(resolved(moduleWith({})))).to.equal(false);
  });

  it('merged sections reach the Jobs: mapping build args override, mapping files to sign are appended', () => {
    const module = moduleWith({ build: 'module', sign: 'module' });
    const container = module.spec.moduleLoader?.container;
    const mapping = container?.kernelMappings[0];
    if (container === undefined || mapping === undefined) throw new Error('fixture');
    mapping.build = { buildArgs: [{ name: 'EXTRA', value: 'from-mapping' }] };
    mapping.sign = { filesToSign: ['/opt/lib/modules/${KERNEL_FULL_VERSION}/kmod_b.ko'] };
    const [build, sign] = jobs(requestFor(resolved(module), true));
    expect(build?.job.spec.template.spec.containers[0]?.args).to.include('--build-arg=EXTRA=from-mapping');
    const dockerfile = sign?.job.spec.template.metadata.annotations?.[DOCKERFILE_ANNOTATION] ?? '';
    expect(dockerfile).to.include(`/opt/lib/modules/${KERNEL}/kmod_a.ko`);
    expect(dockerfile).to.include(`/opt/lib/modules/${KERNEL}/kmod_b.ko`);
  });
});
