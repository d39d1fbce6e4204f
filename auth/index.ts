// The auth room's front door: accounts, tokens, the policy and the audit log.
export { AuthService, ANONYMOUS, type IdentitySources, principalName, type AuthOptions, type SignUpResult, type SignUpOrigin } from './service.ts';
export { AccountStore, AccountError, type AccountRefusal, isAccountName, MAX_REVOKED_KEPT, parseScopeGrant, parseScopeGrants, parseExpiry, splitRobotName, withoutSecret, TOKEN_DEFAULT_SCOPE, robotDefaultScope, SIGN_UPS_PER_ADDRESS_PER_HOUR, signUpCounterKey, PAT_PREFIX, REFRESH_PREFIX, type Authenticated, type User, type Organisation, type PersonalAccessToken, type Robot } from './accounts.ts';
export { AccountManagement, isRegistryAdmin, DEFAULT_CREDENTIAL_LIFETIME, MAX_LIVE_CREDENTIALS, type Actor, type CredentialRequest, type Listed, type PolicyView } from './management.ts';
export { AuditLog, type AuditEvent, type AuditSink } from './audit.ts';
export { jwkThumbprint, SIGNING_KEY_PATH, type SigningKey } from './keys.ts';
export {
  allowedActions,
  defaultVisibility,
  grantedBy,
  mayListCatalog,
  namespaceOf,
  ACTIONS,
  type Action,
  type Mode,
  type Principal,
  type Role,
  type ScopeGrant,
  type Visibility,
  type RepositoryFacts,
} from './policy.ts';
export { TokenService, parseScopes, mergeScopes, principalOf, limitOf, grants, type AccessEntry, type RequestedScope, type TokenClaims, type Verified, type IssuedToken } from './tokens.ts';
export { LdapDirectory, DirectoryUnavailableError, normalizeDn, type Directory, type DirectoryEntry, type LdapOptions, type PasswordCheck } from './directory.ts';
export { OidcSignIn, ProviderUnavailableError, PENDING_TTL_MS, type OidcOptions, type OidcSignInResult, type Sealer } from './oidc.ts';
export type { GroupRole } from './group-roles.ts';
