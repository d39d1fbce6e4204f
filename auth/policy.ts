// Who may do what to a repository: one pure function, asked by the token service and by every route.
// Everything it needs to know is gathered by the caller into `RepositoryFacts`, so it can be table-tested.

export type Mode = 'public-index' | 'private' | 'open';
export type Action = 'pull' | 'push' | 'delete';
export type Role = 'read' | 'write' | 'admin';
export type Visibility = 'public' | 'private';
export const ACTIONS: readonly Action[] = ['pull', 'push', 'delete'];

/** Who is asking: nobody, a user, or a robot account of an organisation. */
export type Principal =
  | { kind: 'anonymous' }
  | { kind: 'user'; name: string; admin: boolean }
  | { kind: 'robot'; name: string; namespace: string };

/** A limit a personal access token or robot puts on what its holder may do: `repository:<pattern>:<actions>`. */
export interface ScopeGrant {
  /** A repository name, or a prefix ending in `/*` (`acme/*`), or `*`. */
  pattern: string;
  actions: Action[];
}

export interface RepositoryFacts {
  mode: Mode;
  /** The repository's visibility; when it was never set, the mode's default applies. */
  visibility?: Visibility;
  /** The principal's role in the organisation owning the namespace, if the namespace is an organisation. */
  orgRole?: Role;
}

/**
 * The namespace a repository belongs to: its first path segment; a one-part name (`busybox`) belongs to
 * `library`, like Docker Hub's official images.
 */
export function namespaceOf(name: string): string {
  const slash = name.indexOf('/');
  return slash < 0 ? 'library' : name.slice(0, slash);
}

export function defaultVisibility(mode: Mode): Visibility {
  return mode === 'private' ? 'private' : 'public';
}

const ROLE_ACTIONS: Record<Role, Action[]> = {
  read: ['pull'],
  write: ['pull', 'push'],
  admin: ['pull', 'push', 'delete'],
};

export function matchesPattern(pattern: string, name: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('/*')) return name.startsWith(pattern.slice(0, -1));
  return pattern === name;
}

/** What the grants of a token or robot allow on one repository. */
export function grantedBy(grants: readonly ScopeGrant[], name: string): Set<Action> {
  const allowed = new Set<Action>();
  for (const grant of grants) if (matchesPattern(grant.pattern, name)) for (const a of grant.actions) allowed.add(a);
  return allowed;
}

/**
 * The actions `who` may take on repository `name`. `limit` (a personal access token's or a robot's
 * scopes) can only take rights away. Private and missing repositories look the same to a stranger:
 * neither grants anything.
 */
export function allowedActions(who: Principal, name: string, facts: RepositoryFacts, limit?: readonly ScopeGrant[]): Set<Action> {
  if (facts.mode === 'open') return new Set(ACTIONS);
  const allowed = new Set<Action>();
  const namespace = namespaceOf(name);
  const visibility = facts.visibility ?? defaultVisibility(facts.mode);
  if (visibility === 'public' && (who.kind !== 'anonymous' || facts.mode === 'public-index')) allowed.add('pull');
  if (who.kind === 'user') {
    if (who.admin || who.name === namespace) for (const a of ACTIONS) allowed.add(a);
    else if (facts.orgRole) for (const a of ROLE_ACTIONS[facts.orgRole]) allowed.add(a);
  } else if (who.kind === 'robot' && who.namespace === namespace) {
    // A robot has no rights of its own beyond its scopes, and only inside its organisation.
    for (const a of ACTIONS) allowed.add(a);
    if (!limit) return new Set(visibility === 'public' ? ['pull'] : []);
  }
  if (limit) {
    const granted = grantedBy(limit, name);
    for (const a of [...allowed]) if (!granted.has(a)) allowed.delete(a);
  }
  return allowed;
}

/** The catalog (`registry:catalog:*`): anyone the mode lets in may list it; it shows only what they may pull. */
export function mayListCatalog(who: Principal, mode: Mode): boolean {
  return mode !== 'private' || who.kind !== 'anonymous';
}
