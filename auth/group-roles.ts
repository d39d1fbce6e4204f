// Groups → organisation roles: the one rule for every source of identities (an LDAP directory's group DNs,
// an OpenID provider's group names). Each organisation the mapping names gets the highest role the
// user's groups give, or none: a user taken out of every group that granted a role loses it.
import type { Role } from './policy.ts';

/** One entry of a mapping: members of `group` hold `role` in `organisation`. */
export interface GroupRole {
  group: string;
  organisation: string;
  role: Role;
}

const RANK: Record<Role, number> = { read: 1, write: 2, admin: 3 };

/**
 * Organisation → role (undefined: none) for every organisation `mapping` names. `groups` and the
 * mapping's groups are compared after `normalise` (a DN has several spellings; a group name has one).
 */
export function rolesFromGroups(
  groups: readonly string[],
  mapping: readonly GroupRole[],
  normalise: (group: string) => string = (group) => group,
): Map<string, Role | undefined> {
  const held = new Set(groups.map(normalise));
  const roles = new Map<string, Role | undefined>();
  for (const { group, organisation, role } of mapping) {
    const current = roles.get(organisation);
    if (!roles.has(organisation)) roles.set(organisation, undefined);
    if (held.has(normalise(group)) && (!current || RANK[role] > RANK[current])) roles.set(organisation, role);
  }
  return roles;
}
