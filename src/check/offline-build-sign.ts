import { DEFAULT_BUILD_SIGN_CONFIG, type BuildSignConfig } from '../buildsign/config.ts';
import { BuildSignError } from '../buildsign/errors.ts';
import { planBuild, planSign, type BuildPlan, type BuildSignRequest } from '../buildsign/plan.ts';
import type { ModuleLoaderData } from '../kernel/resolve.ts';
import type { BuildSignStage } from '../preflight/stages.ts';

/**
 * Build and Sign without a cluster: they cannot run (they are Kubernetes Jobs), so a Module that would need them is
 * reported as not verified at that stage with what an in-cluster run would do, planned by the same code the runner
 * uses. A plan that could never work (build plus sign without push, no Dockerfile ConfigMap) says so instead.
 */
export function offlineBuildSignStage(
  options: { readonly config?: BuildSignConfig; readonly driverToolkitImage?: string } = {},
): BuildSignStage<ModuleLoaderData> {
  // Offline there may be no release (`--kernel`), hence no driver-toolkit to sign with; the plan is only described.
  const config = options.config ?? {
    ...DEFAULT_BUILD_SIGN_CONFIG,
    signerImage: options.driverToolkitImage ?? "the release's driver-toolkit image",
  };
  return {
    applies: (data) => data.build !== undefined || data.sign !== undefined,
    advance: (ctx) => {
      const stage = ctx.data.build !== undefined ? 'Build' : 'Sign';
      const request: BuildSignRequest = {
        owner: {
          apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
          kind: 'PreflightValidationOCP',
          name: 'offline',
          uid: '',
        },
        module: { namespace: ctx.data.namespace, name: ctx.data.name },
        kernel: ctx.kernel,
        target: ctx.data,
        pushBuiltImage: ctx.pushBuiltImage,
      };
      let reason: string;
      try {
        reason = `needs an in-cluster run (kmm-preflight runner): ${describePlan(request, config)}`;
      } catch (err) {
        if (!(err instanceof BuildSignError)) throw err;
        reason = err.message;
      }
      return Promise.resolve({ stage, state: 'failed', reason, definite: true });
    },
  };
}

function describePlan(request: BuildSignRequest, config: BuildSignConfig): string {
  const steps: string[] = [];
  let build: BuildPlan | undefined;
  if (request.target.build !== undefined) {
    build = planBuild(request, config);
    const destination = build.image === '' ? 'an image' : build.image;
    steps.push(
      `it would build ${destination} from the Dockerfile in ConfigMap ${build.dockerfileConfigMap}` +
        (build.push ? ' and push it' : ' without pushing it'),
    );
  }
  if (request.target.sign !== undefined) {
    const sign = planSign(request, config, build);
    const files = sign.filesToSign.length > 0 ? sign.filesToSign.join(', ') : 'the modules';
    steps.push(
      `${build === undefined ? 'it would' : 'then'} sign ${files} of ${sign.unsignedImage} with Secrets ` +
        `${sign.keySecret} and ${sign.certSecret} into ${sign.image}` +
        (request.pushBuiltImage ? ' and push it' : ' without pushing it'),
    );
  }
  return steps.join(', ');
}
