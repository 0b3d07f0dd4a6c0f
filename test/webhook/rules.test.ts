import { expect } from 'chai';
import { fixture, startTestWebhook, type TestWebhook } from './harness.ts';
import { KERNEL_427, RELEASE_DIGEST, module, preflight, review } from './objects.ts';

// Every admission rule, as the API server would call it: AdmissionReview JSON over real HTTPS to the real server.

const KERNEL_284 = '5.14.0-284.el9.x86_64';

describe('webhook rules over HTTPS: PreflightValidationOCP', function () {
  // Starting a server generates RSA keys: slow on a loaded machine.
  this.timeout(30_000);
  let webhook: TestWebhook;
  before(async () => {
    webhook = await startTestWebhook();
  });
  after(async () => webhook.close());
  beforeEach(() => {
    webhook.cache.preflights = [];
    webhook.cache.modules = [];
  });

  it('admits a digest-pinned release without warnings and echoes uid and apiVersion', async () => {
    const body = await fixture('preflight-create.json');
    const { status, body: answer } = await webhook.post(body, '/validate/preflightvalidationocp');
    expect(status).to.equal(200);
    expect(answer).to.deep.equal({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      response: { uid: '7c1a0c4e-2b0f-4f55-9a57-3f1c6e1b0a01', allowed: true },
    });
  });

  it('answers an admission.k8s.io/v1beta1 review in kind', async () => {
    const body = await fixture('preflight-create.json');
    body.apiVersion = 'admission.k8s.io/v1beta1';
    const { body: answer } = await webhook.post(body);
    expect(answer.apiVersion).to.equal('admission.k8s.io/v1beta1');
    expect(answer.response.allowed).to.equal(true);
  });

  it('refuses a missing releaseImage, naming the field', async () => {
    const body = await fixture('preflight-create.json');
    delete body.request.object.spec.releaseImage;
    const { body: answer } = await webhook.post(body);
    expect(answer.response.allowed).to.equal(false);
    expect(answer.response.status.code).to.equal(422);
    expect(answer.response.status.message).to.contain('spec.releaseImage: is required');
  });

  it('refuses a releaseImage that is not an image reference, saying why', async () => {
    const body = await fixture('preflight-create.json');
    body.request.object.spec.releaseImage = 'quay.io/openshift-release-dev/ocp-release:4.16.3 ';
    const { body: answer } = await webhook.post(body);
    expect(answer.response.allowed).to.equal(false);
    expect(answer.response.status.message).to.match(
      /spec\.releaseImage: invalid image reference .*whitespace/,
    );
  });

  it('warns when the releaseImage is a tag, not a digest', async () => {
    const body = await fixture('preflight-create.json');
    body.request.object.spec.releaseImage = 'quay.io/openshift-release-dev/ocp-release:4.16.3-x86_64';
    const { body: answer } = await webhook.post(body);
    expect(answer.response.allowed).to.equal(true);
    expect(answer.response.warnings).to.deep.equal([
      'spec.releaseImage is not pinned by digest: the tag can move during the upgrade window; use @sha256:<digest>',
    ]);
  });

  it('refuses a change of releaseImage after creation with the seed advice', async () => {
    const old = preflight('upgrade', {
      releaseImage: 'quay.io/openshift-release-dev/ocp-release:4.16.3-x86_64',
    });
    const changed = preflight('upgrade', { releaseImage: RELEASE_DIGEST });
    const { body: answer } = await webhook.post(review('preflightvalidationsocp', 'UPDATE', changed, old));
    expect(answer.response.allowed).to.equal(false);
    expect(answer.response.status.code).to.equal(403);
    expect(answer.response.status.message).to.contain('spec.releaseImage cannot change after creation');
    expect(answer.response.status.message).to.contain(
      'create another PreflightValidationOCP for another release',
    );
  });

  it('refuses a change of useRTKernel after creation', async () => {
    const old = preflight('upgrade', {});
    const changed = preflight('upgrade', { useRTKernel: true });
    const { body: answer } = await webhook.post(review('preflightvalidationsocp', 'UPDATE', changed, old));
    expect(answer.response.allowed).to.equal(false);
    expect(answer.response.status.message).to.contain(
      'spec.useRTKernel cannot change after creation (was false, now true)',
    );
  });

  it('admits an UPDATE that spells the same release differently or toggles pushBuiltImage', async () => {
    const old = preflight('upgrade', { releaseImage: 'busybox@sha256:' + 'a'.repeat(64) });
    const same = preflight('upgrade', {
      releaseImage: 'docker.io/library/busybox@sha256:' + 'a'.repeat(64),
      pushBuiltImage: true,
    });
    const { body: answer } = await webhook.post(review('preflightvalidationsocp', 'UPDATE', same, old));
    expect(answer.response).to.include({ allowed: true });
    expect(answer.response.warnings).to.equal(undefined);
  });

  it('warns when pushBuiltImage is false and a Module both builds and signs', async () => {
    webhook.cache.modules = [
      module('drivers', 'signed', {
        build: { dockerfileConfigMap: { name: 'dockerfile' } },
        kernelMappings: [
          {
            regexp: '^.+$',
            containerImage: 'quay.io/acme/signed:${KERNEL_XYZ}',
            sign: { keySecret: { name: 'k' }, certSecret: { name: 'c' } },
          },
        ],
      }),
      module('drivers', 'build-only', {
        kernelMappings: [
          {
            regexp: '^.+$',
            containerImage: 'quay.io/acme/b:1',
            build: { dockerfileConfigMap: { name: 'd' } },
          },
        ],
      }),
    ];
    const created = preflight('upgrade', { pushBuiltImage: false });
    const { body: answer } = await webhook.post(review('preflightvalidationsocp', 'CREATE', created));
    expect(answer.response.allowed).to.equal(true);
    expect(answer.response.warnings).to.deep.equal([
      'Module drivers/signed build and sign: Sign needs the built image; set spec.pushBuiltImage: true',
    ]);
    const pushing = preflight('upgrade', { pushBuiltImage: true });
    const { body: quiet } = await webhook.post(review('preflightvalidationsocp', 'CREATE', pushing));
    expect(quiet.response.warnings).to.equal(undefined);
  });

  it('warns when another PreflightValidationOCP targets the same release (same digest, even via a mirror)', async () => {
    const digest = RELEASE_DIGEST.split('@')[1];
    webhook.cache.preflights = [
      preflight('first', { releaseImage: `mirror.example.com:5000/ocp/release@${digest}` }),
      preflight('rt', { useRTKernel: true }),
      preflight('other', { releaseImage: 'quay.io/openshift-release-dev/ocp-release:4.17.0-x86_64' }),
    ];
    const { body: answer } = await webhook.post(
      review('preflightvalidationsocp', 'CREATE', preflight('second')),
    );
    expect(answer.response.allowed).to.equal(true);
    expect(answer.response.warnings).to.deep.equal([
      'PreflightValidationOCP first already validates this release; delete one of them',
    ]);
  });

  it('handles dryRun requests exactly like others', async () => {
    const body = review(
      'preflightvalidationsocp',
      'UPDATE',
      preflight('p', { useRTKernel: true }),
      preflight('p'),
    );
    body.request.dryRun = true;
    const { body: answer } = await webhook.post(body);
    expect(answer.response.allowed).to.equal(false);
    expect(answer.response.uid).to.equal(body.request.uid);
  });

  it('leaves status subresource writes alone', async () => {
    const body = review(
      'preflightvalidationsocp',
      'UPDATE',
      preflight('p', { useRTKernel: true }),
      preflight('p'),
    );
    body.request.subResource = 'status';
    const { body: answer } = await webhook.post(body);
    expect(answer.response).to.deep.equal({ uid: body.request.uid, allowed: true });
  });
});

