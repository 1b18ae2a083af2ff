// A real, certified OpenID Provider (panva/oidc-provider) for the gateway's OIDC tests.
//
// Usage: node provider.mjs [port]   (port 0 or absent: any free loopback port)
// Environment:
//   OIDC_PEER_PORT           port, when not given as an argument
//   OIDC_PEER_CLIENT_ID      the one client's id          (default "portcullis")
//   OIDC_PEER_CLIENT_SECRET  its secret                   (default "portcullis-test-secret")
//   OIDC_PEER_REDIRECT_URIS  comma-separated redirect URIs (default "http://127.0.0.1/callback")
//
// Prints one line `READY <issuer>` once it listens; the issuer is
// `http://127.0.0.1:<port>`. Exits when its standard input closes. Accounts (login / password):
//   alice / alice-password: verified email, groups ["engineering", "admins"], amr ["pwd", "otp"]
//   bob   / bob-password:   unverified email, groups "ops" (a single string), amr ["pwd"]
// The login and consent pages are minimal HTML forms (see `interaction`).

import { createServer } from 'node:http';
import { once } from 'node:events';
import Provider from 'oidc-provider';

const ACCOUNTS = {
  alice: {
    password: 'alice-password',
    amr: ['pwd', 'otp'],
    claims: {
      email: 'alice@example.test',
      email_verified: true,
      name: 'Alice Example',
      groups: ['engineering', 'admins'],
    },
  },
  bob: {
    password: 'bob-password',
    amr: ['pwd'],
    claims: {
      email: 'bob@example.test',
      email_verified: false,
      name: 'Bob Example',
      groups: 'ops',
    },
  },
};

const port = Number(process.argv[2] ?? process.env.OIDC_PEER_PORT ?? 0);
const clientId = process.env.OIDC_PEER_CLIENT_ID ?? 'portcullis';
const clientSecret = process.env.OIDC_PEER_CLIENT_SECRET ?? 'portcullis-test-secret';
const redirectUris = (process.env.OIDC_PEER_REDIRECT_URIS ?? 'http://127.0.0.1/callback').split(',');

const server = createServer();
server.listen(port, '127.0.0.1');
await once(server, 'listening');
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: redirectUris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  async findAccount(ctx, id) {
    const account = ACCOUNTS[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, ...account.claims };
      },
    };
  },
  claims: {
    // `amr` must belong to a granted scope, or the provider leaves it out of ID tokens.
    openid: ['sub', 'amr'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  // Put the scope's claims in the ID token: the gateway reads only the ID token.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: { keys: ['portcullis-test-cookie-key'] },
});

function page(title, body) {
  return `<!DOCTYPE html><html><head><title>${title}</title></head><body>${body}</body></html>`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// The login and consent steps, as plain forms a test can submit.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  if (req.method === 'GET') {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    if (prompt.name === 'login') {
      res.end(page('Sign-in', `<form method="post" action="/interaction/${uid}">
<input type="hidden" name="prompt" value="login">
<input name="login"><input type="password" name="password">
<button type="submit">Sign-in</button></form>`));
    } else {
      res.end(page('Authorize', `<p>Allow ${escapeHtml(params.client_id)}?</p>
<form method="post" action="/interaction/${uid}">
<input type="hidden" name="prompt" value="consent">
<button type="submit">Continue</button></form>`));
    }
    return;
  }
  const form = await readForm(req);
  if (form.get('prompt') === 'login' && prompt.name === 'login') {
    const account = ACCOUNTS[form.get('login')];
    if (!account || account.password !== form.get('password')) {
      res.statusCode = 401;
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(page('Sign-in', '<p>Invalid login or password</p>'));
      return;
    }
    await provider.interactionFinished(req, res, {
      login: { accountId: form.get('login'), amr: account.amr },
    }, { mergeWithLastSubmission: false });
    return;
  }
  if (form.get('prompt') === 'consent' && prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  res.statusCode = 400;
  res.end('unexpected interaction step');
}

const callback = provider.callback();
server.on('request', (req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res).catch((err) => {
      res.statusCode = 500;
      res.end(String(err));
    });
  } else {
    callback(req, res);
  }
});

// The test harness holds our stdin open; when it goes away, so do we.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();

process.stdout.write(`READY ${issuer}\n`);
