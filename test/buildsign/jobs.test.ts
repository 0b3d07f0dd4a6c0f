import { expect } from 'chai';
import type { SignSpec } from '../../src/api/module.ts';
import { buildSignConfig } from '../../src/buildsign/config.ts';
import { BuildSignError } from '../../src/buildsign/errors.ts';
import {
  DOCKERFILE_ANNOTATION,
  MAX_DOCKERFILE_BYTES,
  buildJob,
  effectiveBuildArgs,
  signDockerfile,
  signJob,
  type JobSpecification,
} from '../../src/buildsign/jobs.ts';
import type { Container, Job } from '../../src/buildsign/kube-types.ts';
import { needsBuildOrSign, planBuild, planSign, type BuildSignRequest } from '../../src/buildsign/plan.ts';
import { BUILD, DTK, KERNEL, OWNER, SIGN, request } from './fixtures.ts';

const config = buildSignConfig();
const DOCKERFILE = 'FROM registry.example/base:9\nARG KERNEL_VERSION\nRUN make KVER=${KERNEL_VERSION}\n';
const DIGESTS = { imageRepoSecret: 'r', 'secret/git-token': 'g', key: 'k', cert: 'c' };

function container(spec: JobSpecification): Container {
  const first = spec.job.spec.template.spec.containers[0];
  if (first === undefined) throw new Error('no container');
  return first;
}

function mounts(spec: JobSpecification): Record<string, string> {
  const job: Job = spec.job;
  const volumes = new Map(job.spec.template.spec.volumes.map((v) => [v.name, v]));
  return Object.fromEntries(
    container(spec).volumeMounts.map((m) => {
      const volume = volumes.get(m.name);
      const source =
        volume?.secret !== undefined
          ? `secret:${volume.secret.secretName}${(volume.secret.items ?? []).map((i) => `#${i.key}>${i.path}`).join('')}`
          : volume?.downwardAPI !== undefined
            ? 'downwardAPI'
            : 'other';
      return [m.mountPath, source];
    }),
  );
}

/** Plans and specifies every Job the request needs, as the stage does (the pure part). */
function jobsFor(req: BuildSignRequest): { build?: JobSpecification; sign?: JobSpecification } {
  const buildPlan = req.target.build === undefined ? undefined : planBuild(req, config);
  const signPlan = req.target.sign === undefined ? undefined : planSign(req, config, buildPlan);
  return {
    ...(buildPlan === undefined ? {} : { build: buildJob(req, buildPlan, DOCKERFILE, DIGESTS, config) }),
    ...(signPlan === undefined ? {} : { sign: signJob(req, signPlan, DIGESTS, config) }),
  };
}

const IMAGE = `registry.example:5000/kmods/kmod-a:${KERNEL}`;
const UNSIGNED = `${IMAGE}_team-a_kmod-a_${OWNER.name}_kmm_unsigned`;
const GIVEN_UNSIGNED = `registry.example:5000/kmods/kmod-a-unsigned:${KERNEL}`;

