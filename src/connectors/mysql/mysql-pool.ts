/**
 * A small pool of {@link MysqlSession}s: up to `max` connections, opened on demand (or a
 * fixed set, for the sessions of one snapshot, which cannot be reopened).
 */
import { FerryError } from "../../core/errors.js";
import type { MysqlSession } from "./mysql-session.js";

/** Waits its turn for a session. */
interface Waiter {
  resolve(s: MysqlSession): void;
  reject(err: unknown): void;
}

/** Hands out sessions one caller at a time; callers beyond `max` wait in order. */
export class SessionPool {
  readonly #open: (() => Promise<MysqlSession>) | undefined;
  readonly #max: number;
  readonly #what: string;
  readonly #idle: MysqlSession[] = [];
  readonly #all = new Set<MysqlSession>();
  readonly #waiters: Waiter[] = [];
  #opening = 0;
  #closed = false;

  /**
   * @param open makes a new session; undefined for a fixed set (`initial`) that cannot grow.
   * @param max most sessions at once.
   * @param what the instance, for errors.
   */
  constructor(
    open: (() => Promise<MysqlSession>) | undefined,
    max: number,
    what: string,
    initial: MysqlSession[] = [],
  ) {
    this.#open = open;
    this.#max = Math.max(1, max);
    this.#what = what;
    for (const s of initial) {
      this.#all.add(s);
      this.#idle.push(s);
    }
  }

  /** Sessions open now. */
  get size(): number {
    return this.#all.size;
  }

  /** Takes a session (opening one if allowed), or waits for one to be released. */
  async acquire(): Promise<MysqlSession> {
    if (this.#closed) throw new FerryError("E_INTERNAL", `mysql connector for ${this.#what} used after close()`);
    const idle = this.#idle.pop();
    if (idle !== undefined) return idle;
    if (this.#open !== undefined && this.#all.size + this.#opening < this.#max) return this.#grow();
    if (this.#all.size + this.#opening === 0) {
      throw new FerryError(
        "E_CONNECTION",
        `lost every connection to ${this.#what} (and with them the snapshot being read): run the command again`,
      );
    }
    return new Promise<MysqlSession>((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  async #grow(): Promise<MysqlSession> {
    this.#opening++;
    try {
      const s = await (this.#open as () => Promise<MysqlSession>)();
      if (this.#closed) {
        s.destroy();
        throw new FerryError("E_INTERNAL", `mysql connector for ${this.#what} used after close()`);
      }
      this.#all.add(s);
      return s;
    } finally {
      this.#opening--;
    }
  }

  /** Gives a session back; a broken one is thrown away (and replaced for a waiter, if possible). */
  release(s: MysqlSession): void {
    if (s.broken || this.#closed) {
      this.discard(s);
      return;
    }
    const waiter = this.#waiters.shift();
    if (waiter) waiter.resolve(s);
    else this.#idle.push(s);
  }

  /** Closes a session that must not be reused (its transaction state is unknown). */
  discard(s: MysqlSession): void {
    if (!this.#all.has(s)) {
      s.destroy();
      return;
    }
    this.#all.delete(s);
    const i = this.#idle.indexOf(s);
    if (i >= 0) this.#idle.splice(i, 1);
    s.destroy();
    const waiter = this.#waiters.shift();
    if (!waiter) return;
    if (this.#closed) {
      waiter.reject(new FerryError("E_INTERNAL", `mysql connector for ${this.#what} used after close()`));
    } else if (this.#open !== undefined) {
      this.#grow().then(waiter.resolve, waiter.reject);
    } else if (this.#all.size === 0) {
      waiter.reject(
        new FerryError(
          "E_CONNECTION",
          `lost every connection to ${this.#what} (and with them the snapshot being read): run the command again`,
        ),
      );
    } else {
      this.#waiters.unshift(waiter);
    }
  }

  /** Runs `fn` with a session, released afterwards (discarded if `fn` broke it). */
  async use<T>(fn: (s: MysqlSession) => Promise<T>): Promise<T> {
    const s = await this.acquire();
    try {
      return await fn(s);
    } finally {
      this.release(s);
    }
  }

  /** Closes every session (idle ones politely); waiters are refused. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const w of this.#waiters.splice(0)) {
      w.reject(new FerryError("E_INTERNAL", `mysql connector for ${this.#what} used after close()`));
    }
    const all = [...this.#all];
    this.#all.clear();
    this.#idle.length = 0;
    await Promise.all(all.map((s) => s.close()));
  }
}
