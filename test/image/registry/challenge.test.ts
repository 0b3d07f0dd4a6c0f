import { expect } from 'chai';

import { parseChallenges } from '../../../src/image/registry/challenge.ts';

describe('registry: WWW-Authenticate parsing', () => {
  it('reads a Bearer challenge with realm, service and scope', () => {
    expect(
      parseChallenges(
        'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull"',
      ),
    ).to.deep.equal([
      {
        scheme: 'bearer',
        params: {
          realm: 'https://auth.example.com/token',
          service: 'registry.example.com',
          scope: 'repository:a/b:pull',
        },
      },
    ]);
  });

  it('reads several challenges in one header, with commas and escaped quotes inside values', () => {
    const challenges = parseChallenges(
      'Basic realm="Registry Realm", Bearer realm="https://quay.io/v2/auth",service="quay.io",scope="repository:a:pull,push", Newauth title="Login to \\"apps\\"", type=1',
    );
    expect(challenges.map((c) => c.scheme)).to.deep.equal(['basic', 'bearer', 'newauth']);
    expect(challenges[1]?.params['scope']).to.equal('repository:a:pull,push');
    expect(challenges[2]?.params).to.deep.equal({ title: 'Login to "apps"', type: '1' });
  });

  it('lower-cases scheme and parameter names, skips token68 credentials, and survives malformed input', () => {
    expect(parseChallenges('BEARER Realm="x"')).to.deep.equal([{ scheme: 'bearer', params: { realm: 'x' } }]);
    expect(parseChallenges('Negotiate abc==, Basic realm=simple')).to.deep.equal([
      { scheme: 'negotiate', params: {} },
      { scheme: 'basic', params: { realm: 'simple' } },
    ]);
    expect(parseChallenges('')).to.deep.equal([]);
    expect(parseChallenges('Bearer realm="unterminated')).to.deep.equal([
      { scheme: 'bearer', params: { realm: 'unterminated' } },
    ]);
    expect(parseChallenges('Basic realm="a", "stray"')).to.deep.equal([
      { scheme: 'basic', params: { realm: 'a' } },
    ]);
  });
});
