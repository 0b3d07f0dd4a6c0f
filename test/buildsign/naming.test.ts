import { expect } from 'chai';
import {
  BuildSignConfigError,
  buildSignConfig,
  DEFAULT_BUILD_SIGN_CONFIG,
} from '../../src/buildsign/config.ts';
import { BuildSignError } from '../../src/buildsign/errors.ts';
import {
  inputsHash,
  isControlledBy,
  jobName,
  jobSelector,
  labelValue,
  ownerReference,
} from '../../src/buildsign/identity.ts';
import { pushableImage, registryImage, unsignedImageName, withTag } from '../../src/buildsign/image-name.ts';
import { OWNER } from './fixtures.ts';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

describe('buildsign image names', () => {
  it('rejects what is not a registry reference, naming the field', () => {
    for (const bad of [
      '',
      'a b',
      'x:$TAG',
      'x:-bad',
      'x@nodigest',
      'x:"q"',
      'quay.io/Upper',
      'oci:/tmp/layout:v1',
    ]) {
      expect(() => registryImage(bad, 'sign.unsignedImage'), bad)
        .to.throw(BuildSignError, 'sign.unsignedImage')
        .with.property('code', 'INVALID_IMAGE');
    }
    expect(registryImage('localhost:5000/kmod:v1', 'f')).to.include({
      registry: 'localhost:5000',
      repository: 'kmod',
      tag: 'v1',
    });
  });

  it('derives the unsigned image like KMM, plus the resource name', () => {
    const scope = { namespace: 'team-a', moduleName: 'kmod-a', resourceName: 'pf' };
    expect(unsignedImageName('quay.io/org/kmod:v1', scope)).to.equal(
      'quay.io/org/kmod:v1_team-a_kmod-a_pf_kmm_unsigned',
    );
    expect(unsignedImageName('localhost:5000/kmod', scope)).to.equal(
      'localhost:5000/kmod:team-a_kmod-a_pf_kmm_unsigned',
    );
  });

  it('keeps the unsigned tag within 128 characters and still unique', () => {
    const long = { namespace: 'n'.repeat(63), moduleName: 'm'.repeat(60), resourceName: 'r'.repeat(40) };
    const a = unsignedImageName('quay.io/org/kmod:5.14.0-284.el9.x86_64', long);
    const b = unsignedImageName('quay.io/org/kmod:5.14.0-284.el9.x86_64', {
      ...long,
      resourceName: 's'.repeat(40),
    });
    for (const name of [a, b]) {
      const tag = registryImage(name, 'x').tag ?? '';
      expect(tag.length).to.be.at.most(128);
      expect(tag).to.match(/^5\.14\.0-284\.el9\.x86_64_[a-f0-9]{20}_kmm_unsigned$/);
    }
    expect(a).to.not.equal(b);
  });

  it('refuses to push to a digest', () => {
    expect(() => pushableImage(`quay.io/x@sha256:${'b'.repeat(64)}`, 'containerImage'))
      .to.throw(BuildSignError, 'only be pushed to a tag')
      .with.property('code', 'INVALID_IMAGE');
    expect(() =>
      unsignedImageName(`quay.io/x@sha256:${'b'.repeat(64)}`, {
        namespace: 'a',
        moduleName: 'b',
        resourceName: 'c',
      }),
    ).to.throw(BuildSignError);
  });

  it('replaces a tag (kanikoParams.tag)', () => {
    expect(withTag('gcr.io/kaniko-project/executor:v1.23.2', 'debug', 'f')).to.equal(
      'gcr.io/kaniko-project/executor:debug',
    );
    expect(() => withTag('gcr.io/k/e:v1', 'bad tag', 'build.kanikoParams.tag')).to.throw(
      BuildSignError,
      'build.kanikoParams.tag',
    );
  });
});