describe('buildsign Job specifications: every combination of build, sign and push', () => {
  type Row = {
    name: string;
    build: boolean;
    sign: false | 'unsignedImage' | 'fromBuild';
    push: boolean;
    expect:
      | { error: string }
      | {
          buildDestination?: string | null;
          signFrom?: string;
          signDestination?: string | null;
        };
  };
  const rows: Row[] = [
    { name: 'build, no push', build: true, sign: false, push: false, expect: { buildDestination: null } },
    { name: 'build, push', build: true, sign: false, push: true, expect: { buildDestination: IMAGE } },
    {
      name: 'sign from unsignedImage, no push',
      build: false,
      sign: 'unsignedImage',
      push: false,
      expect: { signFrom: GIVEN_UNSIGNED, signDestination: null },
    },
    {
      name: 'sign from unsignedImage, push',
      build: false,
      sign: 'unsignedImage',
      push: true,
      expect: { signFrom: GIVEN_UNSIGNED, signDestination: IMAGE },
    },
    {
      name: 'build then sign, push',
      build: true,
      sign: 'fromBuild',
      push: true,
      expect: { buildDestination: UNSIGNED, signFrom: UNSIGNED, signDestination: IMAGE },
    },
    {
      name: 'build then sign, no push',
      build: true,
      sign: 'fromBuild',
      push: false,
      expect: { error: 'PUSH_REQUIRED' },
    },
    {
      name: 'sign without build or unsignedImage',
      build: false,
      sign: 'fromBuild',
      push: true,
      expect: { error: 'NO_IMAGE_TO_SIGN' },
    },
  ];

  for (const row of rows) {
    it(row.name, () => {
      const sign =
        row.sign === false
          ? undefined
          : row.sign === 'unsignedImage'
            ? { ...SIGN, unsignedImage: GIVEN_UNSIGNED }
            : SIGN;
      const req = request(
        { ...(row.build ? { build: BUILD } : {}), ...(sign === undefined ? {} : { sign }) },
        { pushBuiltImage: row.push },
      );
      expect(needsBuildOrSign(req.target)).to.equal(true);
      if ('error' in row.expect) {
        expect(() => jobsFor(req))
          .to.throw(BuildSignError)
          .with.property('code', row.expect.error);
        return;
      }
      const jobs = jobsFor(req);
      const { buildDestination, signFrom, signDestination } = row.expect;
      expect(jobs.build !== undefined).to.equal(buildDestination !== undefined);
      expect(jobs.sign !== undefined).to.equal(signFrom !== undefined);
      if (jobs.build !== undefined) {
        const args = container(jobs.build).args;
        if (buildDestination === null) {
          expect(args).to.include('--no-push');
          expect(args.some((a) => a.startsWith('--destination'))).to.equal(false);
        } else {
          expect(args).to.include(`--destination=${buildDestination}`);
          expect(args).to.not.include('--no-push');
        }
        expect(jobs.build.push).to.equal(row.push);
      }
      if (jobs.sign !== undefined) {
        const args = container(jobs.sign).args;
        const dockerfile = jobs.sign.job.spec.template.metadata.annotations?.[DOCKERFILE_ANNOTATION] ?? '';
        expect(dockerfile.split('\n')[0]).to.equal(`FROM ${signFrom} AS unsigned`);
        if (signDestination === null) expect(args).to.include('--no-push');
        else expect(args).to.include(`--destination=${signDestination}`);
        expect(jobs.sign.image).to.equal(IMAGE);
      }
    });
  }
});

