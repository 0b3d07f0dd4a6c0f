import { expect } from 'chai';
import { moduleOfJob, owningResource } from '../../src/runner/jobs/job-watch.ts';

const owner = {
  apiVersion: 'kmm.sigs.x-k8s.io/v1beta1',
  kind: 'PreflightValidationOCP',
  name: 'pf',
  uid: 'u1',
  controller: true,
};

describe('runner: which resource and Module a Job event is about', () => {
  it('the controlling PreflightValidationOCP only', () => {
    expect(owningResource({ metadata: { name: 'j', namespace: 'ns', ownerReferences: [owner] } })).to.equal(
      'pf',
    );
    const notController = { ...owner, controller: false };
    expect(
      owningResource({ metadata: { name: 'j', namespace: 'ns', ownerReferences: [notController] } }),
    ).to.equal(undefined);
    expect(owningResource({ metadata: { name: 'j', namespace: 'ns' } })).to.equal(undefined);
  });

  it('the Module from the Job annotation; a malformed one is none', () => {
    const job = (value?: string) => ({
      metadata: {
        name: 'j',
        namespace: 'ns',
        ...(value === undefined ? {} : { annotations: { 'preflight.kmm.sigs.x-k8s.io/module': value } }),
      },
    });
    expect(moduleOfJob(job('ns-a/drv'))).to.deep.equal({ namespace: 'ns-a', name: 'drv' });
    for (const bad of [undefined, 'drv', '/drv', 'ns-a/'])
      expect(moduleOfJob(job(bad)), bad).to.equal(undefined);
  });
});
