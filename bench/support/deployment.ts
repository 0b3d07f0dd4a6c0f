import { join } from 'node:path';
import { loadManifestFile, manifestsDir } from '../../test/manifests/render.ts';

interface Container {
  readonly name: string;
  readonly env?: readonly { readonly name: string; readonly value?: string }[];
}

/**
 * NODE_OPTIONS of the runner container in the shipped Deployment ('' when it sets none), so that a benchmark runs
 * Node as the cluster does: V8's heap flags move peak RSS by tens of MiB.
 */
export async function runnerNodeOptions(): Promise<string> {
  const [deployment] = await loadManifestFile(join(manifestsDir, 'base/runner-deployment.yaml'));
  const { containers } = (
    deployment?.object as { spec: { template: { spec: { containers: readonly Container[] } } } }
  ).spec.template.spec;
  const runner = containers.find((container) => container.name === 'runner');
  return runner?.env?.find((variable) => variable.name === 'NODE_OPTIONS')?.value ?? '';
}
