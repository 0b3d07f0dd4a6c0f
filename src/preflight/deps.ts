import type { Module } from '../api/module.ts';
import type { InTreeModuleSource } from '../image/stage/types.ts';
import { verifyModuleImage, type ImageStageDeps } from '../image/stage/verify.ts';
import { RegexpCache } from '../kernel/regexp.ts';
import { resolveModuleForKernel, type ModuleLoaderData } from '../kernel/resolve.ts';
import type { InTreeModulesRequest } from '../release/in-tree-modules.ts';
import type { PreflightDeps } from './engine.ts';
import { unavailableBuildSignStage, type BuildSignStage, type ImageStage } from './stages.ts';

/**
 * The engine wired to the real rules: kernel mappings from src/kernel, the Image stage from src/image/stage.
 * The runner and the offline check differ only in what they pass here: where images come from (registry, OCI
 * layouts), how a Module's credentials are found (its imageRepoSecret in the cluster, a file), and whether
 * Build/Sign can run (Jobs in a cluster; never offline).
 */

/** Credentials for pulling a Module's image (opaque to the engine; the registry package reads them). */
export type CredentialsLookup = (module: Module, data: ModuleLoaderData) => Promise<unknown>;

/** The target kernel's in-tree module list in the release's driver-toolkit image (src/release/in-tree-modules.ts). */
export type InTreeModulesLookup = (request: InTreeModulesRequest) => InTreeModuleSource;

export interface PreflightWiring {
  readonly image: ImageStageDeps;
  /** Default: none (the image source's own defaults apply). */
  readonly credentials?: CredentialsLookup;
  /**
   * Default: none, so a dependency a module image lacks is assumed in-tree (noted, unverified). Used when the
   * validation has a driver-toolkit image (a resolved release).
   */
  readonly inTreeModules?: InTreeModulesLookup;
  /** Default: reported as not available (unavailableBuildSignStage). */
  readonly buildSign?: BuildSignStage<ModuleLoaderData>;
  /** Share one across calls; one is made when omitted. */
  readonly regexps?: RegexpCache;
}

export function createPreflightDeps(wiring: PreflightWiring): PreflightDeps<ModuleLoaderData> {
  const regexps = wiring.regexps ?? new RegexpCache();
  return {
    resolveModule: (module, kernel) => resolveModuleForKernel(module, kernel, { regexps }),
    image: moduleImageStage(wiring.image, wiring.credentials, wiring.inTreeModules),
    buildSign: wiring.buildSign ?? unavailableBuildSignStage(),
  };
}

/**
 * The Image stage over `verifyModuleImage`. A signature is required when a sign section applies for the kernel
 * (the module that loads must be the signed one), or when a caller asks for it after a Sign stage.
 */
export function moduleImageStage(
  deps: ImageStageDeps,
  credentials?: CredentialsLookup,
  inTreeModules?: InTreeModulesLookup,
): ImageStage<ModuleLoaderData> {
  return {
    async verify(ctx, options) {
      const found = credentials === undefined ? undefined : await credentials(ctx.module, ctx.data);
      const inTree =
        inTreeModules === undefined || ctx.driverToolkitImage === undefined
          ? undefined
          : inTreeModules({
              driverToolkitImage: ctx.driverToolkitImage,
              kernel: ctx.kernel,
              platform: ctx.platform,
              ...(ctx.signal === undefined ? {} : { signal: ctx.signal }),
            });
      const verdict = await verifyModuleImage(deps, {
        reference: options?.image ?? ctx.data.containerImage,
        kernel: ctx.kernel,
        modprobe: ctx.data.modprobe,
        requireSignature: options?.requireSigned ?? ctx.data.sign !== undefined,
        platform: ctx.platform,
        tls: ctx.data.registryTLS,
        ...(found === undefined ? {} : { credentials: found }),
        ...(ctx.signal === undefined ? {} : { signal: ctx.signal }),
        ...(inTree === undefined ? {} : { inTreeModules: inTree }),
      });
      return {
        verified: verdict.verified,
        reason: verdict.reason,
        definite: verdict.definite,
        image: verdict.image,
        ...(verdict.digest === null ? {} : { digest: verdict.digest }),
      };
    },
  };
}
