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
 * Where an asynchronous stage (a Job) stands. `advance` is idempotent: it starts the work when none exists for
 * these inputs, and otherwise observes it, so it is called once per reconcile until it settles.
 */
export type AsyncStageProgress =
  | { readonly state: 'running'; readonly reason: string }
  | {
      readonly state: 'succeeded';
      readonly reason: string;
      /** The image pushed, when one was (pushBuiltImage); the Image stage then checks it. */
      readonly pushedImage?: string;
    }
  | { readonly state: 'failed'; readonly reason: string; readonly definite: boolean };

export interface BuildStage<D extends ModuleForKernel> {
  /** True when a build section applies to the kernel (module or mapping level). */
  applies(data: D): boolean;
  advance(ctx: StageContext<D>): Promise<AsyncStageProgress>;
}

export interface SignStage<D extends ModuleForKernel> {
  /** True when a sign section applies to the kernel (module or mapping level). */
  applies(data: D): boolean;
  /** `unsignedImage` is the Build stage's output when a build ran before. */
  advance(ctx: StageContext<D>, input: { readonly unsignedImage?: string }): Promise<AsyncStageProgress>;
}

export const BUILD_SIGN_UNAVAILABLE = 'build/sign validation is not available in this runner yet';

/**
 * Stand-ins until the Build and Sign stages exist (issue 6): a Module that needs them is reported truthfully as
 * not verified at that stage, never as verified and never as waiting.
 */
export function unavailableBuildStage<D extends ModuleForKernel>(): BuildStage<D> {
  return {
    applies: (data) => data.build !== undefined && data.build !== null,
    advance: () => Promise.resolve({ state: 'failed', reason: BUILD_SIGN_UNAVAILABLE, definite: true }),
  };
}

export function unavailableSignStage<D extends ModuleForKernel>(): SignStage<D> {
  return {
    applies: (data) => data.sign !== undefined && data.sign !== null,
    advance: () => Promise.resolve({ state: 'failed', reason: BUILD_SIGN_UNAVAILABLE, definite: true }),
  };
}
