import { expect } from 'chai';
import type { PreflightValidationOCP } from '../../src/api/preflight.ts';
import {
  checkModuleStructure,
  checkPreflightSpecStructure,
  checkPreflightStructure,
  fieldPath,
  formatFieldIssue,
} from '../../src/api/structure.ts';

const validPreflight: PreflightValidationOCP = {
  apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
  kind: 'PreflightValidationOCP',
  metadata: { name: 'preflight' },
  spec: { releaseImage: 'quay.io/openshift-release-dev/ocp-release:4.16.3-x86_64', pushBuiltImage: true },
  status: {
    releaseVersion: '4.16.3',
    kernelVersion: '5.14.0-427.26.1.el9_4.x86_64',
    targetKernel: '5.14.0-427.26.1.el9_4.x86_64',
    total: 2,
    verified: 1,
    failed: 1,
    progress: '1/2',
    conditions: [
      {
        type: 'Complete',
        status: 'True',
        reason: 'AllModulesDecided',
        message: 'every Module has a verdict',
        lastTransitionTime: '2026-01-02T03:04:05Z',
        observedGeneration: 1,
      },
    ],
    modules: [
      {
        namespace: 'a',
        name: 'm',
        verificationStatus: 'True',
        verificationStage: 'Done',
        statusReason: 'verified image exists',
        lastTransitionTime: '2026-01-02T03:04:05.123+02:00',
        observedGeneration: 3,
      },
    ],
  },
};

/** A real KMM Module, with fields preflight does not model (devicePlugin, tolerations, worker settings). */
const kmmModule = {
  apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
  kind: 'Module',
  metadata: { name: 'kmm-ci-a', namespace: 'kmm-tests' },
  spec: {
    selector: { 'node-role.kubernetes.io/worker': '' },
    tolerations: [{ key: 'k', operator: 'Exists', effect: 'NoSchedule' }],
    devicePlugin: { container: { image: 'quay.io/x/dp:1' } },
    moduleLoader: {
      serviceAccountName: 'kmm-sa',
      container: {
        modprobe: { moduleName: 'kmm_ci_a', firmwarePath: '/firmware', parameters: ['a=1'] },
        imagePullPolicy: 'Always',
        kernelMappings: [
          {
            regexp: '^.+$',
            containerImage: 'quay.io/org/kmm-ci:${KERNEL_FULL_VERSION}',
            pull: { insecure: true },
          },
        ],
        build: { dockerfileConfigMap: { name: 'dockerfile' }, buildArgs: [{ name: 'A', value: 'b' }] },
      },
    },
  },
};

describe('api/structure', () => {
  it('accepts a complete PreflightValidationOCP', () => {
    expect(checkPreflightStructure(validPreflight)).to.deep.equal([]);
  });

  it('accepts a real KMM Module with fields it does not model', () => {
    expect(checkModuleStructure(kmmModule)).to.deep.equal([]);
  });

  it('reports every structural problem at once, each at its field path', () => {
    const issues = checkPreflightStructure({
      ...validPreflight,
      spec: { pushBuiltImage: 'yes' },
      status: {
        modules: [
          {
            namespace: 'a',
            name: 'm',
            verificationStatus: 'Maybe',
            verificationStage: 'Done',
            lastTransitionTime: 'now',
          },
        ],
        conditions: [
          {
            type: 'Complete',
            status: 'True',
            reason: 'x y',
            message: '',
            lastTransitionTime: '2026-01-01T00:00:00Z',
          },
        ],
      },
    });
    expect(issues).to.deep.include.members([
      { path: 'spec.releaseImage', message: 'is required' },
      { path: 'spec.pushBuiltImage', message: 'must be boolean' },
      { path: 'status.modules[0].verificationStatus', message: 'must be one of "True", "False"' },
      { path: 'status.modules[0].lastTransitionTime', message: 'must be an RFC 3339 date-time' },
    ]);
    expect(issues.map((issue) => issue.path)).to.include('status.conditions[0].reason');
  });

  it('spec-only check: paths start at spec; empty releaseImage is rejected', () => {
    expect(checkPreflightSpecStructure({ releaseImage: '' })).to.deep.equal([
      { path: 'spec.releaseImage', message: 'must NOT have fewer than 1 characters' },
    ]);
    expect(checkPreflightSpecStructure({ releaseImage: 'x', useRTKernel: true })).to.deep.equal([]);
    expect(checkPreflightSpecStructure(null)).to.deep.equal([{ path: 'spec', message: 'must be object' }]);
  });

  it('Module: wrong types and missing required fields name the field', () => {
    const issues = checkModuleStructure({
      ...kmmModule,
      spec: {
        selector: { 'kubernetes.io/arch': 5 },
        moduleLoader: { container: { modprobe: {}, kernelMappings: [], imagePullPolicy: 'Sometimes' } },
      },
    });
    expect(issues).to.deep.include.members([
      { path: 'spec.selector["kubernetes.io/arch"]', message: 'must be string' },
      { path: 'spec.moduleLoader.container.kernelMappings', message: 'must NOT have fewer than 1 items' },
      {
        path: 'spec.moduleLoader.container.imagePullPolicy',
        message: 'must be one of "Always", "IfNotPresent", "Never"',
      },
    ]);
  });

  it('never throws on garbage', () => {
    for (const garbage of [undefined, null, 42, 'text', [], { spec: [] }]) {
      expect(checkModuleStructure(garbage)).to.be.an('array').that.is.not.empty;
      expect(checkPreflightStructure(garbage)).to.be.an('array').that.is.not.empty;
    }
  });

  it('formats paths and issues', () => {
    expect(fieldPath('', 'spec')).to.equal('spec');
    expect(fieldPath('spec', 'kernelMappings')).to.equal('spec.kernelMappings');
    expect(fieldPath('spec.kernelMappings', 2)).to.equal('spec.kernelMappings[2]');
    expect(fieldPath('spec.selector', 'kubernetes.io/arch')).to.equal('spec.selector["kubernetes.io/arch"]');
    expect(formatFieldIssue({ path: 'spec.x', message: 'is required' })).to.equal('spec.x: is required');
    expect(formatFieldIssue({ path: '', message: 'must be object' })).to.equal('must be object');
  });
});
