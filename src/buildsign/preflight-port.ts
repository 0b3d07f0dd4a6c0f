import { KMM_API_VERSION } from '../api/meta.ts';
import { PREFLIGHT_KIND } from '../api/preflight.ts';
import type { ModuleLoaderData } from '../kernel/resolve.ts';
import type { BuildSignStage as BuildSignPort, StageContext } from '../preflight/stages.ts';
import { needsBuildOrSign } from './plan.ts';
import type { BuildSignStage } from './stage.ts';

/**
 * The Build/Sign stage as the preflight engine's port (src/preflight/stages.ts): the engine hands over its stage
 * context, this turns it into a Job request for the owning PreflightValidationOCP.
 */

/** What the runner adds to the engine's stage context for Build and Sign. */
export interface BuildSignContextExtras {
  /** The release's driver-toolkit image (status.dtkImage): default signer, and `DTK_AUTO` for Dockerfiles. */
  readonly driverToolkitImage?: string;
  /** The module's previous verdict was a failed Job and the retry interval has passed: run it again. */
  readonly rerunFailed?: boolean;
}

function extras(ctx: StageContext<ModuleLoaderData>): BuildSignContextExtras {
  const driverToolkitImage =
    'driverToolkitImage' in ctx && typeof ctx.driverToolkitImage === 'string'
      ? ctx.driverToolkitImage
      : undefined;
  const rerunFailed = 'rerunFailed' in ctx && ctx.rerunFailed === true;
  return { ...(driverToolkitImage === undefined ? {} : { driverToolkitImage }), rerunFailed };
}

export function buildSignPort(stage: BuildSignStage): BuildSignPort<ModuleLoaderData> {
  return {
    applies: (data) => needsBuildOrSign(data),
    advance: async (ctx) => {
      const uid = ctx.owner?.uid;
      if (ctx.owner === undefined || uid === undefined) {
        // Only a validation for a resource in the cluster can own Jobs (the offline check never builds).
        throw new Error('build and sign Jobs need the UID of the owning PreflightValidationOCP');
      }
      return stage.observeOrStart({
        owner: { apiVersion: KMM_API_VERSION, kind: PREFLIGHT_KIND, name: ctx.owner.name, uid },
        module: { namespace: ctx.data.namespace, name: ctx.data.name },
        kernel: ctx.kernel,
        target: ctx.data,
        pushBuiltImage: ctx.pushBuiltImage,
        ...extras(ctx),
      });
    },
  };
}
