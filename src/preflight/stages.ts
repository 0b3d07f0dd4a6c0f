import type { Module } from '../api/module.ts';
import type { Platform } from '../image/source.ts';

/**
 * The ports of the preflight engine: what it needs from the kernel-mapping rules, the image check and the
 * build/sign machinery. The runner and the offline check pass implementations; the engine never reaches a
 * registry or a cluster by itself.
 */

/** The subset of the merged Module-for-kernel data (src/kernel ModuleLoaderData) the engine decides on. */
export interface ModuleForKernel {
  readonly containerImage: string;
  readonly build?: unknown;
  readonly sign?: unknown;
}

export type ModuleResolution<D extends ModuleForKernel> =
  | { readonly ok: true; readonly data: D }
  | {
      readonly ok: false;
      readonly error: { readonly code: string; readonly message: string; readonly definite: boolean };
    };

/** The resource a validation runs for: build and sign Jobs are named per resource and owned by it. */
export interface ValidationOwner {
  readonly name: string;
  readonly uid?: string;
}

export interface StageContext<D extends ModuleForKernel> {
  readonly module: Module;
  readonly data: D;
  readonly kernel: string;
  readonly platform: Platform;
  readonly pushBuiltImage: boolean;
  readonly owner?: ValidationOwner;
  /** The release's driver-toolkit image: the default signer image and the `DTK_AUTO` build argument. */
  readonly driverToolkitImage?: string;
  /** Run a Build or Sign Job again that failed before (the scheduled retry of a failed module). */
  readonly rerunFailed?: boolean;
  readonly signal?: AbortSignal;
}

export interface ImageCheck {
  readonly verified: boolean;
  /** A sentence a person can act on: what was found or what is missing. */
  readonly reason: string;
  /** False when asking again may give another answer (unreachable registry, timeout). */
  readonly definite: boolean;
  readonly image: string;
  readonly digest?: string;
}

/** The Image stage: does the module image for the kernel exist and hold a module that will load? */
export interface ImageStage<D extends ModuleForKernel> {
  /**
   * Checks `image` (default: `ctx.data.containerImage`). `requireSigned` asks for a module signature, as after a
   * Sign stage. Must not throw for registry answers; a throw is treated as a transient error.
   */
  verify(ctx: StageContext<D>, options?: { image?: string; requireSigned?: boolean }): Promise<ImageCheck>;
}

/**
 * Where the Build and Sign stages stand for one module. They are asynchronous (Jobs observed over several
 * reconciles) and ordered inside the implementation: Build first when a build section applies, Sign after a
 * successful Build (or alone) when a sign section applies. `advance` is idempotent: it starts what is missing and
 * otherwise observes, so it is called once per pass until the state settles.
 */
export interface BuildSignProgress {
  /** The stage the module is at: the running or failed one, or the last one that succeeded. */
  readonly stage: 'Build' | 'Sign';
  readonly state: 'running' | 'succeeded' | 'failed';
  /** Names the Job, says what it waits for, why it failed, or whether it pushed. */
  readonly reason: string;
  /**
   * For `failed`: true when only a change of the Module (or what it names, or the resource) can help, false for a
   * failed Job that a later retry may get through.
   */
  readonly definite: boolean;
  /**
   * Set when a pushed build or sign succeeded: the produced image must pass the Image stage (signed when `signed`)
   * before the module counts as verified. Unset on success: nothing was pushed and the Job's success is the verdict.
   */
  readonly verify?: { readonly image: string; readonly digest?: string; readonly signed: boolean };
}

export interface BuildSignStage<D extends ModuleForKernel> {
  /** True when a build or a sign section applies to the kernel (module or mapping level, merged). */
  applies(data: D): boolean;
  /** One step; rejects only when the cluster cannot be reached (the engine retries with backoff). */
  advance(ctx: StageContext<D>): Promise<BuildSignProgress>;
}

export const BUILD_SIGN_UNAVAILABLE = 'build/sign validation is not available in this runner yet';

/**
 * The stand-in until the Build and Sign stages are wired (issue 6): a Module that needs them is reported
 * truthfully as not verified at that stage, never as verified and never as waiting.
 */
export function unavailableBuildSignStage<D extends ModuleForKernel>(): BuildSignStage<D> {
  return {
    applies: (data) => hasSection(data.build) || hasSection(data.sign),
    advance: (ctx) =>
      Promise.resolve({
        stage: firstBuildSignStage(ctx.data),
        state: 'failed',
        reason: BUILD_SIGN_UNAVAILABLE,
        definite: false,
      }),
  };
}

/** The stage a Module's build/sign sections begin with: Build when it has a build section, else Sign. */
export function firstBuildSignStage(data: ModuleForKernel): 'Build' | 'Sign' {
  return hasSection(data.build) ? 'Build' : 'Sign';
}

function hasSection(section: unknown): boolean {
  return section !== undefined && section !== null;
}
