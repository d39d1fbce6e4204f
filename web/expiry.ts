// What browsers and clients leave behind in storage, removed once it is of no use: expired sessions and
// refresh tokens (each also refused, and removed, when presented), the cards of repositories that went
// or changed, and the cards older versions kept one per Host header. One run reads a bounded page of each
// folder (storage's FolderSweep), so its cost does not grow with what piled up.
import type { AuthService } from '../auth/index.ts';
import { baseName, FolderSweep, layout, type Storage } from '../storage/index.ts';
import { staleCards } from './images.ts';
import { sessionEnded } from './session.ts';

export interface ExpiryReport {
  sessions: number;
  refreshTokens: number;
  cards: number;
}

/** The sweep the server runs on a schedule; each call is one bounded run. */
export function expirySweep(storage: Storage, auth: AuthService | undefined, publicUrl: string | undefined): () => Promise<ExpiryReport> {
  const { driver } = storage;
  const sessions = new FolderSweep(driver, layout.sessionsDir);
  const refreshTokens = new FolderSweep(driver, layout.refreshTokensDir);
  const cards = new FolderSweep(driver, layout.cardsDir);
  const legacyCards = new FolderSweep(driver, layout.imagesDir);
  const publicHost = publicUrl && new URL(publicUrl).host;
  return async () => ({
    sessions: await sessions.run((path) => sessionEnded(driver, path)),
    refreshTokens: auth ? await refreshTokens.run((path) => auth.accounts.refreshTokenExpired(path)) : 0,
    cards:
      (await cards.run(staleCards(driver, (name) => storage.search.entry(name), publicHost))) +
      (await legacyCards.run(async (path) => baseName(path).startsWith('card-'))),
  });
}
