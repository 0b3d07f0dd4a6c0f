import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { buildSignConfig, type BuildSignConfig } from '../../buildsign/config.ts';
import { buildSignPort } from '../../buildsign/preflight-port.ts';
import { BuildSignStage } from '../../buildsign/stage.ts';
import type { ModuleLoaderData } from '../../kernel/resolve.ts';
import type { KubeClient } from '../../platform/kube/client.ts';
import type { BuildSignStage as BuildSignPort } from '../../preflight/stages.ts';
import { KubeJobStore } from './kube-job-store.ts';

/**
 * Build and Sign as the runner runs them: Jobs through the runner's KubeClient, behind the engine's port. One call
 * at start-up; `store` also deletes the Jobs nothing wants any more (the reconciler's clean-up).
 */
export interface BuildSignWiring {
  /** For createPreflightDeps({ buildSign }). */
  readonly port: BuildSignPort<ModuleLoaderData>;
  readonly store: KubeJobStore;
}

/** Throws BuildSignConfigError (naming the bad setting) for a bad configuration. */
export function createBuildSign(
  client: KubeClient,
  kubeConfig: KubeConfig,
  overrides: Partial<BuildSignConfig> = {},
  logger?: Logger,
): BuildSignWiring {
  const store = new KubeJobStore(client, kubeConfig, logger);
  const stage = new BuildSignStage({ jobs: store, inputs: store, config: buildSignConfig(overrides) });
  return { port: buildSignPort(stage), store };
}