describe('buildsign Job identity', () => {
  const module = { namespace: 'team-a', name: 'kmod-a' };

  it('names are deterministic DNS-1123 labels of at most 63 characters', () => {
    const name = jobName(OWNER, module, 'build', 'h1');
    expect(name).to.equal(jobName(OWNER, module, 'build', 'h1'));
    expect(name).to.match(/^kmod-a-pfv-build-[a-f0-9]{10}$/);
    const long = jobName(OWNER, { namespace: 'x', name: `${'Very.Long_Module'.repeat(10)}.` }, 'sign', 'h1');
    expect(long.length).to.be.at.most(63);
    expect(long).to.match(DNS_LABEL);
    expect(jobName(OWNER, { namespace: 'x', name: '...' }, 'sign', 'h')).to.match(/^module-pfv-sign-/);
  });

  it('names differ by inputs, stage, module namespace and owner UID', () => {
    const base = jobName(OWNER, module, 'build', 'h1');
    const others = [
      jobName(OWNER, module, 'build', 'h2'),
      jobName(OWNER, module, 'sign', 'h1'),
      jobName(OWNER, { ...module, namespace: 'team-b' }, 'build', 'h1'),
      jobName({ ...OWNER, uid: 'another-uid' }, module, 'build', 'h1'),
    ];
    expect(new Set([base, ...others]).size).to.equal(5);
  });

  it('hashes inputs independently of key order', () => {
    expect(inputsHash({ a: 1, b: [{ c: 2, d: 3 }] })).to.equal(inputsHash({ b: [{ d: 3, c: 2 }], a: 1 }));
    expect(inputsHash({ a: 1 })).to.not.equal(inputsHash({ a: 2 }));
    expect(inputsHash({ a: 1 })).to.have.length(40);
  });

  it('uses a digest where a name is not a valid label value', () => {
    expect(labelValue('kmod-a')).to.equal('kmod-a');
    const long = labelValue('m'.repeat(64));
    expect(long).to.match(/^h[a-f0-9]{40}$/);
    expect(jobSelector(OWNER, { namespace: 'x', name: 'm'.repeat(64) }, 'sign')).to.include({
      'preflight.kmm.sigs.x-k8s.io/module': long,
      'preflight.kmm.sigs.x-k8s.io/stage': 'sign',
      'preflight.kmm.sigs.x-k8s.io/owner-uid': OWNER.uid,
    });
  });

  it('recognises the controlling owner only', () => {
    expect(isControlledBy([ownerReference(OWNER)], OWNER)).to.equal(true);
    expect(isControlledBy([{ ...ownerReference(OWNER), controller: false }], OWNER)).to.equal(false);
    expect(isControlledBy([{ ...ownerReference(OWNER), uid: 'x' }], OWNER)).to.equal(false);
    expect(isControlledBy(undefined, OWNER)).to.equal(false);
  });
});

describe('buildsign configuration', () => {
  it('defaults are valid and overridable', () => {
    expect(buildSignConfig()).to.deep.equal(DEFAULT_BUILD_SIGN_CONFIG);
    expect(buildSignConfig({ backoffLimit: 0, signerImage: 'quay.io/x/signer:1' })).to.include({
      backoffLimit: 0,
      signerImage: 'quay.io/x/signer:1',
    });
  });

  it('names the bad field', () => {
    const cases: [Parameters<typeof buildSignConfig>[0], string][] = [
      [{ kanikoImage: '' }, 'kanikoImage'],
      [{ signerImage: 'a b' }, 'signerImage'],
      [{ signFilePath: 'sign-file' }, 'signFilePath'],
      [{ signFilePath: '/usr/bin/$X' }, 'signFilePath'],
      [{ backoffLimit: -1 }, 'backoffLimit'],
      [{ backoffLimit: 1.5 }, 'backoffLimit'],
      [{ activeDeadlineSeconds: 10 }, 'activeDeadlineSeconds'],
      [{ ttlSecondsAfterFinished: -5 }, 'ttlSecondsAfterFinished'],
      [{ serviceAccountName: 'Bad_Name' }, 'serviceAccountName'],
    ];
    for (const [overrides, field] of cases) {
      expect(() => buildSignConfig(overrides), field)
        .to.throw(BuildSignConfigError, `${field}:`)
        .with.property('field', field);
    }
  });
});
