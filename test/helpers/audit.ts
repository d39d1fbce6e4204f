// The audit log as the tests read it: the `audit` object of each line the server logged so far.
import type { TestBerth } from './berth.ts';

export interface AuditLine {
  who: string;
  action: string;
  allowed: boolean;
  repository?: string;
  granted?: string[];
  reason?: string;
  address?: string;
}

export const auditOf = (berth: TestBerth): AuditLine[] =>
  berth.logs.flatMap((line) => {
    try {
      const audit = (JSON.parse(line) as { audit?: AuditLine }).audit;
      return audit ? [audit] : [];
    } catch {
      return [];
    }
  });
