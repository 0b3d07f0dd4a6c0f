import { expect } from 'chai';
import { parse as parseYaml } from 'yaml';
import type { PreflightValidationOCPStatus } from '../../src/api/preflight.ts';
import { renderReport } from '../../src/check/report.ts';

const status: PreflightValidationOCPStatus = {
  targetKernel: '5.14.0-284.el9.x86_64',
  releaseVersion: '4.13.1',
  total: 2,
  verified: 1,
  failed: 1,
  progress: '1/2',
  modules: [
    {
      namespace: 'drivers',
      name: 'good',
      verificationStatus: 'True',
      verificationStage: 'Done',
      statusReason: 'verified',
      lastTransitionTime: '2026-11-23T00:00:00.000Z',
      observedGeneration: 1,
    },
    {
      namespace: 'drivers',
      name: 'bad<&>',
      verificationStatus: 'False',
      verificationStage: 'Image',
      statusReason: 'the module is not at "opt/lib/modules/x/bad.ko"',
      lastTransitionTime: '2026-11-23T00:00:00.000Z',
      observedGeneration: 1,
    },
  ],
};

describe('check: rendering the result', () => {
  it('JSON and YAML are the status object itself', () => {
    expect(JSON.parse(renderReport(status, 'json', { color: false }))).to.deep.equal(status);
    expect(parseYaml(renderReport(status, 'yaml', { color: false }))).to.deep.equal(status);
  });

  it('the table lists every module with its verdict and a summary, uncoloured when asked', () => {
    const table = renderReport(status, 'table', {
      color: false,
      releaseImage: 'quay.io/x/release@sha256:ab',
    });
    expect(table).to.contain('Release: OpenShift 4.13.1 quay.io/x/release@sha256:ab');
    expect(table).to.contain('Kernel:  5.14.0-284.el9.x86_64');
    expect(table).to.match(/drivers\s+good\s+True\s+Done\s+verified/);
    expect(table).to.match(/drivers\s+bad<&>\s+False\s+Image\s+the module is not at/);
    expect(table).to.contain('1/2 modules verified, 1 not');
    expect(table).not.to.contain('\u001b[');
  });

  it('colours verdicts on a terminal', () => {
    const table = renderReport(status, 'table', { color: true });
    expect(table).to.contain('\u001b[32mTrue');
    expect(table).to.contain('\u001b[31mFalse');
  });

  it('JUnit has one test case per module, failures carrying stage and reason, XML-escaped', () => {
    const xml = renderReport(status, 'junit', { color: false });
    expect(xml).to.contain('<testsuites name="kmm-preflight" tests="2" failures="1">');
    expect(xml).to.contain('<testcase classname="drivers" name="good"><system-out>verified</system-out>');
    expect(xml).to.contain('<testcase classname="drivers" name="bad&lt;&amp;&gt;">');
    expect(xml).to.contain(
      '<failure message="Image: the module is not at &quot;opt/lib/modules/x/bad.ko&quot;" type="Image">',
    );
    expect((xml.match(/<testcase /g) ?? []).length).to.equal(2);
  });
});
