import type { BuildSpec, SignSpec } from '../../src/api/module.ts';
import type { BuildSignRequest, BuildSignTarget } from '../../src/buildsign/plan.ts';

/** A request for the Build/Sign stages with everything a test does not care about filled in plausibly. */
export const KERNEL = '5.14.0-284.el9.x86_64';
export const OWNER = {
  apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
  kind: 'PreflightValidationOCP',
  name: 'pf-4-16',
  uid: '0b5a1e52-7a55-4a2f-9a77-1f2d3c4b5a69',
} as const;
export const DTK = `quay.io/openshift-release-dev/ocp-v4.0-art-dev@sha256:${'d'.repeat(64)}`;

export const BUILD: BuildSpec = {
  dockerfileConfigMap: { name: 'kmod-dockerfile' },
  buildArgs: [{ name: 'EXTRA', value: 'yes' }],
  secrets: [{ name: 'git-token' }],
};

export const SIGN: SignSpec = {
  keySecret: { name: 'signing-key' },
  certSecret: { name: 'signing-cert' },
  filesToSign: [`/opt/lib/modules/${KERNEL}/kmod_a.ko`],
};

export function target(overrides: Partial<BuildSignTarget> = {}): BuildSignTarget {
  return {
    containerImage: `registry.example:5000/kmods/kmod-a:${KERNEL}`,
    selector: { 'node-role.kubernetes.io/worker': '' },
    imageRepoSecret: { name: 'repo-pull-push' },
    ...overrides,
  };
}

export function request(
  targetOverrides: Partial<BuildSignTarget> = {},
  overrides: Partial<Omit<BuildSignRequest, 'target'>> = {},
): BuildSignRequest {
  return {
    owner: OWNER,
    module: { namespace: 'team-a', name: 'kmod-a' },
    kernel: KERNEL,
    pushBuiltImage: true,
    driverToolkitImage: DTK,
    target: target(targetOverrides),
    ...overrides,
  };
}
