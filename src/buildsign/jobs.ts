import type { BuildArg, RegistryTLS } from '../api/module.ts';
import type { BuildSignConfig } from './config.ts';
import { BuildSignError } from './errors.ts';
import {
  JobAnnotation,
  LABEL_DOMAIN,
  inputsHash,
  jobLabels,
  jobName,
  ownerReference,
  type JobStage,
} from './identity.ts';
import type { Container, Job, PodTemplate, Volume, VolumeMount } from './kube-types.ts';
import type { BuildPlan, BuildSignRequest, SignPlan } from './plan.ts';

/**
 * The build and sign Jobs as plain objects. Both run the Kaniko executor on a Dockerfile that travels in the pod
 * template's annotations (mounted through the downward API), so a Job carries everything it builds: its hash is
 * the hash of its own template plus the digests of the Secrets it mounts, and a change of any of them gives a
 * Job of another name.
 *
 * Kaniko runs as root (it unpacks and snapshots whole filesystems), so the container is explicitly `runAsUser: 0`;
 * the pods get no service-account token, no service links, the runtime's default seccomp profile, and no retries
 * beyond `backoffLimit`. On success Kaniko writes the image digest to the termination log; on failure the kubelet
 * puts the log tail there (`FallbackToLogsOnError`), which is what the status reports.
 */

export const DOCKERFILE_ANNOTATION = `${LABEL_DOMAIN}/dockerfile`;
/** Kubernetes caps all annotations of an object at 256 KiB together. */
export const MAX_DOCKERFILE_BYTES = 128 * 1024;

const WORKSPACE = '/workspace';
const DOCKER_CONFIG_DIR = '/kaniko/.docker';
const SIGNING_DIR = '/kmm-preflight-signing';
const KEY_PATH = '/run/secrets/key/key.pem';
const CERT_PATH = '/run/secrets/cert/cert.pem';

/** A Job ready to create, with the hash its name and labels were made from. */
export interface JobSpecification {
  readonly job: Job;
  readonly name: string;
  readonly namespace: string;
  readonly hash: string;
  readonly stage: JobStage;
  /** What the Job produces (pushed or not). */
  readonly image: string;
  readonly push: boolean;
}

/**
 * Digests of the Secret data a Job mounts, by role (`imageRepoSecret`, `secret/<name>`, `key`, `cert`): part of the
 * hash, so fixing a Secret starts a new Job, while the Secret's bytes never leave the adapter that read them.
 */
export type SecretDigests = Readonly<Record<string, string>>;

function pullTlsArgs(tls: RegistryTLS | undefined): string[] {
  return [
    ...(tls?.insecure === true ? ['--insecure-pull'] : []),
    ...(tls?.insecureSkipTLSVerify === true ? ['--skip-tls-verify-pull'] : []),
  ];
}

function pushArgs(push: boolean, image: string, tls: RegistryTLS | undefined): string[] {
  if (!push) return ['--no-push'];
  return [
    `--destination=${image}`,
    ...(tls?.insecure === true ? ['--insecure'] : []),
    ...(tls?.insecureSkipTLSVerify === true ? ['--skip-tls-verify'] : []),
  ];
}

/** The user's build arguments with KMM's forced ones replacing any of the same name, in a stable order. */
export function effectiveBuildArgs(
  request: BuildSignRequest,
  userArgs: readonly BuildArg[],
  dockerfile: string,
): BuildArg[] {
  const forced: BuildArg[] = [
    { name: 'KERNEL_VERSION', value: request.kernel },
    { name: 'KERNEL_FULL_VERSION', value: request.kernel },
    { name: 'MOD_NAME', value: request.module.name },
    { name: 'MOD_NAMESPACE', value: request.module.namespace },
  ];
  // OpenShift's KMM hands the release's driver-toolkit image to Dockerfiles that ask for it.
  if (request.driverToolkitImage !== undefined && dockerfile.includes('DTK_AUTO')) {
    forced.push({ name: 'DTK_AUTO', value: request.driverToolkitImage });
  }
  const forcedNames = new Set(forced.map((arg) => arg.name));
  const byName = new Map<string, BuildArg>();
  for (const arg of userArgs) if (!forcedNames.has(arg.name)) byName.set(arg.name, arg);
  return [...byName.values(), ...forced];
}

