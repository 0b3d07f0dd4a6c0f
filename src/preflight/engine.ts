import type { Module } from '../api/module.ts';
import type { Platform } from '../image/source.ts';
import { StageOutcomes, type StageOutcome } from './outcome.ts';
import type {
  AsyncStageProgress,
  BuildStage,
  ImageCheck,
  ImageStage,
  ModuleForKernel,
  ModuleResolution,
  SignStage,
  StageContext,
  ValidationOwner,
} from './stages.ts';

/**
 * The staged validation of one Module against one kernel, as the seed orders it: Image first; when the image is
 * not verified, Build if a build section applies, then Sign if a sign section applies and the build (if any)
 * succeeded. A verified image runs no other stage. Shared by the runner (in cluster) and the offline check.
 */

export interface PreflightDeps<D extends ModuleForKernel> {
  /** Kernel-mapping resolution (src/kernel resolveModuleForKernel). */
  resolveModule(module: Module, kernel: string): ModuleResolution<D>;
  readonly image: ImageStage<D>;
  readonly build: BuildStage<D>;
  readonly sign: SignStage<D>;
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
      : StageOutcomes.requeued(retrying(error.message));
  }
  const ctx: StageContext<D> = {
    module: request.module,
    data: resolution.data,
    kernel: request.kernel,
    platform: request.platform,
    pushBuiltImage: request.pushBuiltImage,
    ...(request.owner === undefined ? {} : { owner: request.owner }),
    ...(request.signal === undefined ? {} : { signal: request.signal }),
  };

  const image = await checkImage(deps.image, ctx);
  if (image.verified) return StageOutcomes.verified(image.reason, imageOf(image));
  if (!image.definite) return StageOutcomes.requeued(retrying(image.reason));

  const needsBuild = deps.build.applies(ctx.data);
  const needsSign = deps.sign.applies(ctx.data);
  if (!needsBuild && !needsSign) return StageOutcomes.failedAt('Image', image.reason, imageOf(image));

  let unsignedImage: string | undefined;
  if (needsBuild) {
    const build = await advance(() => deps.build.advance(ctx));
    if (build.state !== 'succeeded') return unsettled('Build', image.reason, build);
    if (!needsSign)
      return afterPush(deps.image, ctx, 'Build', `${image.reason}; build: ${build.reason}`, build);
    unsignedImage = build.pushedImage;
  }
  const sign = await advance(() =>
    deps.sign.advance(ctx, unsignedImage === undefined ? {} : { unsignedImage }),
  );
  if (sign.state !== 'succeeded') return unsettled('Sign', image.reason, sign);
  return afterPush(deps.image, ctx, 'Sign', `${image.reason}; sign: ${sign.reason}`, sign);
}

/** The outcome of a Build or Sign stage that is still running or has failed. */
function unsettled(
  stage: 'Build' | 'Sign',
  imageReason: string,
  progress: Exclude<AsyncStageProgress, { state: 'succeeded' }>,
): StageOutcome {
  const reason = `${imageReason}; ${stage.toLowerCase()}: ${progress.reason}`;
  if (progress.state === 'running') return StageOutcomes.waiting(stage, reason);
  return progress.definite ? StageOutcomes.failedAt(stage, reason) : StageOutcomes.requeued(retrying(reason));
}

/**
 * A successful Build or Sign: when it pushed an image, that image must really hold the module (and be signed after
 * Sign); without a push, the Job's success is the verdict, and the reason says nothing was pushed.
 */
async function afterPush<D extends ModuleForKernel>(
  imageStage: ImageStage<D>,
  ctx: StageContext<D>,
  stage: 'Build' | 'Sign',
  reason: string,
  progress: Extract<AsyncStageProgress, { state: 'succeeded' }>,
): Promise<StageOutcome> {
  if (progress.pushedImage === undefined) return StageOutcomes.verified(reason);
  const pushed = await checkImage(imageStage, ctx, {
    image: progress.pushedImage,
    requireSigned: stage === 'Sign',
  });
  const combined = `${reason}; pushed image: ${pushed.reason}`;
  if (pushed.verified) return StageOutcomes.verified(combined, imageOf(pushed));
  return pushed.definite
    ? StageOutcomes.failedAt(stage, combined, imageOf(pushed))
    : StageOutcomes.requeued(retrying(combined));
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

async function advance(step: () => Promise<AsyncStageProgress>): Promise<AsyncStageProgress> {
  try {
    return await step();
  } catch (err) {
    return { state: 'failed', reason: errorMessage(err), definite: false };
  }
}

function imageOf(check: ImageCheck): { image: string; imageDigest?: string } {
  return check.digest === undefined
    ? { image: check.image }
    : { image: check.image, imageDigest: check.digest };
}

function retrying(reason: string): string {
  return `${reason} (will retry)`;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