describe('buildsign build Job', () => {
  const req = request({ build: BUILD });
  const spec = buildJob(req, planBuild(req, config), DOCKERFILE, DIGESTS, config);

  it('runs Kaniko on the Dockerfile from the pod annotations, writing the digest to the termination log', () => {
    const c = container(spec);
    expect(c.image).to.equal(config.kanikoImage);
    expect(c.args.slice(0, 3)).to.deep.equal([
      '--dockerfile=/workspace/Dockerfile',
      '--context=dir:///workspace/',
      '--digest-file=/dev/termination-log',
    ]);
    expect(spec.job.spec.template.metadata.annotations).to.deep.equal({
      [DOCKERFILE_ANNOTATION]: DOCKERFILE,
    });
    expect(c.terminationMessagePolicy).to.equal('FallbackToLogsOnError');
  });

  it("forces KMM's build arguments over the user's and keeps the others", () => {
    const args = container(spec).args.filter((a) => a.startsWith('--build-arg='));
    expect(args).to.deep.equal([
      '--build-arg=EXTRA=yes',
      `--build-arg=KERNEL_VERSION=${KERNEL}`,
      `--build-arg=KERNEL_FULL_VERSION=${KERNEL}`,
      '--build-arg=MOD_NAME=kmod-a',
      '--build-arg=MOD_NAMESPACE=team-a',
    ]);
    const overridden = effectiveBuildArgs(
      req,
      [
        { name: 'MOD_NAME', value: 'evil' },
        { name: 'A', value: '1' },
      ],
      'FROM x',
    );
    expect(overridden.filter((a) => a.name === 'MOD_NAME')).to.deep.equal([
      { name: 'MOD_NAME', value: 'kmod-a' },
    ]);
  });

  it('passes the release driver-toolkit as DTK_AUTO only to Dockerfiles that use it', () => {
    expect(effectiveBuildArgs(req, [], 'FROM ${DTK_AUTO} AS builder').at(-1)).to.deep.equal({
      name: 'DTK_AUTO',
      value: DTK,
    });
    expect(effectiveBuildArgs(req, [], 'FROM x').map((a) => a.name)).to.not.include('DTK_AUTO');
  });

  it('mounts the build secrets at /run/secrets/<name> and imageRepoSecret as the Docker config', () => {
    expect(mounts(spec)).to.deep.equal({
      '/workspace': 'downwardAPI',
      '/kaniko/.docker': 'secret:repo-pull-push#.dockerconfigjson>config.json',
      '/run/secrets/git-token': 'secret:git-token',
    });
  });

  it('mounts a Secret listed at module and mapping level once', () => {
    const twice = request({
      build: { ...BUILD, secrets: [{ name: 'git-token' }, { name: 'other' }, { name: 'git-token' }] },
    });
    const s = buildJob(twice, planBuild(twice, config), DOCKERFILE, DIGESTS, config);
    expect(Object.keys(mounts(s))).to.deep.equal([
      '/workspace',
      '/kaniko/.docker',
      '/run/secrets/git-token',
      '/run/secrets/other',
    ]);
  });

  it('has no Docker config without imageRepoSecret', () => {
    const anonymous = request({ build: BUILD, imageRepoSecret: undefined });
    const s = buildJob(anonymous, planBuild(anonymous, config), DOCKERFILE, {}, config);
    expect(Object.keys(mounts(s))).to.not.include('/kaniko/.docker');
  });

  it('maps base-image and push registry TLS to the Kaniko flags', () => {
    const tls = request({
      build: { ...BUILD, baseImageRegistryTLS: { insecure: true, insecureSkipTLSVerify: true } },
      registryTLS: { insecure: true, insecureSkipTLSVerify: true },
    });
    const args = container(buildJob(tls, planBuild(tls, config), DOCKERFILE, DIGESTS, config)).args;
    expect(args).to.include.members([
      '--insecure-pull',
      '--skip-tls-verify-pull',
      '--insecure',
      '--skip-tls-verify',
    ]);
    const noPushTls = request({ build: BUILD, registryTLS: { insecure: true } }, { pushBuiltImage: false });
    const noPushArgs = container(
      buildJob(noPushTls, planBuild(noPushTls, config), DOCKERFILE, DIGESTS, config),
    ).args;
    expect(noPushArgs).to.not.include('--insecure');
    expect(args.filter((a) => a.includes('insecure') || a.includes('skip-tls'))).to.have.length(4);
    expect(
      container(spec).args.filter((a) => a.includes('insecure') || a.includes('skip-tls')),
    ).to.have.length(0);
  });

  it('replaces the Kaniko tag with kanikoParams.tag and uses build.selector over the Module selector', () => {
    const custom = request({
      build: { ...BUILD, kanikoParams: { tag: 'v1.9.0-debug' }, selector: { arch: 'arm64' } },
    });
    const s = buildJob(custom, planBuild(custom, config), DOCKERFILE, DIGESTS, config);
    expect(container(s).image).to.equal('gcr.io/kaniko-project/executor:v1.9.0-debug');
    expect(s.job.spec.template.spec.nodeSelector).to.deep.equal({ arch: 'arm64' });
    expect(spec.job.spec.template.spec.nodeSelector).to.deep.equal({ 'node-role.kubernetes.io/worker': '' });
  });

  it('is owned by the resource, labelled, bounded and locked down', () => {
    const { metadata, spec: jobSpec } = spec.job;
    expect(metadata.namespace).to.equal('team-a');
    expect(metadata.ownerReferences).to.deep.equal([{ ...OWNER, controller: true }]);
    expect(metadata.labels).to.include({
      'app.kubernetes.io/managed-by': 'kmm-preflight',
      'preflight.kmm.sigs.x-k8s.io/owner-uid': OWNER.uid,
      'preflight.kmm.sigs.x-k8s.io/module': 'kmod-a',
      'preflight.kmm.sigs.x-k8s.io/stage': 'build',
      'preflight.kmm.sigs.x-k8s.io/inputs-hash': spec.hash,
    });
    expect(metadata.annotations).to.include({
      'preflight.kmm.sigs.x-k8s.io/resource': OWNER.name,
      'preflight.kmm.sigs.x-k8s.io/module': 'team-a/kmod-a',
      'preflight.kmm.sigs.x-k8s.io/kernel': KERNEL,
    });
    expect(jobSpec.template.metadata.labels).to.deep.equal(metadata.labels);
    expect(jobSpec).to.include({
      backoffLimit: 1,
      activeDeadlineSeconds: 3600,
      ttlSecondsAfterFinished: 86400,
      completions: 1,
    });
    expect(jobSpec.template.spec).to.include({
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      enableServiceLinks: false,
    });
    expect(container(spec).securityContext).to.deep.equal({ runAsUser: 0 });
    const bare = buildJob(
      req,
      planBuild(req, config),
      DOCKERFILE,
      DIGESTS,
      buildSignConfig({ ttlSecondsAfterFinished: undefined, serviceAccountName: 'builder' }),
    );
    expect(bare.job.spec).to.not.have.property('ttlSecondsAfterFinished');
    expect(bare.job.spec.template.spec.serviceAccountName).to.equal('builder');
  });

  it('changes name and hash with the Dockerfile, a Secret, an argument or the kernel, and with nothing else', () => {
    const plan = planBuild(req, config);
    const again = buildJob(req, plan, DOCKERFILE, DIGESTS, config);
    expect(again.name).to.equal(spec.name);
    expect(again.hash).to.equal(spec.hash);
    const variants = [
      buildJob(req, plan, `${DOCKERFILE}RUN true\n`, DIGESTS, config),
      buildJob(req, plan, DOCKERFILE, { ...DIGESTS, 'secret/git-token': 'rotated' }, config),
      buildJob(req, { ...plan, buildArgs: [{ name: 'EXTRA', value: 'no' }] }, DOCKERFILE, DIGESTS, config),
      buildJob({ ...req, kernel: '5.14.0-285.el9.x86_64' }, plan, DOCKERFILE, DIGESTS, config),
    ];
    expect(new Set([spec.name, ...variants.map((v) => v.name)]).size).to.equal(5);
    // Retry and retention settings do not change what is built, so they do not replace Jobs.
    expect(buildJob(req, plan, DOCKERFILE, DIGESTS, buildSignConfig({ backoffLimit: 3 })).name).to.equal(
      spec.name,
    );
  });

  it('refuses a Dockerfile too large for the annotations', () => {
    expect(() => buildJob(req, planBuild(req, config), 'x'.repeat(MAX_DOCKERFILE_BYTES + 1), DIGESTS, config))
      .to.throw(BuildSignError)
      .with.property('code', 'DOCKERFILE_TOO_LARGE');
  });

  it('refuses a build without a Dockerfile ConfigMap, or without an image to push to', () => {
    const noConfigMap = request({ build: { buildArgs: [] } });
    expect(() => planBuild(noConfigMap, config))
      .to.throw(BuildSignError, 'build.dockerfileConfigMap')
      .with.property('code', 'NO_DOCKERFILE_CONFIGMAP');
    const noImage = request({ build: BUILD, containerImage: '' });
    expect(() => planBuild(noImage, config))
      .to.throw(BuildSignError, 'containerImage')
      .with.property('code', 'NO_CONTAINER_IMAGE');
    // Without push the destination does not matter: Kaniko builds and discards.
    expect(
      planBuild(request({ build: BUILD, containerImage: '' }, { pushBuiltImage: false }), config).push,
    ).to.equal(false);
    const digest = request({ build: BUILD, containerImage: `quay.io/x@sha256:${'e'.repeat(64)}` });
    expect(() => planBuild(digest, config))
      .to.throw(BuildSignError, 'digest')
      .with.property('code', 'INVALID_IMAGE');
  });
});