function kanikoContainer(image: string, args: readonly string[], mounts: readonly VolumeMount[]): Container {
  return {
    name: 'kaniko',
    image,
    imagePullPolicy: 'IfNotPresent',
    args: [
      `--dockerfile=${WORKSPACE}/Dockerfile`,
      `--context=dir://${WORKSPACE}/`,
      '--digest-file=/dev/termination-log',
      ...args,
    ],
    volumeMounts: mounts,
    terminationMessagePolicy: 'FallbackToLogsOnError',
    securityContext: { runAsUser: 0 },
  };
}

function dockerfileVolume(): { volume: Volume; mount: VolumeMount } {
  return {
    volume: {
      name: 'dockerfile',
      downwardAPI: {
        items: [
          { path: 'Dockerfile', fieldRef: { fieldPath: `metadata.annotations['${DOCKERFILE_ANNOTATION}']` } },
        ],
      },
    },
    mount: { name: 'dockerfile', mountPath: WORKSPACE, readOnly: true },
  };
}

function secretVolume(
  volumeName: string,
  secretName: string,
  mountPath: string,
  item?: { key: string; path: string },
): { volume: Volume; mount: VolumeMount } {
  return {
    volume: { name: volumeName, secret: { secretName, ...(item === undefined ? {} : { items: [item] }) } },
    mount: { name: volumeName, mountPath, readOnly: true },
  };
}

function pushSecretVolume(request: BuildSignRequest): { volume: Volume; mount: VolumeMount }[] {
  const secret = request.target.imageRepoSecret?.name;
  return secret === undefined
    ? []
    : [
        secretVolume('image-repo-secret', secret, DOCKER_CONFIG_DIR, {
          key: '.dockerconfigjson',
          path: 'config.json',
        }),
      ];
}

function assembleJob(
  request: BuildSignRequest,
  config: BuildSignConfig,
  stage: JobStage,
  parts: {
    dockerfile: string;
    kanikoImage: string;
    args: readonly string[];
    volumes: readonly { volume: Volume; mount: VolumeMount }[];
    nodeSelector: Readonly<Record<string, string>>;
    image: string;
    push: boolean;
    secretDigests: SecretDigests;
  },
): JobSpecification {
  if (Buffer.byteLength(parts.dockerfile) > MAX_DOCKERFILE_BYTES) {
    throw new BuildSignError(
      'DOCKERFILE_TOO_LARGE',
      `the ${stage} Dockerfile is ${Buffer.byteLength(parts.dockerfile)} bytes; at most ${MAX_DOCKERFILE_BYTES} fit in a Job`,
    );
  }
  const spec: PodTemplate['spec'] = {
    restartPolicy: 'Never',
    containers: [
      kanikoContainer(
        parts.kanikoImage,
        parts.args,
        parts.volumes.map((v) => v.mount),
      ),
    ],
    volumes: parts.volumes.map((v) => v.volume),
    ...(Object.keys(parts.nodeSelector).length === 0 ? {} : { nodeSelector: parts.nodeSelector }),
    ...(config.serviceAccountName === undefined ? {} : { serviceAccountName: config.serviceAccountName }),
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
  };
  const podAnnotations = { [DOCKERFILE_ANNOTATION]: parts.dockerfile };
  const hash = inputsHash({ spec, podAnnotations, secretDigests: parts.secretDigests });
  const name = jobName(request.owner, request.module, stage, hash);
  const labels = jobLabels(request.owner, request.module, stage, hash);
  const job: Job = {
    apiVersion: 'batch/v1',
    kind: 'Job',
    metadata: {
      name,
      namespace: request.module.namespace,
      labels,
      annotations: {
        [JobAnnotation.resource]: request.owner.name,
        [JobAnnotation.module]: `${request.module.namespace}/${request.module.name}`,
        [JobAnnotation.kernel]: request.kernel,
        [JobAnnotation.image]: parts.image,
      },
      ownerReferences: [ownerReference(request.owner)],
    },
    spec: {
      completions: 1,
      parallelism: 1,
      backoffLimit: config.backoffLimit,
      activeDeadlineSeconds: config.activeDeadlineSeconds,
      ...(config.ttlSecondsAfterFinished === undefined
        ? {}
        : { ttlSecondsAfterFinished: config.ttlSecondsAfterFinished }),
      template: { metadata: { labels, annotations: podAnnotations }, spec },
    },
  };
  return {
    job,
    name,
    namespace: request.module.namespace,
    hash,
    stage,
    image: parts.image,
    push: parts.push,
  };
}

