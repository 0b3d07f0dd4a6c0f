import type { BuildArg, BuildSpec, RegistryTLS, SignSpec } from '../api/module.ts';
import type { BuildSignConfig } from './config.ts';
import { BuildSignError } from './errors.ts';
import type { JobOwner, ModuleRef } from './identity.ts';
import { pushableImage, registryImage, unsignedImageName, withTag } from './image-name.ts';

/**
 * Which of Build and Sign a Module needs for the kernel, and what each one reads and produces, decided from the
 * Module's merged kernel-mapping data alone. Everything a Job cannot do is found here, before any Job exists.
 */

/** The fields of the merged ModuleLoaderData (src/kernel `resolveModuleForKernel`) that Build and Sign read. */
export interface BuildSignTarget {
  /** Substituted for the kernel; may be empty when the Module names none. */
  readonly containerImage: string;
  readonly build?: BuildSpec;
  /** `unsignedImage` and `filesToSign` already substituted for the kernel. */
  readonly sign?: SignSpec;
  readonly registryTLS?: RegistryTLS;
  readonly imageRepoSecret?: { readonly name: string };
  readonly selector: Readonly<Record<string, string>>;
}

export interface BuildSignRequest {
  /** The PreflightValidationOCP that owns the Jobs. */
  readonly owner: JobOwner;
  readonly module: ModuleRef;
  /** The target kernel. */
  readonly kernel: string;
  readonly target: BuildSignTarget;
  /** The resource's `spec.pushBuiltImage`. */
  readonly pushBuiltImage: boolean;
  /** The release's driver-toolkit image: the default signer, and the value of the `DTK_AUTO` build argument. */
  readonly driverToolkitImage?: string;
  /**
   * Start again a Job that failed with the same inputs (the engine's periodic retry of failed modules); otherwise
   * a failed Job stands as the verdict until an input changes.
   */
  readonly rerunFailed?: boolean;
}

export interface BuildPlan {
  readonly dockerfileConfigMap: string;
  readonly buildArgs: readonly BuildArg[];
  readonly secrets: readonly string[];
  readonly baseImageTLS?: RegistryTLS;
  readonly push: boolean;
  /** What the build produces: containerImage, or the temporary unsigned image when Sign follows. */
  readonly image: string;
  readonly pushTLS?: RegistryTLS;
  readonly kanikoImage: string;
  readonly nodeSelector: Readonly<Record<string, string>>;
}

export interface SignPlan {
  /** The image holding the unsigned modules: Build's product or `sign.unsignedImage`. */
  readonly unsignedImage: string;
  readonly unsignedImageTLS?: RegistryTLS;
  readonly fromBuild: boolean;
  readonly keySecret: string;
  readonly certSecret: string;
  readonly filesToSign: readonly string[];
  readonly signerImage: string;
  readonly signFilePath: string;
  readonly push: boolean;
  /** Always the Module's containerImage for the kernel. */
  readonly image: string;
  readonly pushTLS?: RegistryTLS;
  readonly kanikoImage: string;
  readonly nodeSelector: Readonly<Record<string, string>>;
}

/** True when a build or sign section applies to the kernel (module or mapping level, already merged). */
export function needsBuildOrSign(target: BuildSignTarget): boolean {
  return target.build !== undefined || target.sign !== undefined;
}

