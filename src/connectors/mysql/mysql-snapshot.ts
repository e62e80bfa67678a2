/**
 * Sessions that read one consistent snapshot of the database (InnoDB MVCC): each runs
 * `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY` at REPEATABLE READ. Several of
 * them see the same snapshot when they start it while no one can commit: under
 * `FLUSH TABLES WITH READ LOCK`, released at once afterwards (what mydumper does).
 */

import type { MysqlSession } from "./mysql-session.js";
import { ER, errnoOf } from "./mysql-sql.js";

/** How long FLUSH TABLES WITH READ LOCK may wait for running statements before giving up on it. */
const LOCK_WAIT_SECONDS = 10;

async function begin(s: MysqlSession): Promise<void> {
  await s.exec("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ");
  await s.exec("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
}

/** The sessions of a snapshot, and why there are fewer than asked for. */
export interface Snapshot {
  sessions: MysqlSession[];
  /** Set when several readers were asked for but only one could be given. */
  fallback?: string;
}

/**
 * Opens `readers` sessions in one snapshot. With more than one, the snapshot is taken
 * under a global read lock held for as long as it takes to start the transactions; if the
 * server refuses it (no RELOAD privilege) or it waits more than 10 s for running
 * statements, one session is opened instead and the reads share it one after another.
 */
export async function openSnapshot(connect: () => Promise<MysqlSession>, readers: number): Promise<Snapshot> {
  const n = Math.max(1, Math.floor(readers));
  const first = await connect();
  if (n === 1) {
    try {
      await begin(first);
    } catch (err) {
      first.destroy();
      throw err;
    }
    return { sessions: [first] };
  }
  const sessions = [first];
  let lock: MysqlSession | undefined;
  try {
    for (let i = 1; i < n; i++) sessions.push(await connect());
    lock = await connect();
    await lock.exec(`SET SESSION lock_wait_timeout = ${LOCK_WAIT_SECONDS}`);
    let refused: unknown;
    try {
      await lock.exec("FLUSH TABLES WITH READ LOCK");
    } catch (err) {
      refused = err;
    }
    if (refused !== undefined) {
      for (const s of sessions.slice(1)) await s.close();
      await begin(first);
      const errno = errnoOf(refused);
      const why =
        errno === ER.SPECIFIC_ACCESS_DENIED || errno === ER.DBACCESS_DENIED || errno === ER.ACCESS_DENIED
          ? "FLUSH TABLES WITH READ LOCK needs the RELOAD privilege"
          : errno === ER.LOCK_WAIT_TIMEOUT
            ? "FLUSH TABLES WITH READ LOCK waited too long for running statements"
            : `FLUSH TABLES WITH READ LOCK failed (${String(refused)})`;
      return { sessions: [first], fallback: why };
    }
    try {
      await Promise.all(sessions.map(begin));
    } finally {
      await lock.exec("UNLOCK TABLES");
    }
    return { sessions };
  } catch (err) {
    for (const s of sessions) s.destroy();
    throw err;
  } finally {
    await lock?.close();
  }
}