/**
 * The build Job: Kaniko on the Module's Dockerfile (read from its ConfigMap by the caller), with KMM's forced
 * build arguments, the build Secrets at /run/secrets/<name>, imageRepoSecret as Kaniko's Docker config (pull and
 * push), `--no-push` or `--destination` with the registry TLS flags.
 */
export function buildJob(
  request: BuildSignRequest,
  plan: BuildPlan,
  dockerfile: string,
  secretDigests: SecretDigests,
  config: BuildSignConfig,
): JobSpecification {
  const args = [
    ...effectiveBuildArgs(request, plan.buildArgs, dockerfile).map(
      (arg) => `--build-arg=${arg.name}=${arg.value}`,
    ),
    ...pullTlsArgs(plan.baseImageTLS),
    ...pushArgs(plan.push, plan.image, plan.pushTLS),
  ];
  const volumes = [
    dockerfileVolume(),
    ...pushSecretVolume(request),
    ...plan.secrets.map((secret, index) =>
      secretVolume(`build-secret-${index}`, secret, `/run/secrets/${secret}`),
    ),
  ];
  return assembleJob(request, config, 'build', {
    dockerfile,
    kanikoImage: plan.kanikoImage,
    args,
    volumes,
    nodeSelector: plan.nodeSelector,
    image: plan.image,
    push: plan.push,
    secretDigests,
  });
}

/**
 * The Dockerfile of a sign Job: each file to sign is copied from the unsigned image into the signer image, signed
 * there with `sign-file sha256 <key> <cert> <file>` (the key and certificate are mounted into the Kaniko container,
 * which Kaniko never snapshots), and copied back over the original in a stage based on the unsigned image. Every
 * instruction is in JSON form and the paths were checked to mean literally themselves.
 */
export function signDockerfile(plan: SignPlan): string {
  const signed = plan.filesToSign.map((file, index) => ({ file, work: `${SIGNING_DIR}/${index}.ko` }));
  const json = (values: readonly string[]): string => `[${values.map((v) => JSON.stringify(v)).join(', ')}]`;
  return [
    `FROM ${plan.unsignedImage} AS unsigned`,
    `FROM ${plan.signerImage} AS signer`,
    'USER 0',
    ...signed.flatMap(({ file, work }) => [
      `COPY --from=unsigned ${json([file, work])}`,
      `RUN ${json([plan.signFilePath, 'sha256', KEY_PATH, CERT_PATH, work])}`,
    ]),
    'FROM unsigned',
    ...signed.map(({ file, work }) => `COPY --from=signer ${json([work, file])}`),
    '',
  ].join('\n');
}

/** The sign Job: Kaniko on `signDockerfile(plan)`, producing containerImage, pushed with pushBuiltImage. */
export function signJob(
  request: BuildSignRequest,
  plan: SignPlan,
  secretDigests: SecretDigests,
  config: BuildSignConfig,
): JobSpecification {
  const volumes = [
    dockerfileVolume(),
    ...pushSecretVolume(request),
    secretVolume('signing-key', plan.keySecret, '/run/secrets/key', { key: 'key', path: 'key.pem' }),
    secretVolume('signing-cert', plan.certSecret, '/run/secrets/cert', { key: 'cert', path: 'cert.pem' }),
  ];
  return assembleJob(request, config, 'sign', {
    dockerfile: signDockerfile(plan),
    kanikoImage: plan.kanikoImage,
    args: [...pullTlsArgs(plan.unsignedImageTLS), ...pushArgs(plan.push, plan.image, plan.pushTLS)],
    volumes,
    nodeSelector: plan.nodeSelector,
    image: plan.image,
    push: plan.push,
    secretDigests,
  });
}