describe('buildsign sign Job', () => {
  const req = request({
    sign: {
      ...SIGN,
      unsignedImage: GIVEN_UNSIGNED,
      filesToSign: [...(SIGN.filesToSign ?? []), `/opt/lib/modules/${KERNEL}/kmod_b.ko`],
    },
  });
  const plan = planSign(req, config, undefined);
  const spec = signJob(req, plan, DIGESTS, config);

  it("signs each file with the kernel's sign-file in the driver-toolkit and copies it back", () => {
    expect(signDockerfile(plan)).to.equal(
      [
        `FROM ${GIVEN_UNSIGNED} AS unsigned`,
        `FROM ${DTK} AS signer`,
        'USER 0',
        `COPY --from=unsigned ["/opt/lib/modules/${KERNEL}/kmod_a.ko", "/kmm-preflight-signing/0.ko"]`,
        `RUN ["/usr/src/kernels/${KERNEL}/scripts/sign-file", "sha256", "/run/secrets/key/key.pem", "/run/secrets/cert/cert.pem", "/kmm-preflight-signing/0.ko"]`,
        `COPY --from=unsigned ["/opt/lib/modules/${KERNEL}/kmod_b.ko", "/kmm-preflight-signing/1.ko"]`,
        `RUN ["/usr/src/kernels/${KERNEL}/scripts/sign-file", "sha256", "/run/secrets/key/key.pem", "/run/secrets/cert/cert.pem", "/kmm-preflight-signing/1.ko"]`,
        'FROM unsigned',
        `COPY --from=signer ["/kmm-preflight-signing/0.ko", "/opt/lib/modules/${KERNEL}/kmod_a.ko"]`,
        `COPY --from=signer ["/kmm-preflight-signing/1.ko", "/opt/lib/modules/${KERNEL}/kmod_b.ko"]`,
        '',
      ].join('\n'),
    );
    expect(spec.job.spec.template.metadata.annotations?.[DOCKERFILE_ANNOTATION]).to.equal(
      signDockerfile(plan),
    );
  });

  it('uses a configured signer image and sign-file path', () => {
    const custom = buildSignConfig({
      signerImage: 'quay.io/org/signer:1',
      signFilePath: '/usr/local/bin/sign-file',
    });
    const dockerfile = signDockerfile(planSign(req, custom, undefined));
    expect(dockerfile).to.include('FROM quay.io/org/signer:1 AS signer');
    expect(dockerfile).to.include('RUN ["/usr/local/bin/sign-file", "sha256"');
    expect(() => planSign({ ...req, driverToolkitImage: undefined }, config, undefined))
      .to.throw(BuildSignError)
      .with.property('code', 'NO_SIGNER_IMAGE');
  });

  it('mounts the key and certificate Secrets under their data keys', () => {
    expect(mounts(spec)).to.deep.equal({
      '/workspace': 'downwardAPI',
      '/kaniko/.docker': 'secret:repo-pull-push#.dockerconfigjson>config.json',
      '/run/secrets/key': 'secret:signing-key#key>key.pem',
      '/run/secrets/cert': 'secret:signing-cert#cert>cert.pem',
    });
  });

  it('pulls with unsignedImageRegistryTLS, or with registryTLS when signing what Build pushed', () => {
    const given = request({
      sign: {
        ...SIGN,
        unsignedImage: GIVEN_UNSIGNED,
        unsignedImageRegistryTLS: { insecureSkipTLSVerify: true },
      },
      registryTLS: { insecure: true },
    });
    expect(container(signJob(given, planSign(given, config, undefined), DIGESTS, config)).args).to.deep.equal(
      [
        '--dockerfile=/workspace/Dockerfile',
        '--context=dir:///workspace/',
        '--digest-file=/dev/termination-log',
        '--skip-tls-verify-pull',
        `--destination=${IMAGE}`,
        '--insecure',
      ],
    );
    const chained = request({ build: BUILD, sign: SIGN, registryTLS: { insecure: true } });
    const signArgs = container(
      signJob(chained, planSign(chained, config, planBuild(chained, config)), DIGESTS, config),
    ).args;
    expect(signArgs).to.include.members(['--insecure-pull', '--insecure', `--destination=${IMAGE}`]);
  });

  it('changes name when the key or certificate changes', () => {
    expect(signJob(req, plan, { ...DIGESTS, key: 'new' }, config).name).to.not.equal(spec.name);
    expect(signJob(req, plan, { ...DIGESTS, cert: 'new' }, config).name).to.not.equal(spec.name);
    expect(signJob(req, plan, DIGESTS, config).name).to.equal(spec.name);
    expect(spec.name).to.match(/^kmod-a-pfv-sign-[a-f0-9]{10}$/);
  });

  it('refuses missing keys, no files, and paths that are not literal absolute files', () => {
    const cases: [SignSpec, string][] = [
      [{ keySecret: undefined }, 'NO_SIGNING_KEY'],
      [{ certSecret: undefined }, 'NO_SIGNING_KEY'],
      [{ filesToSign: [] }, 'NO_FILES_TO_SIGN'],
      [{ filesToSign: ['lib/modules/x.ko'] }, 'INVALID_FILE_TO_SIGN'],
      [{ filesToSign: ['/opt/$X.ko'] }, 'INVALID_FILE_TO_SIGN'],
      [{ filesToSign: ['/opt/*.ko'] }, 'INVALID_FILE_TO_SIGN'],
      [{ filesToSign: ['/opt/a.ko"]\nRUN ["evil'] }, 'INVALID_FILE_TO_SIGN'],
      [{ filesToSign: ['/opt/dir/'] }, 'INVALID_FILE_TO_SIGN'],
      [{ unsignedImage: 'not an image' }, 'INVALID_IMAGE'],
    ];
    for (const [override, code] of cases) {
      const bad = request({ sign: { ...SIGN, unsignedImage: GIVEN_UNSIGNED, ...override } });
      expect(() => planSign(bad, config, undefined), code)
        .to.throw(BuildSignError)
        .with.property('code', code);
    }
  });
});
