import { expect } from 'chai';
import { parse as parseYaml } from 'yaml';
import type { PreflightValidationOCPStatus } from '../../src/api/preflight.ts';
import { renderReport, type CheckReport } from '../../src/check/report.ts';

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

const report: CheckReport = { status, inputErrors: [] };

describe('check: rendering the result', () => {
  it('JSON and YAML are the status object itself', () => {
    expect(JSON.parse(renderReport(report, 'json', { color: false }))).to.deep.equal(status);
    expect(parseYaml(renderReport(report, 'yaml', { color: false }))).to.deep.equal(status);
  });

  it('the table lists every module with its verdict and a summary, uncoloured when asked', () => {
    const table = renderReport(report, 'table', {
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
    const table = renderReport(report, 'table', { color: true });
    expect(table).to.contain('\u001b[32mTrue');
    expect(table).to.contain('\u001b[31mFalse');
  });

  it('JUnit has one test case per module, failures carrying stage and reason, XML-escaped', () => {
    const xml = renderReport(report, 'junit', { color: false });
    expect(xml).to.contain('<testsuites name="kmm-preflight" tests="2" failures="1">');
    expect(xml).to.contain('<testcase classname="drivers" name="good"><system-out>verified</system-out>');
    expect(xml).to.contain('<testcase classname="drivers" name="bad&lt;&amp;&gt;">');
    expect(xml).to.contain(
      '<failure message="Image: the module is not at &quot;opt/lib/modules/x/bad.ko&quot;" type="Image">',
    );
    expect((xml.match(/<testcase /g) ?? []).length).to.equal(2);
  });
});

describe('check: rendering input errors and an unresolved kernel', () => {
  const inputErrors = [
    { file: 'gitops/bad.yaml', document: 2, message: 'not valid YAML: unexpected end at line 9' },
    { file: 'gitops/locked.yaml', message: 'cannot read it (EACCES)' },
  ];
  const withErrors: CheckReport = { status, inputErrors };

  it('JSON and YAML keep the status shape and add inputErrors at the top level', () => {
    expect(JSON.parse(renderReport(withErrors, 'json', { color: false }))).to.deep.equal({
      ...status,
      inputErrors,
    });
    expect(parseYaml(renderReport(withErrors, 'yaml', { color: false }))).to.deep.equal({
      ...status,
      inputErrors,
    });
  });

  it('the table lists them after the Modules and counts them in the summary', () => {
    const table = renderReport(withErrors, 'table', { color: false });
    expect(table).to.contain('INPUT ERRORS (not checked)');
    expect(table).to.contain('gitops/bad.yaml#2: not valid YAML: unexpected end at line 9');
    expect(table).to.contain('gitops/locked.yaml: cannot read it (EACCES)');
    expect(table).to.contain('1/2 modules verified, 1 not; 2 input errors');
  });

  it('JUnit has a failing test case per problem, named by file and document, in its own suite', () => {
    const xml = renderReport(withErrors, 'junit', { color: false });
    expect(xml).to.contain('<testsuites name="kmm-preflight" tests="4" failures="3">');
    expect(xml).to.contain('<testsuite name="kmm-preflight input" tests="2" failures="2"');
    expect(xml).to.contain(
      '<testcase classname="input" name="gitops/bad.yaml#2"><failure message="gitops/bad.yaml#2: not valid YAML: unexpected end at line 9" type="InputError">',
    );
    expect(xml).to.contain('<testcase classname="input" name="gitops/locked.yaml"><failure');
  });

  it('the table shows an unresolved kernel where the kernel would be', () => {
    const unresolved: CheckReport = {
      status: {
        conditions: [
          {
            type: 'KernelResolved',
            status: 'False',
            reason: 'NoRTKernel',
            message: 'the release has no real-time kernel',
            lastTransitionTime: '2026-11-23T00:00:00.000Z',
          },
        ],
        modules: [],
      },
      inputErrors: [],
    };
    const table = renderReport(unresolved, 'table', { color: false, releaseImage: 'r:1' });
    expect(table).to.contain('Kernel:  NOT RESOLVED (NoRTKernel): the release has no real-time kernel');
  });
});
