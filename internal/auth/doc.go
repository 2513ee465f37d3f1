// Package auth decides who made an HTTP request to intake's API (the upload routes, Uppy's routes
// and POST /v1/jobs) and what they may do.
//
// # Tenants and operators
//
// A tenant acts on its own uploads and objects only: it holds a key of INTAKE_API_KEYS (whose
// owner it is) or a JWT (whose subject it is). An operator may sweep and act on any key of intake's
// bucket through POST /v1/jobs: it holds a key of INTAKE_API_ADMIN_KEYS, or a JWT whose scope (the
// space-separated "scope" claim, or "scp") holds INTAKE_API_JWT_ADMIN_SCOPE. Operator keys act for no
// tenant, so the upload API refuses them; an operator JWT is also its subject's tenant credential.
//
// # JWTs
//
// HS256 with a tenant's secret (INTAKE_API_JWT_TENANT_SECRETS) or the shared INTAKE_API_JWT_SECRET,
// or RS256/ES256 with keys from INTAKE_API_JWKS_URL. exp is required (30 s leeway), iss must equal
// INTAKE_API_JWT_ISSUER and aud must hold INTAKE_API_JWT_AUDIENCE, whichever key signed: both are
// required settings, so that a token the same identity provider issued for another application is
// refused (INTAKE_API_JWT_ALLOW_ANY_AUDIENCE=true waives the audience, for a provider dedicated to
// intake). The subject becomes an owner, a segment of object keys: it must satisfy ValidOwner.
//
// INTAKE_API_JWT_SECRET is an operator-level secret: its holder can mint a token for any subject,
// and an operator token with the admin scope. A tenant's backend that mints tokens for its browsers
// gets its own secret in INTAKE_API_JWT_TENANT_SECRETS instead: an HS256 token whose (unverified)
// subject names an owner listed there is verified with that owner's secret, and with it alone, so
// it can only act for that owner; one that also asks for the admin scope is refused (401), since a
// tenant's secret has no operator rights to give.
//
// The key set of the JWKS URL is fetched again every 5 minutes, and when a token names a kid it
// lacks (an identity provider's rotation), at most once per 10 s: anyone can send such a token, so a
// request that finds that refresh taken is refused at once rather than made to wait, and since a
// refresh fetches the whole set, junk kids cannot keep a rotated key out for longer. Each fetch is
// bounded (10 s, 1 MiB) and follows no redirect that leaves https.
//
// A failed fetch is not the token's fault: while the key set cannot be fetched (none fetched yet,
// as when intake starts during the identity provider's outage, or the refresh for the token's kid
// failing, as for a key rotated in during one), the token is answered 503 auth-unavailable with
// Retry-After (until the next refresh may run), not 401, which clients would take for bad
// credentials and sign their users out. A request that finds the refresh taken answers as the last
// fetch went. Keys fetched before an outage keep verifying their tokens; a kid missing from a set
// that was fetched, and a bad signature, are 401.
//
// # The cookie
//
// Browser clients that send no Authorization header (Uppy) may send the JWT in the
// INTAKE_API_AUTH_COOKIE cookie. A request carrying that cookie more than once is refused (401):
// a sibling subdomain, or a page of the domain served over http://, can set one for the parent
// domain with a narrower Path, which the browser sends first, and whichever one intake read, the
// request could act for an owner its user never signed in as.
//
// # Development
//
// INTAKE_API_INSECURE_DEV_AUTH turns requests without credentials into owner "dev". config.Validate
// refuses it unless the listen address is loopback, and New refuses it with any real credentials.
package auth