// Dockerfile instructions substitute `$VAR` even in JSON form, and a line break would end the instruction, so a
// path is accepted only if it means literally itself.
const SAFE_PATH = /^\/[^\s"'$\\*?[\]]*$/;

function checkFilesToSign(files: readonly string[]): readonly string[] {
  if (files.length === 0) {
    throw new BuildSignError(
      'NO_FILES_TO_SIGN',
      'sign.filesToSign is empty: list the module files to sign, e.g. /opt/lib/modules/${KERNEL_FULL_VERSION}/my.ko',
    );
  }
  files.forEach((file, index) => {
    if (!SAFE_PATH.test(file) || file.endsWith('/')) {
      throw new BuildSignError(
        'INVALID_FILE_TO_SIGN',
        `sign.filesToSign[${index}]: "${file}" must be an absolute file path without spaces, quotes, $, \\ or glob characters`,
      );
    }
  });
  return files;
}

function requireContainerImage(target: BuildSignTarget, why: string): string {
  if (target.containerImage === '') {
    throw new BuildSignError('NO_CONTAINER_IMAGE', `containerImage is empty for this kernel, but ${why}`);
  }
  return pushableImage(target.containerImage, 'containerImage');
}

function kanikoImageFor(config: BuildSignConfig, build: BuildSpec | undefined): string {
  const tag = build?.kanikoParams?.tag;
  return tag === undefined || tag === ''
    ? config.kanikoImage
    : withTag(config.kanikoImage, tag, 'build.kanikoParams.tag');
}

/**
 * The build for this request (its target must have a build section), or a BuildSignError saying why it cannot run.
 */
export function planBuild(request: BuildSignRequest, config: BuildSignConfig): BuildPlan {
  const { target } = request;
  const { build } = target;
  if (build === undefined)
    throw new Error('planBuild: no build section applies (check needsBuildOrSign first)');
  const configMap = build.dockerfileConfigMap?.name;
  if (configMap === undefined) {
    throw new BuildSignError(
      'NO_DOCKERFILE_CONFIGMAP',
      'build.dockerfileConfigMap is not set: name the ConfigMap holding the Dockerfile (key `dockerfile`)',
    );
  }
  let image: string;
  if (target.sign !== undefined) {
    image = unsignedImageName(requireContainerImage(target, 'the build must push an image for signing'), {
      namespace: request.module.namespace,
      moduleName: request.module.name,
      resourceName: request.owner.name,
    });
  } else if (request.pushBuiltImage) {
    image = requireContainerImage(target, 'the built image is pushed there');
  } else {
    image = target.containerImage;
  }
  return {
    dockerfileConfigMap: configMap,
    buildArgs: build.buildArgs ?? [],
    // The merge appends mapping secrets to module ones; one mount per Secret.
    secrets: [...new Set((build.secrets ?? []).map((secret) => secret.name))],
    ...(build.baseImageRegistryTLS === undefined ? {} : { baseImageTLS: build.baseImageRegistryTLS }),
    push: request.pushBuiltImage,
    image,
    ...(target.registryTLS === undefined ? {} : { pushTLS: target.registryTLS }),
    kanikoImage: kanikoImageFor(config, build),
    nodeSelector: build.selector ?? target.selector,
  };
}

/**
 * The sign for this request (its target must have a sign section), reading `build`'s product when a build
 * applies, or a BuildSignError saying why it cannot run. Build plus Sign without `pushBuiltImage` is refused here,
 * before any Job exists: Sign pulls Build's product from the registry, so nothing would ever be signed.
 */
export function planSign(
  request: BuildSignRequest,
  config: BuildSignConfig,
  build: BuildPlan | undefined,
): SignPlan {
  const { target } = request;
  const { sign } = target;
  if (sign === undefined) throw new Error('planSign: no sign section applies (check needsBuildOrSign first)');
  if (build !== undefined && !request.pushBuiltImage) {
    throw new BuildSignError(
      'PUSH_REQUIRED',
      'build and sign both apply, but pushBuiltImage is false: the sign Job pulls the built image from the ' +
        'registry, so set spec.pushBuiltImage: true on the PreflightValidationOCP',
    );
  }
  if (sign.keySecret?.name === undefined || sign.certSecret?.name === undefined) {
    throw new BuildSignError(
      'NO_SIGNING_KEY',
      'sign.keySecret and sign.certSecret must both name Secrets (data keys `key` and `cert`)',
    );
  }
  let unsignedImage: string;
  let unsignedImageTLS: RegistryTLS | undefined;
  if (build !== undefined) {
    unsignedImage = build.image;
    unsignedImageTLS = build.pushTLS;
  } else if (sign.unsignedImage !== undefined && sign.unsignedImage !== '') {
    registryImage(sign.unsignedImage, 'sign.unsignedImage');
    unsignedImage = sign.unsignedImage;
    unsignedImageTLS = sign.unsignedImageRegistryTLS;
  } else {
    throw new BuildSignError(
      'NO_IMAGE_TO_SIGN',
      'no image to sign: the sign section has no unsignedImage and no build section applies for this kernel',
    );
  }
  const signerImage = config.signerImage ?? request.driverToolkitImage;
  if (signerImage === undefined) {
    throw new BuildSignError(
      'NO_SIGNER_IMAGE',
      'no signer image: configure one or let the release resolution provide its driver-toolkit image',
    );
  }
  const image = request.pushBuiltImage
    ? requireContainerImage(target, 'the signed image is pushed there')
    : target.containerImage;
  return {
    unsignedImage,
    ...(unsignedImageTLS === undefined ? {} : { unsignedImageTLS }),
    fromBuild: build !== undefined,
    keySecret: sign.keySecret.name,
    certSecret: sign.certSecret.name,
    filesToSign: checkFilesToSign(sign.filesToSign ?? []),
    signerImage,
    signFilePath: config.signFilePath.replaceAll('${KERNEL_VERSION}', request.kernel),
    push: request.pushBuiltImage,
    image,
    ...(target.registryTLS === undefined ? {} : { pushTLS: target.registryTLS }),
    kanikoImage: config.kanikoImage,
    nodeSelector: target.selector,
  };
}