describe('webhook rules over HTTPS: Module', function () {
  // Starting a server generates RSA keys: slow on a loaded machine.
  this.timeout(30_000);
  let webhook: TestWebhook;
  before(async () => {
    webhook = await startTestWebhook({ now: new Date('2026-11-23T12:00:00Z') });
  });
  after(async () => webhook.close());
  beforeEach(() => {
    webhook.cache.preflights = [];
  });

  it('admits a valid Module with no preflight running, without warnings', async () => {
    const body = await fixture('module-update.json');
    const { status, body: answer } = await webhook.post(body, '/validate/module');
    expect(status).to.equal(200);
    expect(answer.response).to.deep.equal({ uid: '0df28fbd-5f5f-11e8-9c2d-fa7ae01bbebc', allowed: true });
  });

  it('refuses an invalid Module with every error and its path at once', async () => {
    const body = await fixture('module-update.json');
    body.request.operation = 'CREATE';
    body.request.oldObject = null;
    body.request.object.spec.moduleLoader.container.kernelMappings = [
      { literal: KERNEL_284, regexp: '^5', containerImage: 'quay.io/acme/a:1' },
      { regexp: '^(5', containerImage: 'quay.io/acme/a:1' },
      { literal: KERNEL_427 },
    ];
    const { body: answer } = await webhook.post(body);
    expect(answer.response.allowed).to.equal(false);
    expect(answer.response.status.code).to.equal(422);
    const message: string = answer.response.status.message;
    expect(message).to.match(/^Module drivers\/kmm-ci is invalid: /);
    expect(message).to.contain('spec.moduleLoader.container.kernelMappings[0]');
    expect(message).to.contain('spec.moduleLoader.container.kernelMappings[1].regexp');
    expect(message).to.contain('spec.moduleLoader.container.kernelMappings[2]');
  });

  it("applies KMM's update-only rule on version", async () => {
    const body = await fixture('module-update.json');
    body.request.object.spec.moduleLoader.container.version = 'v2';
    const { body: answer } = await webhook.post(body);
    expect(answer.response.allowed).to.equal(false);
    expect(answer.response.status.message).to.contain(
      'spec.moduleLoader.container.version: cannot update to or from an empty version',
    );
  });

  describe('during an active preflight (kernel resolved, not complete)', () => {
    beforeEach(() => {
      webhook.cache.preflights = [preflight('upgrade-4-16', { kernel: KERNEL_427, complete: false })];
    });

    it('refuses an edit that drops the mapping for the target kernel, naming preflight, kernel and fix', async () => {
      const body = await fixture('module-update.json');
      body.request.object.spec.moduleLoader.container.kernelMappings = [
        { literal: KERNEL_284, containerImage: 'quay.io/acme/kmm-ci:1' },
      ];
      const { body: answer } = await webhook.post(body);
      expect(answer.response.allowed).to.equal(false);
      expect(answer.response.status).to.include({ code: 403, reason: 'Forbidden' });
      const message: string = answer.response.status.message;
      expect(message).to.contain(
        `leaves Module drivers/kmm-ci with no kernel mapping for kernel ${KERNEL_427}`,
      );
      expect(message).to.contain(
        'PreflightValidationOCP upgrade-4-16 (kernel resolved, validation not complete)',
      );
      expect(message).to.contain('once upgrade-4-16 is complete or deleted');
    });

    it('refuses an edit whose image no longer parses for the target kernel', async () => {
      const longKernel = '5.14.0-503.21.1.el9_5.x86_64.rt.debug.extra';
      webhook.cache.preflights = [preflight('rt', { kernel: longKernel, complete: false })];
      const body = await fixture('module-update.json');
      const mappings = [{ regexp: '^5\\.14\\.', containerImage: 'quay.io/acme/kmm-ci:${KERNEL_XYZ}' }];
      body.request.oldObject.spec.moduleLoader.container.kernelMappings = mappings;
      // Four full kernels fit a tag (128 characters) for a short kernel, not for this one.
      const tooLong = 'quay.io/acme/kmm-ci:' + '${KERNEL_FULL_VERSION}'.repeat(4);
      body.request.object.spec.moduleLoader.container.kernelMappings = [
        { ...mappings[0], containerImage: tooLong },
      ];
      const { body: answer } = await webhook.post(body);
      expect(answer.response.allowed).to.equal(false);
      expect(answer.response.status.message).to.contain(`with no valid image (`);
      expect(answer.response.status.message).to.contain(`for kernel ${longKernel}`);
    });

    it('admits the same edit with a warning under --module-policy=warn', async () => {
      const warn = await startTestWebhook({ policy: { modulePolicy: 'warn' } });
      try {
        warn.cache.preflights = [preflight('upgrade-4-16', { kernel: KERNEL_427, complete: false })];
        const body = await fixture('module-update.json');
        body.request.object.spec.moduleLoader.container.kernelMappings = [
          { literal: KERNEL_284, containerImage: 'quay.io/acme/kmm-ci:1' },
        ];
        const { body: answer } = await warn.post(body);
        expect(answer.response.allowed).to.equal(true);
        expect(answer.response.warnings).to.have.length(1);
        expect(answer.response.warnings).to.deep.equal([
          `Module drivers/kmm-ci: no kernel mapping for ${KERNEL_427}, target of pfvo upgrade-4-16 (policy warn)`,
        ]);
      } finally {
        await warn.close();
      }
    });

    it('admits another spec change with a warning that the Module will be validated again', async () => {
      const body = await fixture('module-update.json'); // drops the 427 literal, but the el9_4 regexp still matches
      const { body: answer } = await webhook.post(body);
      expect(answer.response.allowed).to.equal(true);
      expect(answer.response.warnings).to.deep.equal([
        `PreflightValidationOCP upgrade-4-16 is active: it will validate this Module again for ${KERNEL_427}`,
      ]);
    });

    it('admits a metadata-only edit without warnings', async () => {
      const body = await fixture('module-update.json');
      body.request.object.spec = structuredClone<unknown>(body.request.oldObject.spec);
      body.request.object.metadata.labels = { team: 'kernel' };
      const { body: answer } = await webhook.post(body);
      expect(answer.response).to.deep.equal({ uid: body.request.uid, allowed: true });
    });

    it('only warns when the Module had no mapping for the kernel before the edit either', async () => {
      const body = await fixture('module-update.json');
      const onlyOld = [{ literal: KERNEL_284, containerImage: 'quay.io/acme/kmm-ci:1' }];
      body.request.oldObject.spec.moduleLoader.container.kernelMappings = onlyOld;
      body.request.object.spec.moduleLoader.container.kernelMappings = [
        { ...onlyOld[0], containerImage: 'quay.io/acme/kmm-ci:2' },
      ];
      const { body: answer } = await webhook.post(body);
      expect(answer.response.allowed).to.equal(true);
      expect(answer.response.warnings).to.deep.equal([
        `Module drivers/kmm-ci has no kernel mapping for ${KERNEL_427}: pfvo upgrade-4-16 will report it failed`,
      ]);
    });

    it('does not protect a mapping the old object only had while it was invalid', async () => {
      const body = await fixture('module-update.json');
      // literal and regexp together: the old object broke KMM's rules.
      body.request.oldObject.spec.moduleLoader.container.kernelMappings = [
        { literal: KERNEL_427, regexp: '^x', containerImage: 'quay.io/acme/kmm-ci:1' },
      ];
      body.request.object.spec.moduleLoader.container.kernelMappings = [
        { literal: KERNEL_284, containerImage: 'quay.io/acme/kmm-ci:1' },
      ];
      const { body: answer } = await webhook.post(body);
      expect(answer.response.allowed).to.equal(true);
      expect(answer.response.warnings[0]).to.contain('will report it failed');
    });

    it('admits a CREATE without a mapping for the kernel, with a warning', async () => {
      const created = module('drivers', 'new', {
        kernelMappings: [{ literal: KERNEL_284, containerImage: 'quay.io/a/b:1' }],
      });
      const { body: answer } = await webhook.post(review('modules', 'CREATE', created));
      expect(answer.response.allowed).to.equal(true);
      expect(answer.response.warnings[0]).to.contain('will report it failed');
    });

    it('admits a DELETE with a warning that the preflight will drop the Module', async () => {
      const body = await fixture('module-update.json');
      body.request.operation = 'DELETE';
      body.request.object = null;
      const { body: answer } = await webhook.post(body);
      expect(answer.response.allowed).to.equal(true);
      expect(answer.response.warnings).to.deep.equal([
        'PreflightValidationOCP upgrade-4-16 is active: it will drop Module drivers/kmm-ci from its status',
      ]);
    });
  });

  it('admits the mapping drop once the preflight is complete (window 0)', async () => {
    webhook.cache.preflights = [preflight('upgrade-4-16', { kernel: KERNEL_427, complete: true })];
    const body = await fixture('module-update.json');
    body.request.object.spec.moduleLoader.container.kernelMappings = [
      { literal: KERNEL_284, containerImage: 'quay.io/acme/kmm-ci:1' },
    ];
    const { body: answer } = await webhook.post(body);
    expect(answer.response).to.deep.equal({ uid: body.request.uid, allowed: true });
  });

  it('treats a complete preflight created within --active-window-hours as active', async () => {
    const windowed = await startTestWebhook({
      policy: { activeWindowMs: 24 * 3_600_000 },
      now: new Date('2026-11-23T12:00:00Z'),
    });
    try {
      windowed.cache.preflights = [
        preflight('recent', { kernel: KERNEL_427, complete: true, created: '2026-11-23T10:30:00Z' }),
        preflight('old', { kernel: KERNEL_427, complete: true, created: '2026-11-20T10:30:00Z' }),
        preflight('going', { kernel: KERNEL_427, complete: false, deleting: true }),
      ];
      const body = await fixture('module-update.json');
      body.request.object.spec.moduleLoader.container.kernelMappings = [
        { literal: KERNEL_284, containerImage: 'quay.io/acme/kmm-ci:1' },
      ];
      const { body: answer } = await windowed.post(body);
      expect(answer.response.allowed).to.equal(false);
      expect(answer.response.status.message).to.contain(
        'PreflightValidationOCP recent (created 1h30m ago, within the 24h upgrade window)',
      );
      expect(answer.response.status.message).not.to.contain('PreflightValidationOCP old');
      expect(answer.response.status.message).not.to.contain('going');
    } finally {
      await windowed.close();
    }
  });

  it('warns (cannot check a kernel) for a recent preflight whose kernel is not resolved yet', async () => {
    const windowed = await startTestWebhook({
      policy: { activeWindowMs: 3_600_000 },
      now: new Date('2026-11-23T09:10:00Z'),
    });
    try {
      windowed.cache.preflights = [preflight('resolving', { created: '2026-11-23T09:00:00Z' })];
      const body = await fixture('module-update.json');
      const { body: answer } = await windowed.post(body);
      expect(answer.response.allowed).to.equal(true);
      expect(answer.response.warnings).to.deep.equal([
        'PreflightValidationOCP resolving is in progress: it will validate this Module again',
      ]);
    } finally {
      await windowed.close();
    }
  });
});
