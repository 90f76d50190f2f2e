/**
 * Decides whether a caller may read a generation. A caller that may not gets
 * exactly the response of an unknown id, and the relay never sends Runblob a request about
 * it, so ids cannot be probed through the relay.
 */
import type { AuthMode } from "./auth-env.js";
import type { OwnershipStore } from "./ownership-store.js";
import type { Principal } from "./principal.js";

/** Runblob's response for an unknown generation, which the relay repeats for one the caller may not read. */
export const NOT_FOUND_DETAIL = "Generation not found";

export class GenerationAccess {
  constructor(
    private readonly mode: AuthMode,
    private readonly ownership: OwnershipStore,
  ) {}

  /** True when every generation is readable by this caller, so no check is needed. */
  readsAll(principal: Principal): boolean {
    return this.mode === "none" || principal.admin;
  }

  /**
   * Returns true for an admin, a grant that lists the id, or the creator.
   * A caller authenticated by a grant alone reads only the grant's ids.
   * Throws when the ownership store cannot be read.
   */
  async canRead(principal: Principal, generationId: string): Promise<boolean> {
    if (this.readsAll(principal) || principal.grantedIds.has(generationId)) return true;
    if (principal.credential === "grant") return false;
    return (await this.ownership.ownerOf(generationId)) === principal.userId;
  }

  /** Returns the ids among `generationIds` that the caller may not read. */
  async deniedAmong(principal: Principal, generationIds: readonly string[]): Promise<Set<string>> {
    const denied = new Set<string>();
    if (this.readsAll(principal)) return denied;
    const allowed = await Promise.all(generationIds.map((id) => this.canRead(principal, id)));
    generationIds.forEach((id, index) => {
      if (!allowed[index]) denied.add(id);
    });
    return denied;
  }
}
