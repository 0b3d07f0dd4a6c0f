import type { Module } from '../api/module.ts';
import type { Platform } from '../image/source.ts';
import { StageOutcomes, type StageOutcome } from './outcome.ts';
import {
  firstBuildSignStage,
  type BuildSignProgress,
  type BuildSignStage,
  type ImageCheck,
  type ImageStage,
  type ModuleForKernel,
  type ModuleResolution,
  type StageContext,
  type ValidationOwner,
} from './stages.ts';
import { errorMessage } from '../platform/errors.ts';

/**
 * The staged validation of one Module against one kernel, as the seed orders it: Image first; when the image is
 * not verified, Build if a build section applies, then Sign if a sign section applies and the build (if any)
 * succeeded. A verified image runs no other stage. Shared by the runner (in cluster) and the offline check.
 */

export interface PreflightDeps<D extends ModuleForKernel> {
  /** Kernel-mapping resolution (src/kernel resolveModuleForKernel). */
  resolveModule(module: Module, kernel: string): ModuleResolution<D>;
  readonly image: ImageStage<D>;
  /** Build then Sign, when the image is not verified and a section applies (unavailableBuildSignStage until wired). */
  readonly buildSign: BuildSignStage<D>;
}

export interface ValidationRequest {
  readonly module: Module;
  /** The target kernel, e.g. `5.14.0-284.el9.x86_64`. */
  readonly kernel: string;
  readonly pushBuiltImage: boolean;
  /** The target nodes' platform (image index selection). */
  readonly platform: Platform;
  /** The resource the validation runs for (build/sign Jobs are named per resource and owned by it). */
  readonly owner?: ValidationOwner;
  /** The resolved release's driver-toolkit image (default signer image, `DTK_AUTO` build argument). */
  readonly driverToolkitImage?: string;
  /** Set on the scheduled retry of a module that failed at Build or Sign: a failed Job is run again. */
  readonly rerunFailed?: boolean;
  readonly signal?: AbortSignal;
}

export function noMappingReason(kernel: string): string {
  return `no kernel mapping matches ${kernel}`;
}

export async function validateModule<D extends ModuleForKernel>(
  deps: PreflightDeps<D>,
  request: ValidationRequest,
): Promise<StageOutcome> {
  const resolution = deps.resolveModule(request.module, request.kernel);
  if (!resolution.ok) {
    const { error } = resolution;
    if (error.code === 'NO_MAPPING') return StageOutcomes.finalFailure(noMappingReason(request.kernel));
    return error.definite
      ? StageOutcomes.finalFailure(error.message)
      : StageOutcomes.requeued(error.message, 'Image');
  }
  const ctx: StageContext<D> = {
    module: request.module,
    data: resolution.data,
    kernel: request.kernel,
    platform: request.platform,
    pushBuiltImage: request.pushBuiltImage,
    ...(request.owner === undefined ? {} : { owner: request.owner }),
    ...(request.driverToolkitImage === undefined ? {} : { driverToolkitImage: request.driverToolkitImage }),
    ...(request.rerunFailed === true ? { rerunFailed: true } : {}),
    ...(request.signal === undefined ? {} : { signal: request.signal }),
  };

  const image = await checkImage(deps.image, ctx);
  if (image.verified) return StageOutcomes.verified(image.reason, imageOf(image));
  if (!image.definite) return StageOutcomes.requeued(image.reason, 'Image');

  if (!deps.buildSign.applies(ctx.data)) return StageOutcomes.failedAt('Image', image.reason, imageOf(image));
  let progress: BuildSignProgress;
  try {
    progress = await deps.buildSign.advance(ctx);
  } catch (err) {
    return StageOutcomes.requeued(
      `${image.reason}; build/sign: ${errorMessage(err)}`,
      firstBuildSignStage(ctx.data),
    );
  }
  const stage = progress.stage;
  const reason = `${image.reason}; ${stage.toLowerCase()}: ${progress.reason}`;
  switch (progress.state) {
    case 'running':
      return StageOutcomes.waiting(stage, reason);
    case 'failed':
      return progress.definite
        ? StageOutcomes.refusedAt(stage, reason)
        : StageOutcomes.failedAt(stage, reason);
    case 'succeeded':
      return progress.verify === undefined
        ? StageOutcomes.verified(reason)
        : checkProduced(deps.image, ctx, stage, reason, progress.verify);
  }
}

/** A pushed Build or Sign result must really hold the module (signed after Sign) before it counts. */
async function checkProduced<D extends ModuleForKernel>(
  imageStage: ImageStage<D>,
  ctx: StageContext<D>,
  stage: 'Build' | 'Sign',
  reason: string,
  produced: NonNullable<BuildSignProgress['verify']>,
): Promise<StageOutcome> {
  const pushed = await checkImage(imageStage, ctx, { image: produced.image, requireSigned: produced.signed });
  const combined = `${reason}; pushed image: ${pushed.reason}`;
  if (pushed.verified) return StageOutcomes.verified(combined, imageOf(pushed));
  return pushed.definite
    ? StageOutcomes.failedAt(stage, combined, imageOf(pushed))
    : StageOutcomes.requeued(combined, stage);
}

async function checkImage<D extends ModuleForKernel>(
  stage: ImageStage<D>,
  ctx: StageContext<D>,
  options?: { image?: string; requireSigned?: boolean },
): Promise<ImageCheck> {
  try {
    return await stage.verify(ctx, options);
  } catch (err) {
    return {
      verified: false,
      definite: false,
      reason: `image check failed: ${errorMessage(err)}`,
      image: options?.image ?? ctx.data.containerImage,
    };
  }
}

function imageOf(check: ImageCheck): { image: string; imageDigest?: string } {
  return check.digest === undefined
    ? { image: check.image }
    : { image: check.image, imageDigest: check.digest };
}
